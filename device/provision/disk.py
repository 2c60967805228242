"""Targets of provisioning: checking a card before writing, the partition table, writing an image.

A card is refused when it, or any of its partitions, is mounted, and when it holds the running
system's root file system, ``/boot`` or ``/boot/firmware`` -- before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, TextIO

from device.provision import ProvisionError

SECTOR: Final = 512
CHUNK: Final = 4 * 1024 * 1024
#: MBR partition types of a FAT boot partition (FAT12/16/32, with and without LBA).
FAT_TYPES: Final = frozenset({"1", "4", "6", "b", "c", "e", "ef"})
SYSTEM_MOUNTS: Final = ("/", "/boot", "/boot/firmware", "/usr", "/var")
DEFAULT_MOUNTS: Final = Path("/proc/self/mounts")


@dataclass(frozen=True, slots=True)
class Partition:
    """One MBR partition, in 512-byte sectors."""

    number: int
    start: int
    size: int
    type: str

    @property
    def offset(self) -> int:
        """Byte offset of the partition in the image or device."""
        return self.start * SECTOR


def require_tool(name: str) -> str:
    """The path of command ``name``, or ``provision_tool_missing`` naming the apt package."""
    path = shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).is_file()), None
    )
    if path is None:
        package = {"sfdisk": "fdisk", "mcopy": "mtools", "mmd": "mtools", "mdir": "mtools"}.get(name, name)
        raise ProvisionError(
            f"{name} not found; install it with `apt-get install {package}`", code="provision_tool_missing"
        )
    return path


def partitions(target: Path) -> list[Partition]:
    """The MBR partitions of an image file or block device (``sfdisk -J``)."""
    result = subprocess.run(
        [require_tool("sfdisk"), "-J", str(target)],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if result.returncode != 0:
        raise ProvisionError(
            f"{target}: no readable partition table ({result.stderr.strip() or 'sfdisk failed'})",
            code="provision_image_invalid",
        )
    table = json.loads(result.stdout)["partitiontable"]
    if table.get("label") != "dos":
        raise ProvisionError(
            f"{target}: expected an MBR (dos) partition table like Raspberry Pi OS, got {table.get('label')}",
            code="provision_image_invalid",
        )
    out = []
    for part in table.get("partitions", []):
        number = int(re.sub(r"^.*?(\d+)$", r"\1", part["node"]))
        out.append(Partition(number, int(part["start"]), int(part["size"]), str(part["type"]).lower()))
    return out


def boot_partition(target: Path) -> Partition:
    """The first FAT partition (Raspberry Pi OS: partition 1, ``bootfs``)."""
    for part in partitions(target):
        if part.type in FAT_TYPES:
            return part
    raise ProvisionError(
        f"{target}: no FAT boot partition (expected MBR partition 1 of type c, like Raspberry Pi OS)",
        code="provision_image_invalid",
    )


def _mount_table(mounts: Path) -> Iterator[tuple[str, str]]:
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2:
            yield fields[0].replace("\\040", " "), fields[1].replace("\\040", " ")


def _same_disk(source: str, device: Path) -> bool:
    """``source`` (a mount source) is ``device`` or one of its partitions (sdb1, mmcblk0p1)."""
    if not source.startswith("/"):
        return False
    real_source = os.path.realpath(source)
    real_device = os.path.realpath(device)
    return re.fullmatch(re.escape(real_device) + r"p?\d*", real_source) is not None


def check_card(device: Path, *, mounts: Path = DEFAULT_MOUNTS) -> None:
    """Refuse a card that is missing, not a block device, mounted or the system disk."""
    if not device.exists():
        raise ProvisionError(
            f"{device}: no such device (is the card inserted?)", code="provision_target_missing"
        )
    for source, mountpoint in _mount_table(mounts):
        if _same_disk(source, device):
            if mountpoint in SYSTEM_MOUNTS:
                raise ProvisionError(
                    f"{device}: holds the running system ({source} is mounted on {mountpoint}); refusing",
                    code="provision_system_disk",
                )
            raise ProvisionError(
                f"{device}: {source} is mounted on {mountpoint}; unmount it first (`umount {source}`)",
                code="provision_target_mounted",
            )
    if not stat.S_ISBLK(device.stat().st_mode):
        raise ProvisionError(
            f"{device}: not a block device; use --image for an image file", code="provision_not_block_device"
        )


def check_image(image: Path) -> None:
    """Refuse an image path that does not exist or is not a regular file."""
    if not image.is_file():
        raise ProvisionError(f"{image}: no such image file", code="provision_target_missing")


def open_image(image: Path) -> io.BufferedIOBase:
    """The image's bytes, decompressing ``.xz`` on the fly."""
    if image.suffix == ".xz":
        return lzma.open(image, "rb")
    return image.open("rb")


def decompress_image(image: Path) -> Path:
    """``FILE.img.xz`` → ``FILE.img`` beside it (kept if already there); other images unchanged."""
    if image.suffix != ".xz":
        return image
    plain = image.with_suffix("")
    if plain.exists():
        return plain
    tmp = plain.with_name(f".{plain.name}.tmp")
    with open_image(image) as src, tmp.open("wb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    tmp.replace(plain)
    return plain


class Progress:
    """A one-line text progress bar (``\\r``-rewritten) on ``out``."""

    def __init__(self, out: TextIO, label: str, total: int | None) -> None:
        self._out, self._label, self._total = out, label, total
        self._shown = -1

    def update(self, done: int) -> None:
        """Show ``done`` bytes of ``total`` (or just bytes when the total is unknown)."""
        mib = done // (1024 * 1024)
        if self._total:
            pct = min(100, done * 100 // self._total)
            if pct == self._shown:
                return
            self._shown = pct
            bar = "#" * (pct // 4) + " " * (25 - pct // 4)
            self._out.write(f"\r{self._label} [{bar}] {pct:3d}% {mib} MiB")
        else:
            self._out.write(f"\r{self._label} {mib} MiB")
        self._out.flush()

    def finish(self) -> None:
        """End the line."""
        self._out.write("\n")
        self._out.flush()


def write_image(
    image: Path, target: Path, out: TextIO, *, open_target: Callable[[Path], BinaryIO] | None = None
) -> str:
    """Write ``image`` (``.img`` or ``.img.xz``) to ``target``, fsync, then read it back and compare.

    Returns the SHA-256 of the written bytes.  A mismatch on read-back is ``provision_verify_failed``.
    """
    total = None if image.suffix == ".xz" else image.stat().st_size
    digest = hashlib.sha256()
    written = 0
    progress = Progress(out, "write ", total)
    opener = open_target or (lambda p: p.open("r+b") if p.exists() else p.open("wb"))
    with open_image(image) as src, opener(target) as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            progress.update(written)
        dst.flush()
        os.fsync(dst.fileno())
    progress.finish()
    check = hashlib.sha256()
    progress = Progress(out, "verify", written)
    read = 0
    with target.open("rb") as back:
        while read < written and (chunk := back.read(min(CHUNK, written - read))):
            check.update(chunk)
            read += len(chunk)
            progress.update(read)
    progress.finish()
    if read != written or check.digest() != digest.digest():
        raise ProvisionError(
            f"{target}: read-back differs from {image} after {read} bytes; the card may be failing",
            code="provision_verify_failed",
        )
    return digest.hexdigest()
