"""Task graphs, the max-min fair flow network, collectives and the SimPy executor."""
