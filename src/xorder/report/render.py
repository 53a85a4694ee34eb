"""Rendering: a small table to Markdown and LaTeX, and the number formats the tables share (digits, a real
minus sign, the best value per column in bold, marks for cells that are not numbers)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DASH = "—"  # no record
NA = "n/a‡"  # a non-finite score in a record: never averaged away
NA_NOTE = (
    "n/a‡: a score behind this number is not finite (NaN, Inf or null in metrics.json: a malformed "
    "record, named in the warnings), so the number is not formed."
)
NO_MODEL = "no learned model"
NO_MODEL_NOTE = (
    f"{NO_MODEL}: every compared cell predicts one value there for every seed, or its head did not learn at all (the "
    "records' notes say which): no best, no difference, no interval."
)
WIDE = 8  # LaTeX tables with more numeric columns than this span both columns of a two-column page (table*)


@dataclass(frozen=True)
class Style:
    """How numbers look: `digits` after the point, the minus sign (− for papers, - for plain text) and whether
    the best value of a column is set in bold."""

    digits: int = 2
    minus: str = "−"
    bold: bool = True

    def num(self, value: float | None, signed: bool = False) -> str:
        if value is None or not math.isfinite(value):
            return DASH
        value = round(float(value), self.digits) + 0.0  # no "-0.00"
        text = f"{value:+.{self.digits}f}" if signed else f"{value:.{self.digits}f}"
        return text.replace("-", self.minus)

    def mean_std(self, mean: float, std: float) -> str:
        if mean is None or not math.isfinite(mean):
            return DASH
        return self.num(mean) if std is None or not math.isfinite(std) else f"{self.num(mean)} ± {self.num(std)}"

    def interval(self, low: float, high: float) -> str:
        if not (math.isfinite(low) and math.isfinite(high)):
            return DASH
        return f"[{self.num(low, True)}, {self.num(high, True)}]"

    def best(self, values: list[list[float]], offset: int) -> frozenset[tuple[int, int]]:
        """(row, column) of the highest value of each column, ties at the shown precision included, unless every
        number of the column ties; `values` start at column `offset`, NaN for cells that are not numbers. Every
        metric here is higher-is-better."""
        if not self.bold:
            return frozenset()
        cells = set()
        for j in range(len(values[0]) if values else 0):
            shown = [round(row[j], self.digits) for row in values if math.isfinite(row[j])]
            if len(set(shown)) > 1:
                cells |= {
                    (i, j + offset)
                    for i, row in enumerate(values)
                    if math.isfinite(row[j]) and round(row[j], self.digits) == max(shown)
                }
        return frozenset(cells)


PLAIN = Style(minus="-", bold=False)


def p_value(value: float) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:.4f}" if value >= 0.0001 else "<0.0001"


def count(value: float) -> str:
    """A mean count (steps, examples) as a whole number with thousands separators."""
    return DASH if value is None or not math.isfinite(value) else f"{value:,.0f}"


@dataclass
class Table:
    """A small table rendered to Markdown and to LaTeX (booktabs): first `keys` columns are left-aligned;
    cells in `bold` ((row, column) pairs) are set in bold."""

    label: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    keys: int = 3
    note: str = ""
    bold: frozenset[tuple[int, int]] = field(default_factory=frozenset)

    @property
    def full_note(self) -> str:
        marked = any(NA in cell for row in self.rows for cell in row)
        return " ".join(part for part in (self.note, NA_NOTE if marked else "") if part)

    def markdown(self) -> str:
        align = ["---" if i < self.keys else "---:" for i in range(len(self.columns))]
        lines = [f"### {self.title}", ""]
        if self.full_note:
            lines += [self.full_note, ""]
        if not self.rows:
            return "\n".join(lines)
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join(align) + "|")
        for i, row in enumerate(self.rows):
            cells = [c.replace("|", "\\|") for c in row]
            cells = [f"**{c}**" if (i, j) in self.bold else c for j, c in enumerate(cells)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        if not self.rows:
            return ""
        env = "table*" if len(self.columns) - self.keys > WIDE else "table"
        spec = "l" * self.keys + "r" * (len(self.columns) - self.keys)
        lines = [
            f"\\begin{{{env}}}[htbp]",
            "\\centering",
            "\\small",
            f"\\begin{{tabular}}{{{spec}}}",
            "\\toprule",
            " & ".join(tex(c) for c in self.columns) + " \\\\",
            "\\midrule",
        ]
        for i, row in enumerate(self.rows):
            cells = [f"\\textbf{{{tex(c)}}}" if (i, j) in self.bold else tex(c) for j, c in enumerate(row)]
            lines.append(" & ".join(cells) + " \\\\")
        caption = tex(self.title) + (". " + tex(self.full_note) if self.full_note else "")
        lines += [
            "\\bottomrule",
            "\\end{tabular}",
            f"\\caption{{{caption}}}",
            f"\\label{{tab:{self.label}}}",
            f"\\end{{{env}}}",
        ]
        return "\n".join(lines) + "\n"


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "−": r"$-$",
    "Δ": r"$\Delta$",
    DASH: "--",
    "≥": r"$\geq$",
    "·": r"$\cdot$",
    "<": r"$<$",
    ">": r"$>$",
    "`": "",
    "†": r"$^{\dagger}$",
    "‡": r"$^{\ddagger}$",
    "×": r"$\times$",
    "§": r"\S{}",
    "∅": r"$\emptyset$",
    "≤": r"$\leq$",
    "²": r"$^{2}$",
}


def tex(text: str) -> str:
    """Text with LaTeX's special characters escaped and the tables' symbols in math mode."""
    return "".join(_TEX.get(ch, ch) for ch in text)


def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in text)
