"""Rendering: a small table to Markdown and LaTeX, and the number formats the tables share."""

from __future__ import annotations

import math
from dataclasses import dataclass

DASH = "—"


@dataclass
class Table:
    """A small table rendered to Markdown and to LaTeX (booktabs): first `keys` columns are left-aligned."""

    label: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    keys: int = 3
    note: str = ""

    def markdown(self) -> str:
        align = ["---" if i < self.keys else "---:" for i in range(len(self.columns))]
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        if not self.rows:
            return "\n".join(lines)
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join(align) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        if not self.rows:
            return ""
        spec = "l" * self.keys + "r" * (len(self.columns) - self.keys)
        lines = ["\\begin{table}[htbp]", "\\centering", "\\small", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                 " & ".join(_tex(c) for c in self.columns) + " \\\\", "\\midrule"]
        lines += [" & ".join(_tex(c) for c in row) + " \\\\" for row in self.rows]
        caption = _tex(self.title) + (". " + _tex(self.note) if self.note else "")
        lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}",
                  f"\\label{{tab:{self.label}}}", "\\end{table}"]
        return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "−": r"$-$",
        "Δ": r"$\Delta$", DASH: "--", "≥": r"$\geq$", "·": r"$\cdot$", "<": r"$<$", ">": r"$>$", "`": ""}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def num(value: float, signed: bool = False, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    value = round(float(value), digits) + 0.0  # no "-0.00"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def mean_std(mean: float, std: float) -> str:
    if mean is None or not math.isfinite(mean):
        return DASH
    return num(mean) if std is None or not math.isfinite(std) else f"{num(mean)} ± {num(std)}"


def p_value(value: float) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:.4f}" if value >= 0.0001 else "<0.0001"


def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in text)
