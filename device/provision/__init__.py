"""``xephy-device provision``: turn a Raspberry Pi OS image or SD card into a ready device.

The host side of flash provisioning.  Everything lands on the card's FAT boot partition,
edited without mounting it (mtools on ``image@@offset``); the root file system is only read
(release and architecture).  On first boot a hook (cloud-init ``bootcmd`` on Trixie-style images,
``firstrun.sh`` + ``systemd.run=`` on Bookworm-style ones) moves the keys into
``/var/lib/xephy-device`` and enables ``xephy-firstboot.service``, which installs the agent once the
network is up, resumably, and starts it.

Modules: :mod:`.disk` (targets, partition table, image writing), :mod:`.fat` (mtools),
:mod:`.rootfs` (release/architecture of the image), :mod:`.bootfiles` (cmdline.txt / config.txt /
cloud-init / firstrun text), :mod:`.bundle` (what goes onto the card), :mod:`.firstboot`
(``firstboot.env``, the bundle id), :mod:`.wheelhouse` (is a wheelhouse complete for a release),
:mod:`.command` (the steps in order; the CLI is :mod:`device.commands.provision`); for developers:
:mod:`.pi_wheelhouse` (``make pi-wheelhouse``), :mod:`.pi_image` (Pi-shaped images), :mod:`.pi_check`
(``make pi-check``).
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
