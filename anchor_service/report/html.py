"""report.html: the markdown report, its figures inlined, and the config: one self-contained file."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from anchor_service.rundir import RunDir, write_atomic


def _md_to_html(md: str) -> str:
    """Just enough Markdown for our report: headings, tables, bullet lists, bold."""
    out, table = [], []

    def flush_table() -> None:
        if not table:
            return
        rows = [r for r in table if not re.fullmatch(r"\|?(\s*-+\s*\|)+\s*-*\s*\|?", r)]
        out.append("<table>")
        for i, row in enumerate(rows):
            cells = [html.escape(c.strip()) for c in row.strip().strip("|").split("|")]
            tag = "th" if i == 0 else "td"
            out.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
        out.append("</table>")
        table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(line))
        if line.startswith("## "):
            out.append(f"<h2>{text[3:]}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{text[2:]}</h1>")
        elif line.lstrip().startswith("- "):
            indent = "margin-left:2em;" if line.startswith("  ") else ""
            out.append(f'<div style="{indent}">&bull; {text.lstrip()[2:]}</div>')
        elif line.strip():
            out.append(f"<p>{text}</p>")
    flush_table()
    return "\n".join(out)


def render_html(markdown: str, figures: list[Path], config_yaml: str) -> str:
    imgs = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"/></figure>'
        for p in figures
    )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px}th{background:#f3f3f3}img{max-width:100%}pre{background:#f7f7f7;"
        "padding:1em;font-size:12px;overflow:auto}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>anchor-service report</title>"
        f"<style>{style}</style></head><body>{_md_to_html(markdown)}<h2>Figures</h2>{imgs}"
        f"<h2>Config</h2><pre>{html.escape(config_yaml)}</pre></body></html>\n"
    )


def write_html(run: RunDir, markdown: str, figures: list[Path]) -> Path:
    """A run's report.html, its config.yaml shown at the end."""
    config = run.config.read_text(encoding="utf-8") if run.config.is_file() else ""
    write_atomic(run.report_html, render_html(markdown, figures, config))
    return run.report_html
