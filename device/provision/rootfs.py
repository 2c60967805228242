"""What release and architecture an image's root file system holds, read without mounting.

``debugfs -R 'cat PATH' 'TARGET?offset=N'`` reads ``/usr/lib/os-release`` (the Debian codename) and
the ELF header of ``/usr/bin/dash`` (``e_machine``: aarch64 or 32-bit ARM) from the ext4 root
partition of an image file or a card.  When the root cannot be read (no debugfs, not ext4), the boot
partition decides: 32-bit Raspberry Pi OS ships ``kernel7l.img``/``kernel7.img``/``kernel.img``,
64-bit images do not, and cloud-init files mean Trixie.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from device.provision.disk import Partition

ELF_MACHINES: Final = {0xB7: "aarch64", 0x28: "armhf", 0x3E: "x86_64"}
KERNELS_32BIT: Final = frozenset({"kernel.img", "kernel7.img", "kernel7l.img"})


@dataclass(frozen=True, slots=True)
class RootFacts:
    """The image's Debian codename and CPU architecture, and where they were read."""

    release: str
    machine: str
    source: str


def read_root_file(target: Path, root: Partition, path: str) -> bytes | None:
    """The bytes of ``path`` in the ext4 partition ``root`` of ``target``, or ``None``."""
    debugfs = shutil.which("debugfs") or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / "debugfs").is_file()), None
    )
    if debugfs is None:
        return None
    result = subprocess.run(
        [debugfs, "-R", f"cat {path}", f"{target}?offset={root.offset}"],
        capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if result.returncode != 0 or not result.stdout:
        return None
    return result.stdout


def codename(os_release: bytes) -> str | None:
    """``VERSION_CODENAME`` of an os-release file."""
    for line in os_release.decode(errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "VERSION_CODENAME":
            return value.strip().strip('"') or None
    return None


def elf_machine(header: bytes) -> str | None:
    """The architecture named by an ELF header's ``e_machine``."""
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return ELF_MACHINES.get(int.from_bytes(header[18:20], "little"), "unknown")


def root_facts(target: Path, root: Partition | None, boot_names: list[str], cloud_init: bool) -> RootFacts:
    """Release and architecture from the root partition, else from the boot partition's files."""
    release = machine = None
    if root is not None:
        os_release = read_root_file(target, root, "/usr/lib/os-release") or read_root_file(
            target, root, "/etc/os-release"
        )
        release = codename(os_release) if os_release else None
        dash = read_root_file(target, root, "/usr/bin/dash")
        machine = elf_machine(dash[:20]) if dash else None
    if release is not None and machine is not None:
        return RootFacts(release, machine, "root partition")
    lower = {name.lower() for name in boot_names}
    if machine is None:
        machine = "armhf" if lower & KERNELS_32BIT else "aarch64"
    if release is None:
        release = "trixie" if cloud_init else "bookworm"
    return RootFacts(release, machine, "boot partition")
