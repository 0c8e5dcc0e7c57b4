"""compare.html: compare.md rendered as one self-contained page, every plot inlined as a base64 PNG, so it opens
offline in any browser and travels as one file. Renders only what report.py writes: headings, paragraphs, tables,
bullet lists, `code`, **bold** and `![name](file.png)` images."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.4}"
         "table{border-collapse:collapse;margin:1em 0;font-size:0.85em}td,th{border:1px solid #ccc;padding:3px 6px;"
         "text-align:left;vertical-align:top}th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}"
         "img{max-width:100%;border:1px solid #ddd}code{background:#f3f3f3;padding:0 3px}"
         "figure{margin:1.5em 0}figcaption{font-size:0.9em;color:#444}")
IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]+)\)$")


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(rows: list[str]) -> str:
    head, body = _cells(rows[0]), [_cells(r) for r in rows[2:]]  # rows[1]: the |---| separator
    out = ["<table>", "<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in body]
    return "\n".join(out + ["</table>"])


def _image(alt: str, src: str, base: Path) -> str:
    path = base / src
    if not path.is_file():
        return f"<p>({html.escape(src)} missing)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def render(markdown: str, base: Path, title: str = "zoo.compare") -> str:
    """The page for `markdown`; images are read from `base` (the dir compare.md sits in)."""
    body: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            body.append(_table(block))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
        elif IMAGE.match(line.strip()):
            body.append(_image(*IMAGE.match(line.strip()).groups(), base))
            i += 1
        else:
            block = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ")):
                block.append(lines[i])
                i += 1
            body.append(f"<p>{_inline(' '.join(block))}</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
