"""The house format shared by every benchmark script: one row per figure, with its same-run baseline.

Not a benchmark itself (``run_all.py`` skips files starting with ``_``).
"""

from __future__ import annotations

from typing import Any


def row(
    figure: str,
    value: float,
    unit: str,
    baseline: float,
    baseline_figure: str,
    target: str,
    meets_target: bool | None,
) -> dict[str, Any]:
    """One row: the figure, its same-run baseline, their ratio, the target and whether it was met."""
    return {
        "figure": figure,
        "value": round(value, 6),
        "unit": unit,
        "baseline": round(baseline, 6),
        "baseline_figure": baseline_figure,
        "ratio": round(value / baseline, 6) if baseline else float("inf"),
        "target": target,
        "meets_target": meets_target,
    }


def markdown(rows: list[dict[str, Any]], column: str, *, digits: int = 2) -> str:
    """The rows as a markdown table whose value column is headed ``column``."""
    lines = [
        f"| figure | {column} | baseline | ratio | target | met |",
        "|---|---:|---|---:|---|---|",
    ]
    for r in rows:
        met = {True: "yes", False: "**no**", None: "–"}[r["meets_target"]]
        lines.append(
            f"| {r['figure']} | {r['value']:,.{digits}f} {r['unit']} | {r['baseline']:,.{digits}f} "
            f"({r['baseline_figure']}) | {r['ratio']:.2f} | {r['target']} | {met} |"
        )
    return "\n".join(lines)
