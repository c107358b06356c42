"""Built-in chips (chips/*.yaml) and systems (*.yaml); installed as simulator.builtin.topologies.

Data only: setup.py maps this folder into the package so a wheel carries it (see
simulator/config/paths.py). The module exists because that mapping needs a regular package.
"""
