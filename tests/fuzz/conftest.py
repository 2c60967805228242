"""Fuzz suite session hooks: the per-target summary table (see README.md)."""

from __future__ import annotations

import pytest

from tests.fuzz import LONG, TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY.targets:
        return
    tr = terminalreporter
    tr.section(f"fuzz summary ({'long' if LONG else 'default'} mode)")
    width = max(len(name) for name in TALLY.targets)
    header = f"{'target':<{width}}  {'tried':>8}  {'accepted':>8}  {'crashes':>7}  {'unexpected':>10}"
    tr.write_line(f"{header}  refusals by code")
    totals = [0, 0, 0, 0]
    for name in sorted(TALLY.targets):
        t = TALLY.targets[name]
        refusals = ", ".join(f"{code}={n}" for code, n in t.refusals.most_common()) or "-"
        tr.write_line(
            f"{name:<{width}}  {t.tried:>8}  {t.accepted:>8}  {t.crashes:>7}  {t.unexpected:>10}  {refusals}"
        )
        for i, n in enumerate((t.tried, t.accepted, t.crashes, t.unexpected)):
            totals[i] += n
        if t.first_problem:
            tr.write_line(f"{'':<{width}}  first problem: {t.first_problem}")
    tr.write_line(f"{'TOTAL':<{width}}  {totals[0]:>8}  {totals[1]:>8}  {totals[2]:>7}  {totals[3]:>10}")
