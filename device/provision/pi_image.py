"""Raspberry Pi OS-shaped disk images, built without root: MBR, FAT32 ``bootfs``, ext4 ``rootfs``.

Used by the provisioning tests and by ``make pi-check``: the partition layout of a real image
(boot at sector 8192, type ``c``; root after it, type ``83``), boot files as Bookworm-style
(firstrun) or Trixie-style (cloud-init) releases ship them, and a root file system filled from a
directory with ``mke2fs -d``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from device.provision.disk import SECTOR, require_tool

BOOT_START: Final = 8192
CMDLINE: Final = (
    "console=serial0,115200 console=tty1 root=PARTUUID=abcd1234-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
)
CONFIG_TXT: Final = "[all]\ndtparam=audio=on\n#dtparam=spi=on\n#enable_uart=1\n"
_ENV: Final = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def bookworm_boot_files() -> dict[str, str]:
    """The boot files that matter to provisioning on a Bookworm-style (firstrun) image."""
    return {
        "cmdline.txt": CMDLINE,
        "config.txt": CONFIG_TXT,
        "issue.txt": "Raspberry Pi reference 2024-11-19\n",
        "kernel8.img": "",
    }


def trixie_boot_files() -> dict[str, str]:
    """The boot files of a Trixie-style image: cloud-init NoCloud files besides the Bookworm ones."""
    return {
        **bookworm_boot_files(),
        "user-data": "#cloud-config\n# placeholder shipped with the image\n",
        "meta-data": "instance-id: rpios-image\n",
        "network-config": "network:\n  version: 2\n",
    }


def _run(*cmd: str, stdin: str | None = None) -> None:
    result = subprocess.run(
        [require_tool(cmd[0]), *cmd[1:]], input=stdin, capture_output=True, text=True, env=_ENV,
        timeout=1800, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}…: {result.stderr.strip()}")


def build_pi_image(
    path: Path,
    boot_files: dict[str, str],
    *,
    root_dir: Path | None = None,
    boot_mib: int = 64,
    root_mib: int = 16,
) -> Path:
    """Write a Pi-shaped image to ``path``: ``boot_files`` on the FAT partition, ``root_dir`` (default:
    just ``/etc/hostname``) as the ext4 root of ``root_mib`` MiB."""
    boot_sectors = boot_mib * 1024 * 1024 // SECTOR
    root_start = BOOT_START + boot_sectors
    with path.open("wb") as f:
        f.truncate((root_start + root_mib * 1024 * 1024 // SECTOR) * SECTOR)
    _run("sfdisk", "--quiet", str(path), stdin=(
        f"label: dos\nunit: sectors\nstart={BOOT_START}, size={boot_sectors}, type=c, bootable\n"
        f"start={root_start}, type=83\n"
    ))  # fmt: skip
    _run(
        "mkfs.vfat",
        "-F",
        "32",
        "-n",
        "BOOTFS",
        "--offset",
        str(BOOT_START),
        str(path),
        str(boot_sectors // 2),
    )
    with tempfile.TemporaryDirectory(prefix="xephy-pi-image-") as tmp:
        src = Path(tmp) / "boot"
        src.mkdir()
        for name, text in boot_files.items():
            (src / name).write_text(text)
        if boot_files:
            _run("mcopy", "-i", f"{path}@@{BOOT_START * SECTOR}", *[str(src / n) for n in boot_files], "::/")
        if root_dir is None:
            root_dir = Path(tmp) / "root"
            (root_dir / "etc").mkdir(parents=True)
            (root_dir / "etc/hostname").write_text("raspberrypi\n")
        _run("mke2fs", "-q", "-t", "ext4", "-L", "rootfs", "-d", str(root_dir),
             "-E", f"offset={root_start * SECTOR}", str(path), f"{root_mib}M")  # fmt: skip
    return path
