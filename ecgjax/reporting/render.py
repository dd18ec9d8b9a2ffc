"""Render one list of report blocks to markdown and to PDF (fpdf2: pure Python, no LaTeX).

Both files come from the same blocks, so the PDF and the markdown show the same numbers. The
PDF uses the core Helvetica/Courier fonts (no font files to ship); text is folded to Latin-1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

_FOLD = {
    "\u2013": "-",
    "\u2014": "-",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2264": "<=",
    "\u2265": ">=",
    "\u2026": "...",
    "\u2192": "->",
    "\u00a0": " ",
}


@dataclass
class Block:
    """``kind`` in h1, h2, p, table, figure, mono, page (a page break)."""

    kind: str
    text: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    bold_rows: set[int] = field(default_factory=set)
    align: str = ""  # per column L or R (PDF); default: first column L, the rest R
    figures: list[tuple[Path, float]] = field(default_factory=list)  # (png, width in mm)
    size: float = 7.0  # PDF font size of tables and mono text
    lead: str = ""  # bold run-in heading of a paragraph


def latin1(text: str) -> str:
    for k, v in _FOLD.items():
        text = text.replace(k, v)
    return text.encode("latin-1", "replace").decode("latin-1")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block], path: Path) -> Path:
    """Markdown with figure links relative to ``path``'s folder."""
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out += [f"# {b.text}", ""]
        elif b.kind == "h2":
            out += [f"## {b.text}", ""]
        elif b.kind == "p":
            out += [f"**{b.lead}** {b.text}" if b.lead else b.text, ""]
        elif b.kind == "mono":
            out += ["```", b.text, "```", ""]
        elif b.kind == "table":
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "---|" * len(b.header))
            for i, row in enumerate(b.rows):
                cells = [_md_cell(c) for c in row]
                if i in b.bold_rows:
                    cells = [f"**{c}**" if c else c for c in cells]
                out.append("| " + " | ".join(cells) + " |")
            out += ["", b.text, ""] if b.text else [""]
        elif b.kind == "figure":
            for png, _ in b.figures:
                out.append(f"![{png.stem}]({_relative(png, path.parent)})")
            out += ["", b.text, ""] if b.text else [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out).rstrip() + "\n")
    return path


def _relative(png: Path, base: Path) -> str:
    try:
        return png.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return png.as_posix()


class _PDF(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(format="A4")
        self.footer_text = footer_text

    def footer(self) -> None:
        self.set_y(-9)
        self.set_font("Helvetica", size=7)
        self.set_text_color(120)
        self.cell(0, 4, latin1(self.footer_text) + f"   page {self.page_no()}", align="R")
        self.set_text_color(0)


def render_pdf(blocks: Sequence[Block], path: Path, footer: str = "") -> tuple[Path, int]:
    """Write the PDF; returns its path and the number of the last page before an appendix
    (the first ``page`` block whose text is ``appendix``), for the two-page check."""
    pdf = _PDF(footer)
    pdf.set_margins(12, 11, 12)
    pdf.set_auto_page_break(True, 12)
    pdf.add_page()
    content_pages = 0
    for b in blocks:
        if b.kind == "page":
            if b.text == "appendix" and not content_pages:
                content_pages = pdf.page_no()
            pdf.add_page()
        elif b.kind in ("h1", "h2"):
            big = b.kind == "h1"
            pdf.set_font("Helvetica", "B", 13 if big else 10)
            pdf.ln(0 if big else 1.5)
            pdf.multi_cell(0, 6 if big else 5, latin1(b.text), new_x="LMARGIN", new_y="NEXT")
        elif b.kind == "p":
            if b.lead:
                pdf.set_font("Helvetica", "B", 8)
                pdf.write(3.7, latin1(b.lead) + " ")
            pdf.set_font("Helvetica", size=8)
            pdf.write(3.7, latin1(b.text))
            pdf.ln(4.7)
        elif b.kind == "mono":
            pdf.set_font("Courier", size=b.size)
            pdf.multi_cell(0, b.size * 0.42, latin1(b.text), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif b.kind == "table":
            _table(pdf, b)
        elif b.kind == "figure":
            _figures(pdf, b)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path, content_pages or pdf.page_no()


def _table(pdf: FPDF, b: Block) -> None:
    pdf.set_font("Helvetica", "B", size=b.size)  # measure as bold: headings and the best row
    columns = list(zip(*b.rows, strict=True)) if b.rows else [() for _ in b.header]
    widths = [
        max([_width(pdf, w) for w in h.split()] + [_width(pdf, c) for c in col]) + 3.5
        for h, col in zip(b.header, columns, strict=True)
    ]
    widths = [min(w, 0.45 * pdf.epw) for w in widths]  # long headers and lists wrap instead
    pdf.set_font("Helvetica", size=b.size)
    align = b.align or "L" + "R" * (len(widths) - 1)
    bold = FontFace(emphasis="BOLD")
    with pdf.table(
        col_widths=widths,
        width=min(sum(widths), pdf.epw),
        text_align=tuple("LEFT" if a == "L" else "RIGHT" for a in align),
        line_height=b.size * 0.45,
        borders_layout="SINGLE_TOP_LINE",
        align="LEFT",
        padding=0.6,
    ) as table:
        table.row([latin1(h) for h in b.header])
        for i, row in enumerate(b.rows):
            table.row([latin1(c) for c in row], style=bold if i in b.bold_rows else None)
    if b.text:
        pdf.set_font("Helvetica", "I", 7)
        pdf.multi_cell(0, 3.2, latin1(b.text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1.5)


def _width(pdf: FPDF, text: str) -> float:
    return pdf.get_string_width(latin1(text))


def _figures(pdf: FPDF, b: Block) -> None:
    """Images side by side, scaled to fit the line; a new page when they do not fit."""
    from PIL import Image

    total = sum(w for _, w in b.figures)
    scale = min(1.0, (pdf.epw - 3 * (len(b.figures) - 1)) / total)
    heights = []
    for png, w in b.figures:
        with Image.open(png) as im:
            heights.append(w * scale * im.height / im.width)
    if pdf.get_y() + max(heights) > pdf.h - 14:
        pdf.add_page()
    x, y = pdf.l_margin, pdf.get_y()
    for (png, w), _ in zip(b.figures, heights, strict=True):
        pdf.image(str(png), x=x, y=y, w=w * scale)
        x += w * scale + 3
    pdf.set_y(y + max(heights) + 1)
    if b.text:
        pdf.set_font("Helvetica", "I", 7)
        pdf.multi_cell(0, 3.2, latin1(b.text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1.5)
