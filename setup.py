"""Packaging beside pyproject.toml (which holds the metadata): which packages a wheel holds.

The built-in systems, chips, models and example scenarios stay in the top-level folders
topologies/, models/ and scenarios/ of the source tree and ship as package data of
``simulator.builtin.topologies``, ``simulator.builtin.models`` and
``simulator.builtin.scenarios`` (a ``package_dir`` mapping), so a wheel, ``pip install .`` and
``pip install -e .`` all find them with importlib.resources (simulator/config/paths.py). Each of
the three folders holds an ``__init__.py`` for that reason: the mapping needs regular packages.
The package list is computed here (pyproject.toml cannot mix discovery with mapped packages),
so a new subpackage of simulator/ or strategies/ is picked up without editing this file.
"""

from setuptools import find_packages, setup

BUILTIN = {
    "simulator.builtin.topologies": "topologies",
    "simulator.builtin.models": "models",
    "simulator.builtin.scenarios": "scenarios",
}

setup(
    packages=[
        *find_packages(include=["simulator", "simulator.*", "strategies", "strategies.*"]),
        *BUILTIN,
    ],
    package_dir=BUILTIN,
    package_data={
        "simulator": ["py.typed"],
        **{name: ["*.yaml", "**/*.yaml"] for name in BUILTIN},
    },
)
