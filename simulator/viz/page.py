"""Self-contained HTML pages: plotly.js embedded once, figures, tables and notes.

Pages are deterministic: figure ids come from the caller, there is no date, and nothing names
a path on the machine that wrote them. Nothing is fetched when a page is viewed.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

PLOT_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "scrollZoom": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
}

TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": "Helvetica, Arial, sans-serif", "size": 12, "color": "#222"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "hovermode": "closest",
        "hoverlabel": {"align": "left"},
        "xaxis": {"gridcolor": "#e6e6e6", "zerolinecolor": "#bbb", "automargin": True},
        "yaxis": {"gridcolor": "#e6e6e6", "zerolinecolor": "#bbb", "automargin": True},
        "colorway": ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"],
    }
)
"""A small template: plotly's default one would add ~10 kB of JSON to every figure."""

_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 1.5em 2em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table.kv, table.grid { border-collapse: collapse; margin: 0.5em 0; }
table.kv td, table.grid td, table.grid th { padding: 2px 10px; border-bottom: 1px solid #eee; }
table.kv td:first-child { color: #555; } td.num { text-align: right; }
.note { color: #555; font-size: 0.9em; margin: 0.3em 0; }
.notes { background: #f7f7f7; border-left: 3px solid #bbb; padding: 0.3em 0.8em; }
nav a { margin-right: 1em; }
"""


@dataclass
class Page:
    """A page under construction: sections of HTML and plotly figures, in order."""

    title: str
    subtitle: str = ""
    parts: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # div ids, in order

    def heading(self, text: str, anchor: str | None = None) -> None:
        aid = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h2{aid}>{html.escape(text)}</h2>")

    def notes(self, notes: Sequence[str]) -> None:
        if notes:
            items = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
            self.parts.append(f"<div class='notes'>{items}</div>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p class='note'>{html.escape(text)}</p>")

    def raw(self, markup: str) -> None:
        self.parts.append(markup)

    def table(self, rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> None:
        """A table; the first column is a key when there is no header."""
        cls = "grid" if header else "kv"
        out = [f"<table class='{cls}'>"]
        if header:
            out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            cells = []
            for v in row:
                num = isinstance(v, int | float) and not isinstance(v, bool)
                cells.append(f"<td{' class=num' if num else ''}>{html.escape(str(v))}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table>")
        self.parts.append("".join(out))

    def figure(self, fig: go.Figure, div_id: str) -> None:
        """Add ``fig`` (plotly.js is not repeated; the page embeds it once)."""
        fig.update_layout(template=TEMPLATE)
        height = fig.layout.height or 450
        markup = pio.to_html(
            fig,
            include_plotlyjs=False,
            full_html=False,
            div_id=div_id,
            config=PLOT_CONFIG,
            default_height=f"{int(height)}px",
            default_width="100%",
            validate=False,
        )
        self.figures.append(div_id)
        self.parts.append(markup)

    def html(self) -> str:
        """The whole page, with plotly.js inline."""
        from plotly.offline import get_plotlyjs

        sub = f"<p class='note'>{html.escape(self.subtitle)}</p>" if self.subtitle else ""
        ids = ", ".join(f'"{i}"' for i in self.figures)
        return (
            "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            "<meta name='generator' content='ipusim'>\n"
            f"<title>{html.escape(self.title)}</title>\n<style>{_STYLE}</style>\n"
            f"<script type='text/javascript'>{get_plotlyjs()}</script>\n</head>\n<body>\n"
            f"<h1>{html.escape(self.title)}</h1>\n{sub}\n"
            + "\n".join(self.parts)
            + f"\n<script>window.ipusimFigures = [{ids}];</script>\n</body>\n</html>\n"
        )

    def write(self, path: str | Path) -> int:
        """Write the page to ``path``; return its size in bytes."""
        from simulator import outputs

        return outputs.write(path, self.html().encode("utf-8"))
