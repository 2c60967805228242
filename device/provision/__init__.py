"""``xephy-device provision``: turn a Raspberry Pi OS image or SD card into a ready device.

The host side of flash provisioning.  Everything lands on the card's FAT boot partition,
edited without mounting it (mtools on ``image@@offset``); the root file system is never
touched from the host.  On first boot a script from ``provisioning/`` (started by cloud-init on
Trixie-style images, by ``firstrun.sh`` + ``systemd.run=`` on Bookworm-style ones) creates the
service user, installs the agent into a venv, moves the keys into ``/var/lib/xephy-device`` and
enables the systemd units.

Modules: :mod:`.disk` (targets, partition table, image writing), :mod:`.fat` (mtools),
:mod:`.bootfiles` (cmdline.txt / config.txt / cloud-init / firstrun text), :mod:`.bundle` (what
goes onto the card), :mod:`.command` (the steps in order; the CLI is :mod:`device.commands.provision`).
"""

from __future__ import annotations

from device.errors import DeviceError, UsageError


class ProvisionError(DeviceError):
    """Provisioning refused or failed; ``code`` says why (see docs/errors.md)."""

    code = "provision_failed"


class ProvisionUsageError(ProvisionError, UsageError):
    """Contradictory or missing options (``provision_usage``): the CLI exits 2, as for any usage error."""

    code = "provision_usage"


__all__ = ["ProvisionError", "ProvisionUsageError"]
