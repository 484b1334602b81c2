"""Tables as Markdown, CSV and LaTeX, and one self-contained HTML page (figures embedded as data URIs)."""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Sequence
from pathlib import Path

from fractalad.report.grid_tables import Pair, Table

DASH = "–"


def _number(value: float | None, signed: bool) -> str:
    if value is None:
        return DASH
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _cell(table: Table, r: int, c: int, wrap: tuple[str, str], marked: set[tuple[int, int, int]]) -> str:
    signed = table.key.endswith("_difference")
    parts = []
    for side in (0, 1):
        text = _number(table.cells[r][c][side], signed)
        parts.append(f"{wrap[0]}{text}{wrap[1]}" if (r, c, side) in marked and not signed else text)
    return "/".join(parts)


def to_markdown(table: Table) -> str:
    marked = table.best()
    lines = [
        f"### {table.title}",
        "",
        "| | " + " | ".join(table.header) + " |",
        "|---" * (len(table.header) + 1) + "|",
    ]
    for r, name in enumerate(table.row_names):
        cells = [_cell(table, r, c, ("**", "**"), marked) for c in range(len(table.header))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [""] + [f"_{note}_" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def to_csv(table: Table) -> str:
    """Long form: row, column, reference, candidate (empty = missing)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "column", "reference", "candidate"])
    for r, name in enumerate(table.row_names):
        for c, column in enumerate(table.header):
            pair: Pair = table.cells[r][c]
            writer.writerow([name, column, *("" if v is None else f"{v:.4f}" for v in pair)])
    return buffer.getvalue()


def _latex_escape(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def to_latex(table: Table) -> str:
    marked = table.best()
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(table.title)}}}",
        r"\begin{tabular}{l" + "c" * len(table.header) + "}",
        r"\hline",
        " & ".join(["", *map(_latex_escape, table.header)]) + r" \\",
        r"\hline",
    ]
    for r, name in enumerate(table.row_names):
        cells = [_cell(table, r, c, (r"\textbf{", "}"), marked) for c in range(len(table.header))]
        lines.append(" & ".join([_latex_escape(name), *cells]) + r" \\")
    lines += [r"\hline", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_html_table(table: Table) -> str:
    marked = table.best()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = []
    for r, name in enumerate(table.row_names):
        cells = "".join(
            f"<td>{_cell(table, r, c, ('<b>', '</b>'), marked)}</td>" for c in range(len(table.header))
        )
        body.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in table.notes)
    return (
        f"<section id='{table.key}'><h3>{html.escape(table.title)}</h3><table><thead><tr><th></th>{head}</tr>"
        f"</thead><tbody>{''.join(body)}</tbody></table>{notes}</section>"
    )


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:center}
thead th{background:#f0f0f0}tbody th{text-align:left}b{color:#b00}.note{color:#a60;font-style:italic}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}.partial{color:#a60}
"""


def html_page(title: str, summary: str, tables: Sequence[Table], figures: Sequence[tuple[str, Path]]) -> str:
    """One page with every table and every PNG figure inlined (it can be mailed or opened offline)."""
    figure_html = []
    for caption, path in figures:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        figure_html.append(
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    contents = "".join(f"<li><a href='#{t.key}'>{html.escape(t.title)}</a></li>" for t in tables)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
        f"<p>Cells are reference/candidate in percent; the best of each column and side is in bold red.</p>"
        f"<ul>{contents}</ul><h2>Tables</h2>{''.join(to_html_table(t) for t in tables)}"
        f"<h2>Figures</h2>{''.join(figure_html)}</body></html>"
    )
