"""The device's two secret keys, kept as files under ``device.state_dir``.

* ``nostr.key`` — the device's Nostr secret key as 64 lowercase hex characters
  (an ``nsec1…`` is accepted when read).  It signs every ``Status`` and
  ``Transaction`` event the device publishes.
* ``solana-bot.json`` — the Solana *bot* keypair in the Solana CLI format (a JSON
  array of 64 integers).  It must equal the namespace's (v2) or the global
  account's (v1) ``bot`` and pays the transaction fees of ``pay``.

Both files are written with mode 0600 and atomically (temporary file, fsync,
rename), so a power cut never leaves half a key.  Loading refuses a key file that
group or others can read: a leaked bot key lets anyone charge every user's vault.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from nostr_sdk import Keys
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from device.errors import DeviceError

NOSTR_KEY_FILE = "nostr.key"
BOT_KEYPAIR_FILE = "solana-bot.json"
KEY_FILE_MODE = 0o600


class KeyFileError(DeviceError):
    """A key file is missing, unreadable, malformed or too widely readable."""

    code = "key_invalid"


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """The loaded secret keys of one device."""

    nostr: Keys
    bot: Keypair

    @property
    def nostr_pubkey_hex(self) -> str:
        """The device's Nostr public key, 64 lowercase hex characters."""
        return str(self.nostr.public_key().to_hex())

    @property
    def npub(self) -> str:
        """The device's Nostr public key in NIP-19 ``npub1…`` form."""
        return str(self.nostr.public_key().to_bech32())

    @property
    def bot_pubkey(self) -> Pubkey:
        """The Solana bot public key."""
        return self.bot.pubkey()


class KeyStore:
    """Reads and creates the key files in one directory (normally ``state_dir``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def nostr_path(self) -> Path:
        """Path of the Nostr secret key file."""
        return self.directory / NOSTR_KEY_FILE

    @property
    def bot_path(self) -> Path:
        """Path of the Solana bot keypair file."""
        return self.directory / BOT_KEYPAIR_FILE

    def exists(self) -> bool:
        """True when both key files are present."""
        return self.nostr_path.exists() and self.bot_path.exists()

    def init(self) -> tuple[DeviceKeys, list[Path]]:
        """Create whichever key files are missing; never overwrite an existing key.

        Returns the loaded keys and the paths that were newly created, so running it
        twice is harmless (the second run creates nothing).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        created: list[Path] = []
        if not self.nostr_path.exists():
            _write_secret(self.nostr_path, Keys.generate().secret_key().to_hex() + "\n")
            created.append(self.nostr_path)
        if not self.bot_path.exists():
            _write_secret(self.bot_path, Keypair().to_json() + "\n")
            created.append(self.bot_path)
        return self.load(), created

    def load(self) -> DeviceKeys:
        """Load both keys, refusing missing, malformed or group/other-readable files."""
        return DeviceKeys(nostr=self._load_nostr(), bot=self._load_bot())

    def _load_nostr(self) -> Keys:
        text = _read_secret(self.nostr_path).strip()
        try:
            return Keys.parse(text)
        except Exception as exc:  # nostr_sdk raises its own NostrSdkError subclasses
            raise KeyFileError(
                f"{self.nostr_path}: not a Nostr secret key (expected 64 hex characters or nsec1…)",
                code="key_invalid",
            ) from exc

    def _load_bot(self) -> Keypair:
        text = _read_secret(self.bot_path)
        try:
            keypair = parse_solana_keypair(text)
        except ValueError as exc:
            raise KeyFileError(
                f"{self.bot_path}: not a Solana CLI keypair (JSON array of 64 integers): {exc}",
                code="key_invalid",
            ) from exc
        return keypair


def parse_solana_keypair(text: str) -> Keypair:
    """A keypair in the Solana CLI format (a JSON array of 64 integers 0..255); ValueError otherwise."""
    raw = json.loads(text)
    if not (
        isinstance(raw, list)
        and len(raw) == 64
        and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in raw)
    ):
        raise ValueError("expected a JSON array of 64 integers 0..255")
    return Keypair.from_bytes(bytes(raw))


def _read_secret(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: key file missing (create it with `xephy-device keys init`)", code="key_missing"
        ) from None
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise KeyFileError(
            f"{path}: readable by group or others (mode {mode:04o}); run `chmod 600 {path}`",
            code="key_permissions",
        )
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc}", code="key_unreadable") from exc


def _write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically and durably."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)  # the umask may have narrowed it; never widened
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
