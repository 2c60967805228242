"""Fuzz the serial display with any text: status/model/balance/notice lines, flashes, full screens.

Property: the bytes sent are printable ASCII plus the command set's own control sequences, and no
text ever runs past the display's width (a 20x4 SerLCD maps row 0's columns 20+ onto row 2) or below
its last row.  The bytes are checked by a strict decoder here, not by tests/fixtures' lenient Screen.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from device.config import parse_config
from device.indicators.commandsets import SerLCD
from device.indicators.display import DisplayIndicator
from device.state import Activity, ChainStatus, Change, ChangeKind, DeviceState, LinkStatus, StateHub
from tests.fuzz import attempt, fuzz_settings
from tests.fuzz import strategies as fs

GEOMETRIES = [(16, 2), (20, 4)]


class BadBytes(AssertionError):
    code = "display_bytes_invalid"


def check_serlcd(data: bytes, columns: int, rows: int) -> None:
    i, col = 0, None
    while i < len(data):
        b = data[i]
        if b == 0x7C:
            op = data[i + 1]
            if op == 0x2D:
                col, i = 0, i + 2
            elif op == 0x2B:
                i += 5
            else:
                raise BadBytes(f"unknown setting command 7C {op:02X}")
        elif b == 0xFE:
            addr = data[i + 1]
            if not addr & 0x80:
                raise BadBytes(f"unknown special command FE {addr:02X}")
            addr &= 0x7F
            starts = [off for off in SerLCD.ROW_OFFSETS[:rows] if off <= addr < off + columns]
            if not starts:
                raise BadBytes(f"goto to DDRAM {addr:#x}, outside a {columns}x{rows} display")
            col, i = addr - starts[0], i + 2
        else:
            if not 0x20 <= b < 0x7F:
                raise BadBytes(f"non-printable byte {b:#x} in text")
            if col is None:
                raise BadBytes("text before any clear or goto")
            col += 1
            if col > columns:
                raise BadBytes(f"text runs past column {columns}")
            i += 1


MO_SIMPLE = {0x52, 0x4B, 0x54, 0x58}


def check_matrix_orbital(data: bytes, columns: int, rows: int) -> None:
    i, col = 0, None
    while i < len(data):
        b = data[i]
        if b == 0xFE:
            op = data[i + 1]
            if op == 0x47:
                c, r = data[i + 2], data[i + 3]
                if not (1 <= c <= columns and 1 <= r <= rows):
                    raise BadBytes(f"goto ({c}, {r}) outside {columns}x{rows}")
                col, i = c - 1, i + 4
            elif op == 0x42:
                i += 3
            elif op in MO_SIMPLE:
                col = 0 if op == 0x58 else col
                i += 2
            else:
                raise BadBytes(f"unknown command FE {op:02X}")
        else:
            if not 0x20 <= b < 0x7F:
                raise BadBytes(f"non-printable byte {b:#x} in text")
            if col is None:
                raise BadBytes("text before any clear or goto")
            col += 1
            if col > columns:
                raise BadBytes(f"text runs past column {columns}")
            i += 1


def check_line(data: bytes, columns: int, rows: int) -> None:
    if not data:
        return
    if not data.endswith(b"\r\n"):
        raise BadBytes("screen not terminated by CR LF")
    lines = data[:-2].split(b"\r\n")
    if len(lines) % rows:
        raise BadBytes(f"{len(lines)} lines is not whole screens of {rows}")
    for line in lines:
        if len(line) > columns or any(not 0x20 <= b < 0x7F for b in line):
            raise BadBytes(f"line {line!r} is not at most {columns} printable characters")


CHECKERS = {"serlcd": check_serlcd, "matrix_orbital": check_matrix_orbital, "line": check_line}

states = st.builds(
    DeviceState,
    model=fs.display_texts,
    relay=st.sampled_from(LinkStatus),
    chain=st.sampled_from(ChainStatus),
    activity=st.sampled_from(Activity),
    user=st.none() | fs.display_texts,
    user_balance=st.none() | st.integers(-(2**63), 2**63),
    last_error=st.none()
    | st.builds(
        Change,
        kind=st.sampled_from(ChangeKind),
        at=st.floats(0, 100),
        user=st.none() | fs.display_texts,
        tokens=st.integers(-(2**63), 2**63),
        code=st.none() | fs.display_texts,
        message=fs.display_texts,
    ),
)
steps = st.lists(
    st.tuples(
        states,
        st.sampled_from(["state", "flash", "show"]),
        st.lists(fs.display_texts, max_size=6),
        st.floats(0, 30),
    ),
    min_size=1,
    max_size=5,
)


@fuzz_settings(400)
@given(st.sampled_from(sorted(CHECKERS)), st.sampled_from(GEOMETRIES), steps)
@example(
    "serlcd", (16, 2), [(DeviceState(), "show", ["\ufdfa", "ß" * 16], 1.0)]
)  # grew past 16 columns (fixed)
@example("serlcd", (20, 4), [(DeviceState(model="€" * 20), "state", [], 1.0)])  # row 0 spilled into row 2
@example("matrix_orbital", (16, 2), [(DeviceState(), "flash", ["a\u0301" * 16], 0.0)])
def test_display_bytes_stay_printable_and_inside_the_geometry(
    driver: str, geometry: tuple[int, int], script: list[tuple[DeviceState, str, list[str], float]]
) -> None:
    columns, rows = geometry
    config = parse_config(
        {"indicators": {"display": {"port": "loop://", "driver": driver, "columns": columns, "rows": rows}}},
        base_dir=Path("/"),
    )
    display = DisplayIndicator(config.indicators.display, StateHub(), clock=lambda: 0.0)
    sent = bytearray(display.commands.setup())
    now = 0.0
    for state, action, texts, dt in script:
        now += dt
        if action == "flash" and texts:
            display._push(dataclasses.replace(_notice(display, texts[:1]), until=now + 3))
        elif action == "show":
            display._push(dataclasses.replace(_notice(display, ["\0", *texts]), until=now + 10))

        def render(state: DeviceState = state, at: float = now) -> None:
            lines, _ = display.layout(state, at)
            assert len(lines) == rows
            sent.extend(display._diff(lines))
            display._shown = lines
            CHECKERS[driver](bytes(sent), columns, rows)

        # Displays have no typed error: any exception, a bad byte or an overflow is a crash.
        attempt(f"display.{driver}", render, error=())


def _notice(display: DisplayIndicator, lines: list[str]):  # type: ignore[no-untyped-def]
    from device.indicators.view import Notice

    return Notice(tuple(lines), 0.0)
