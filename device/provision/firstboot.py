"""``xephy/firstboot.env``: what ``provision`` decided, for ``provisioning/firstboot.sh`` to source.

The bundle id (a digest of everything else in the bundle) names one provisioning: first boot keeps
its step markers under it and records it in ``/var/lib/xephy-device/.provisioned`` when done, so a
re-provisioned card installs again and a finished one does nothing.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from device.config import Config
from device.indicators.commandsets import COMMAND_SETS
from device.provision.pi_wheelhouse import PI_LLAMA_CMAKE_ARGS
from device.provision.wheelhouse import SMOLLM2_REQUIREMENT

#: Replaced by "Installing n/N" when first boot draws on the serial display.
_TEXT_SLOT = "@@@@"


def bundle_id(files: Mapping[str, bytes]) -> str:
    """A digest of the bundle's files (path and bytes, in path order)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        data = files[path]
        for part in (path.encode(), data):
            digest.update(len(part).to_bytes(8, "big") + part)
    return "bundle-" + digest.hexdigest()[:20]


def _printf_escape(data: bytes) -> str:
    """``data`` as ``printf %b`` octal escapes."""
    return "".join(f"\\0{byte:03o}" for byte in data)


@dataclass(frozen=True, slots=True)
class FirstBootPlan:
    """The settings first boot reads."""

    bundle_id: str
    model_file: str | None
    install_smollm2: bool
    new_identity: bool

    def render(self, config: Config) -> bytes:
        """The ``firstboot.env`` text (shell assignments, values quoted)."""
        values: dict[str, str] = {
            "BUNDLE_ID": self.bundle_id,
            "MODEL_FILE": self.model_file or "",
            "INSTALL_SMOLLM2": "1" if self.install_smollm2 else "0",
            "SMOLLM2_REQUIREMENT": SMOLLM2_REQUIREMENT,
            "NEW_IDENTITY": "1" if self.new_identity else "0",
            "LLAMA_CMAKE_ARGS": PI_LLAMA_CMAKE_ARGS,
            "STATUS_LED_PIN": "",
            "DISPLAY_PORT": "",
            "DISPLAY_BAUD": "",
            "DISPLAY_PREFIX": "",
            "DISPLAY_SUFFIX": "",
        }
        leds = config.indicators.leds
        if leds.enabled and leds.status_pin is not None:
            values["STATUS_LED_PIN"] = str(leds.status_pin)
        display = config.indicators.display
        if display.enabled and display.port.startswith("/dev/"):
            screen = COMMAND_SETS[display.driver]().screen([_TEXT_SLOT, "xephy-device"])
            prefix, _, suffix = screen.partition(_TEXT_SLOT.encode())
            values.update(
                DISPLAY_PORT=display.port,
                DISPLAY_BAUD=str(display.baudrate),
                DISPLAY_PREFIX=_printf_escape(prefix),
                DISPLAY_SUFFIX=_printf_escape(suffix),
            )
        lines = ["# written by `xephy-device provision`; read by firstboot.sh"]
        lines += [f"{key}={shlex.quote(value)}" for key, value in values.items()]
        return ("\n".join(lines) + "\n").encode()
