"""The built-in systems, chips, models and example scenarios, shipped as package data.

``simulator.builtin.topologies``, ``.models`` and ``.scenarios`` are the top-level folders
topologies/, models/ and scenarios/ of the source tree, mapped into this package by setup.py;
:mod:`simulator.config.paths` finds them with importlib.resources (``$IPUSIM_DATA`` overrides).
"""
