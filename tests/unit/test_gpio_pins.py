"""Pins are written as gpiozero users write them, and resolve to the pin gpiozero would drive."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory

from device.gpio_pins import bcm_pin


def gpiozero_names() -> dict[str | int, int]:
    """Every name gpiozero accepts for a GPIO of the 40-pin J8 header → its BCM number."""
    header = MockFactory().board_info.headers["J8"]
    out: dict[str | int, int] = {}
    for pin in header.pins.values():
        if pin.name.startswith("GPIO"):
            for name in pin.names:
                out[name] = int(pin.name.removeprefix("GPIO"))
    return out


def test_every_name_gpiozero_accepts_resolves_to_the_same_bcm_pin() -> None:
    names = gpiozero_names()
    assert {"GPIO17", "BCM17", "BOARD11", "J8:11", "WPI0", "17", 17} <= set(names)
    assert {name: bcm_pin(name) for name in names} == names


@pytest.mark.parametrize(
    "spec", ["BOARD1", "BOARD6", "J8:2", "GPIO28", "gpio17", "board11", "GPIO 17", "07", 28, -1]
)
def test_what_gpiozero_refuses_is_refused(spec: str | int) -> None:
    with pytest.raises(ValueError):
        bcm_pin(spec)
    with pytest.raises(Exception, match=r"valid pin name|not a GPIO|Invalid|invalid"):
        MockFactory().board_info.to_gpio(spec)
