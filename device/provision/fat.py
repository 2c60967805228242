"""A FAT file system inside an image or on a card, read and written with mtools (no mount, no root).

Every write compares first and leaves identical files alone, and files are stamped with a fixed
modification time, so provisioning twice leaves the partition byte-for-byte unchanged.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import Final

from device.provision import ProvisionError
from device.provision.disk import require_tool

#: Modification time given to every file written (2024-01-01T00:00:00Z): same bytes every run.
FIXED_MTIME: Final = 1_704_067_200


class FatPartition:
    """The FAT file system at byte ``offset`` of ``target`` (an image file or a block device)."""

    def __init__(self, target: Path, offset: int) -> None:
        self.target = target
        self.offset = offset
        self._env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0", "TZ": "UTC"}

    @property
    def drive(self) -> str:
        """The mtools ``-i`` argument."""
        return f"{self.target}@@{self.offset}"

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [require_tool(tool), "-i", self.drive, *args],
            capture_output=True, timeout=300, check=False, env=self._env, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def _fail(self, what: str, result: subprocess.CompletedProcess[bytes]) -> ProvisionError:
        detail = result.stderr.decode(errors="replace").strip() or f"exit status {result.returncode}"
        return ProvisionError(f"{self.target}: {what}: {detail}", code="provision_fat_error")

    def listdir(self, directory: str = "/") -> list[str]:
        """Names in ``directory`` (``[]`` when it does not exist)."""
        result = self._run("mdir", "-b", f"::{directory}")
        if result.returncode != 0:
            return []
        prefix = f"::{directory.rstrip('/')}/"
        names = []
        for line in result.stdout.decode(errors="replace").splitlines():
            name = line.strip()
            if name.startswith(prefix):
                name = name[len(prefix) :]
            if name and name not in (".", ".."):
                names.append(name.rstrip("/"))
        return names

    def exists(self, path: str) -> bool:
        """True when ``path`` (``/dir/name``) exists."""
        parent = PurePosixPath(path).parent
        return PurePosixPath(path).name in self.listdir(str(parent))

    def read(self, path: str) -> bytes | None:
        """The bytes of file ``path``, or ``None`` when it does not exist."""
        result = self._run("mcopy", "-n", f"::{path}", "-")
        if result.returncode != 0:
            if b"not found" in result.stderr or not self.exists(path):
                return None
            raise self._fail(f"cannot read {path}", result)
        return result.stdout

    def _mkdirs(self, directory: PurePosixPath) -> None:
        if str(directory) in ("/", ".") or self.exists(str(directory)):
            return
        self._mkdirs(directory.parent)
        result = self._run("mmd", f"::{directory}")
        if result.returncode != 0:
            raise self._fail(f"cannot create {directory}", result)

    def write(self, path: str, data: bytes) -> bool:
        """Make ``path`` hold ``data``; ``False`` (nothing written) when it already does."""
        if self.read(path) == data:
            return False
        self._mkdirs(PurePosixPath(path).parent)
        with tempfile.TemporaryDirectory(prefix="xephy-fat-") as tmp:
            local = Path(tmp) / "file"
            local.write_bytes(data)
            os.utime(local, (FIXED_MTIME, FIXED_MTIME))
            result = self._run("mcopy", "-o", "-m", str(local), f"::{path}")
        if result.returncode != 0:
            raise self._fail(f"cannot write {path}", result)
        return True

    def delete(self, path: str) -> bool:
        """Remove file ``path``; ``False`` when it was not there."""
        if not self.exists(path):
            return False
        result = self._run("mdel", f"::{path}")
        if result.returncode != 0:
            raise self._fail(f"cannot delete {path}", result)
        return True
