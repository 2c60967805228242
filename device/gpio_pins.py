"""Pin names as gpiozero accepts them, resolved to BCM numbers without importing gpiozero.

gpiozero (2.x) takes a pin as a BCM number (``17`` or ``"17"``), or one of its names for a pin of
the 40-pin J8 header: ``"GPIO17"``, ``"BCM17"``, ``"BOARD11"``, ``"J8:11"``, ``"WPI0"`` (wiringPi).
Names are case-sensitive, as in gpiozero.  Every 40-pin Raspberry Pi has the same J8 header, so a
table here gives the same answer as gpiozero's board info -- ``tests/unit/test_gpio_pins.py`` checks
that against gpiozero itself.  Resolving every name to BCM makes "BOARD11" and "GPIO17" the same pin
for the config's pin-conflict check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

__all__ = ["BCM_PIN_MAX", "BOARD_TO_BCM", "WIRINGPI_TO_BCM", "bcm_pin"]

BCM_PIN_MAX: Final = 27

#: J8 header position → BCM number, for the header positions that are GPIOs.
BOARD_TO_BCM: Final[Mapping[int, int]] = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24, 19: 10,
    21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12, 33: 13, 35: 19,
    36: 16, 37: 26, 38: 20, 40: 21,
}  # fmt: skip

#: wiringPi number → BCM number.
WIRINGPI_TO_BCM: Final[Mapping[int, int]] = {
    0: 17, 1: 18, 2: 27, 3: 22, 4: 23, 5: 24, 6: 25, 7: 4, 8: 2, 9: 3, 10: 8, 11: 7, 12: 10,
    13: 9, 14: 11, 15: 14, 16: 15, 21: 5, 22: 6, 23: 13, 24: 19, 25: 26, 26: 12, 27: 16, 28: 20,
    29: 21, 30: 0, 31: 1,
}  # fmt: skip

_NAME = re.compile(r"(GPIO|BCM|BOARD|J8:|WPI)(0|[1-9][0-9]?)|(0|[1-9][0-9]?)")


def bcm_pin(spec: int | str) -> int:
    """The BCM number of a pin written as gpiozero accepts it; ValueError naming the problem."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        if 0 <= spec <= BCM_PIN_MAX:
            return spec
        raise ValueError(f"{spec} is not a BCM GPIO number (0 to {BCM_PIN_MAX})")
    if not isinstance(spec, str):
        raise ValueError(f"expected a pin number or name, got {spec!r}")
    match = _NAME.fullmatch(spec)
    if match is None:
        raise ValueError(
            f"{spec!r} is not a pin name (write 17, GPIO17, BCM17, BOARD11, J8:11 or WPI0; names are "
            "case-sensitive, as in gpiozero)"
        )
    prefix, number = match.group(1), int(match.group(2) or match.group(3))
    if prefix in (None, "GPIO", "BCM"):
        return bcm_pin(number)
    table = WIRINGPI_TO_BCM if prefix == "WPI" else BOARD_TO_BCM
    if number not in table:
        raise ValueError(f"{spec!r} is not a GPIO pin of the 40-pin header")
    return table[number]
