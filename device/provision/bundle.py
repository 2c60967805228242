"""What goes onto the card besides the boot files: keys, the agent's source, units, templates.

The source archive is reproducible (sorted entries, zero timestamps and owners, gzip mtime 0),
so provisioning the same checkout twice writes the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from device.keys import BOT_KEYPAIR_FILE, NOSTR_KEY_FILE, KeyFileError, KeyStore, write_secret_file
from device.provision import ProvisionError

#: The checkout this module belongs to (templates, units, sources).
PROJECT_ROOT: Final = Path(__file__).resolve().parents[2]
ARCHIVE_NAME: Final = "xephy-llm-device.tar.gz"
ARCHIVE_PREFIX: Final = "xephy-llm-device"
#: unit file in systemd/ → name in the card's xephy/systemd/ folder.
UNIT_FILES: Final = {
    "xephy-device.service": "xephy-device.service",
    "xephy-device.socket": "xephy-device.socket",
    "sysusers.d/xephy-device.conf": "sysusers.conf",
    "tmpfiles.d/xephy-device.conf": "tmpfiles.conf",
    "xephy-firstboot.service": "xephy-firstboot.service",
}
GGUF_MAGIC: Final = b"GGUF"


@dataclass(frozen=True, slots=True)
class Identity:
    """A device's public keys: what the operator registers, and what the card records as
    ``xephy/identity.json`` so a later ``provision`` knows the device already has keys."""

    nostr_pubkey: str
    npub: str
    bot_pubkey: str
    origin: str

    def to_json(self) -> bytes:
        """The public record written next to the bundle (no secrets)."""
        body = {"nostr_pubkey": self.nostr_pubkey, "npub": self.npub, "bot_pubkey": self.bot_pubkey}
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, origin: str) -> Identity:
        """Parse ``identity.json`` (``provision_image_invalid`` when it is not ours)."""
        try:
            body = json.loads(data)
            return cls(str(body["nostr_pubkey"]), str(body["npub"]), str(body["bot_pubkey"]), origin)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProvisionError(
                f"xephy/identity.json on the card is unreadable: {exc}", code="provision_image_invalid"
            ) from exc


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """The two key files' bytes and the public keys to register."""

    nostr_key: bytes
    bot_keypair: bytes
    nostr_pubkey: str
    npub: str
    bot_pubkey: str
    origin: str

    @classmethod
    def from_files(cls, nostr_key: bytes, bot_keypair: bytes, origin: str) -> KeyMaterial:
        """Validate key bytes (as :class:`KeyStore` would load them) and derive the public keys."""
        with tempfile.TemporaryDirectory(prefix="xephy-keys-") as tmp:
            store = KeyStore(Path(tmp))
            write_secret_file(store.nostr_path, nostr_key)
            write_secret_file(store.bot_path, bot_keypair)
            try:
                keys = store.load()
            except KeyFileError as exc:
                raise ProvisionError(f"{origin}: {exc.message}", code="provision_keys_invalid") from exc
        return cls(nostr_key, bot_keypair, keys.nostr_pubkey_hex, keys.npub, str(keys.bot_pubkey), origin)

    @classmethod
    def from_directory(cls, directory: Path) -> KeyMaterial:
        """Keys from ``--keys-from DIR`` (files must be mode 0600, as the agent requires)."""
        store = KeyStore(directory)
        try:
            store.load()
        except KeyFileError as exc:
            raise ProvisionError(f"--keys-from: {exc.message}", code="provision_keys_invalid") from exc
        return cls.from_files(store.nostr_path.read_bytes(), store.bot_path.read_bytes(), str(directory))

    @classmethod
    def generate(cls) -> KeyMaterial:
        """Fresh keys (only the card gets a copy of the secrets)."""
        with tempfile.TemporaryDirectory(prefix="xephy-keys-") as tmp:
            store = KeyStore(Path(tmp))
            store.init()
            return cls.from_files(store.nostr_path.read_bytes(), store.bot_path.read_bytes(), "generated")

    @property
    def identity(self) -> Identity:
        """The public half."""
        return Identity(self.nostr_pubkey, self.npub, self.bot_pubkey, self.origin)

    def files(self) -> dict[str, bytes]:
        """Key file name → bytes."""
        return {NOSTR_KEY_FILE: self.nostr_key, BOT_KEYPAIR_FILE: self.bot_keypair}


def template(name: str, root: Path = PROJECT_ROOT) -> bytes:
    """A file from ``provisioning/``."""
    return _project_file(root / "provisioning" / name)


def unit_files(root: Path = PROJECT_ROOT) -> dict[str, bytes]:
    """Card name (under ``xephy/systemd/``) → bytes of the shipped unit files."""
    return {card: _project_file(root / "systemd" / src) for src, card in UNIT_FILES.items()}


def _project_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ProvisionError(
            f"{path}: missing; run provision from a checkout of xephy-llm-device",
            code="provision_source_missing",
        ) from exc


def _source_files(root: Path) -> list[Path]:
    files = [root / "pyproject.toml", root / "README.md"]
    for path in (root / "device").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.append(path)
    return sorted(files)


def source_archive(root: Path = PROJECT_ROOT) -> bytes:
    """A reproducible ``.tar.gz`` of the agent's source that ``pip install`` accepts."""
    files = _source_files(root)
    for path in files[:2]:
        _project_file(path)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            data = path.read_bytes()
            info = tarfile.TarInfo(f"{ARCHIVE_PREFIX}/{path.relative_to(root).as_posix()}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def model_file(path: Path) -> bytes:
    """The bytes of ``--model FILE.gguf`` (refused when missing or not GGUF)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProvisionError(f"--model {path}: {exc.strerror}", code="provision_model_invalid") from exc
    if not data.startswith(GGUF_MAGIC):
        raise ProvisionError(
            f"--model {path}: not a GGUF file (llama.cpp format)", code="provision_model_invalid"
        )
    return data
