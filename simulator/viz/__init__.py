"""Plotly views of a run: timeline, report, scaling and sweep plots, topology drawing.

Every page is one self-contained HTML file with plotly.js embedded (nothing is fetched when it
is viewed), deterministic for the same input, and free of absolute paths. Modules:

- :mod:`simulator.viz.gantt`: the timeline as data (rows, bars, notes): replica mirroring,
  aggregation of identical rows, decimation. No plotly here, so it is cheap to test.
- :mod:`simulator.viz.timeline`: the plotly Gantt figure and the timeline page.
- :mod:`simulator.viz.report`: the one-page report of a run.
- :mod:`simulator.viz.plots`: scaling plots and sweep plots.
- :mod:`simulator.viz.topology`: the system drawn with a networkx layout.
- :mod:`simulator.viz.page`: HTML assembly (plotly.js once, figures, tables, notes).
- :mod:`simulator.viz.commands`: what the CLI options call.
"""
