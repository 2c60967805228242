"""Byte-exact command sets of serial character displays.

Each class turns "clear", "cursor to (column, row)", "backlight" and text into the
bytes its display understands; :class:`~device.indicators.display.DisplayIndicator`
decides what to draw.  Columns and rows are 0-based here, whatever the wire uses.

* :class:`SerLCD` — SparkFun SerLCD / OpenLCD (16×2, 20×4, RGB backlight), TTL UART
  9600 8N1 at 3.3 V: wires straight to the Pi's GPIO14 (TXD).
* :class:`MatrixOrbital` — Matrix Orbital LK/GLK and the Adafruit USB + Serial LCD
  backpack (``/dev/ttyACM0``), which speaks the same commands.
* :class:`PlainLines` — no commands at all: each new screen is written as text lines,
  for a serial terminal or a log capture (``spy://``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar, Protocol

from device.indicators.view import to_ascii

__all__ = ["COMMAND_SETS", "CommandSet", "MatrixOrbital", "PlainLines", "SerLCD"]


class CommandSet(Protocol):
    """How one family of displays is driven."""

    addressable: ClassVar[bool]
    """True if the cursor can be positioned, so only changed characters need re-sending."""

    def setup(self) -> bytes:
        """Bytes sent once after the port opens, before the first (clearing) screen."""

    def goto(self, column: int, row: int) -> bytes:
        """Move the cursor (0-based)."""

    def text(self, text: str) -> bytes:
        """Printable ASCII that cannot be mistaken for a command."""

    def backlight(self, rgb: tuple[int, int, int]) -> bytes:
        """Set the backlight colour (0–255 each); empty if the display has no such command."""

    def screen(self, lines: Sequence[str]) -> bytes:
        """A whole screen, for displays that are not addressable."""


def _ascii(text: str) -> bytes:
    return to_ascii(text).encode("ascii")


class SerLCD:
    """SparkFun SerLCD v2 ("OpenLCD"), from its Arduino library ``SerLCD.h``.

    ``0x7C`` starts a setting command and ``0xFE`` an HD44780 command, so a ``|`` in
    text is sent as ``!``.
    """

    addressable: ClassVar[bool] = True
    SETTING: ClassVar[int] = 0x7C
    SPECIAL: ClassVar[int] = 0xFE
    ROW_OFFSETS: ClassVar[tuple[int, ...]] = (0x00, 0x40, 0x14, 0x54)

    def setup(self) -> bytes:
        """Nothing: every first screen starts with a clear."""
        return b""

    def clear(self) -> bytes:
        """``0x7C 0x2D``: clear the screen, cursor home."""
        return bytes((self.SETTING, 0x2D))

    def goto(self, column: int, row: int) -> bytes:
        """``0xFE``, ``0x80 | DDRAM address``."""
        return bytes((self.SPECIAL, 0x80 | (column + self.ROW_OFFSETS[row])))

    def text(self, text: str) -> bytes:
        """ASCII text with ``|`` replaced."""
        return _ascii(text.replace("|", "!"))

    def backlight(self, rgb: tuple[int, int, int]) -> bytes:
        """``0x7C 0x2B R G B``: the RGB backlight, without a system message (firmware ≥ 1.1)."""
        return bytes((self.SETTING, 0x2B, *rgb))

    def contrast(self, level: int) -> bytes:
        """``0x7C 0x18 n``: contrast 0–255 (stored in the display's EEPROM)."""
        return bytes((self.SETTING, 0x18, level))

    def screen(self, lines: Sequence[str]) -> bytes:
        """Clear, then each line at its row."""
        return self.clear() + b"".join(self.goto(0, r) + self.text(line) for r, line in enumerate(lines))


class MatrixOrbital:
    """Matrix Orbital LK/GLK and the Adafruit USB + Serial LCD backpack (``0xFE`` commands).

    Setup turns the backlight on, autoscroll (which would scroll the screen when the
    last character is written) and both cursors off, and clears.  Positions are
    1-based on the wire.
    """

    addressable: ClassVar[bool] = True
    COMMAND: ClassVar[int] = 0xFE

    def _cmd(self, *args: int) -> bytes:
        return bytes((self.COMMAND, *args))

    def setup(self) -> bytes:
        """Backlight on (``FE 42 00``), autoscroll off (``FE 52``), cursors off (``FE 4B``, ``FE 54``)."""
        return self._cmd(0x42, 0) + self._cmd(0x52) + self._cmd(0x4B) + self._cmd(0x54)

    def clear(self) -> bytes:
        """``0xFE 0x58``."""
        return self._cmd(0x58)

    def goto(self, column: int, row: int) -> bytes:
        """``0xFE 0x47 column row``, 1-based."""
        return self._cmd(0x47, column + 1, row + 1)

    def text(self, text: str) -> bytes:
        """ASCII text (``0xFE`` cannot occur in it)."""
        return _ascii(text)

    def backlight(self, rgb: tuple[int, int, int]) -> bytes:
        """Not sent: Matrix Orbital (``FE 82``) and Adafruit (``FE D0``) disagree on the colour command."""
        return b""

    def contrast(self, level: int) -> bytes:
        """``0xFE 0x50 n``."""
        return self._cmd(0x50, level)

    def brightness(self, level: int) -> bytes:
        """``0xFE 0x99 n``."""
        return self._cmd(0x99, level)

    def screen(self, lines: Sequence[str]) -> bytes:
        """Clear, then each line at its row."""
        return self.clear() + b"".join(self.goto(0, r) + self.text(line) for r, line in enumerate(lines))


class PlainLines:
    """No commands: each new screen is sent as CR LF-terminated lines, trailing spaces dropped."""

    addressable: ClassVar[bool] = False

    def setup(self) -> bytes:
        """Nothing."""
        return b""

    def goto(self, column: int, row: int) -> bytes:
        """Not possible."""
        return b""

    def text(self, text: str) -> bytes:
        """ASCII text."""
        return _ascii(text)

    def backlight(self, rgb: tuple[int, int, int]) -> bytes:
        """Not possible."""
        return b""

    def screen(self, lines: Sequence[str]) -> bytes:
        """``line\\r\\n`` per row."""
        return b"".join(self.text(line.rstrip()) + b"\r\n" for line in lines)


#: ``indicators.display.driver`` → command set.
COMMAND_SETS: Mapping[str, Callable[[], CommandSet]] = MappingProxyType(
    {"serlcd": SerLCD, "matrix_orbital": MatrixOrbital, "line": PlainLines}
)
