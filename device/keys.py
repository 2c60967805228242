"""The device's two secret keys, kept as files under ``device.state_dir``.

* ``nostr.key`` — the device's Nostr secret key as 64 lowercase hex characters
  (an ``nsec1…`` is accepted when read).  It signs every ``Status`` and
  ``Transaction`` event the device publishes.
* ``solana-bot.json`` — the Solana *bot* keypair in the Solana CLI format (a JSON
  array of 64 integers).  It must equal the namespace's (v2) or the global
  account's (v1) ``bot`` and pays the transaction fees of ``pay``.

Both files are written by :func:`write_secret_file` (mode 0600, atomic, file and folder
fsynced, never over an existing file), so a power cut never leaves half a key.  Loading
refuses a key file that group or others can read: a leaked bot key lets anyone charge
every user's vault.

The *user's* keypair (``xephy-device user …``, ``chat``) is a Solana CLI file too, by default
:data:`DEFAULT_KEYPAIR`; :func:`load_keypair` and :func:`create_keypair_file` handle it.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from device.errors import DeviceError

if TYPE_CHECKING:
    from nostr_sdk import Keys

NOSTR_KEY_FILE = "nostr.key"
BOT_KEYPAIR_FILE = "solana-bot.json"
KEY_FILE_MODE = 0o600
#: The user's keypair when ``--keypair`` is not given (the Solana CLI's default).
DEFAULT_KEYPAIR = Path("~/.config/solana/id.json")


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
            from nostr_sdk import Keys

            write_secret_file(self.nostr_path, (Keys.generate().secret_key().to_hex() + "\n").encode())
            created.append(self.nostr_path)
        if not self.bot_path.exists():
            write_secret_file(self.bot_path, (Keypair().to_json() + "\n").encode())
            created.append(self.bot_path)
        return self.load(), created

    def load(self) -> DeviceKeys:
        """Load both keys, refusing missing, malformed or group/other-readable files."""
        return DeviceKeys(nostr=self._load_nostr(), bot=self._load_bot())

    def _load_nostr(self) -> Keys:
        from nostr_sdk import Keys  # here: a user's Solana keypair does not pay for the Nostr library

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


def load_keypair(path: Path | None) -> Keypair:
    """The user's Solana CLI keypair file at ``path`` (``None``: :data:`DEFAULT_KEYPAIR`); ``~`` expanded."""
    path = (path if path is not None else DEFAULT_KEYPAIR).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: no keypair file (create one with `xephy-device user keygen --keypair {path}`)",
            code="keypair_missing",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read keypair file: {exc}", code="keypair_invalid") from exc
    try:
        return parse_solana_keypair(text)
    except ValueError as exc:
        raise KeyFileError(
            f"{path}: not a Solana CLI keypair (JSON array of 64 integers): {exc}", code="keypair_invalid"
        ) from exc


def create_keypair_file(path: Path | None, keypair: Keypair) -> Path:
    """Write ``keypair`` to a *new* Solana CLI file (``None``: :data:`DEFAULT_KEYPAIR`); return its path.

    An existing file is never replaced (``keypair_exists``).
    """
    path = (path if path is not None else DEFAULT_KEYPAIR).expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        write_secret_file(path, (keypair.to_json() + "\n").encode())
    except FileExistsError:
        raise KeyFileError(
            f"{path}: a keypair file already exists (it is never overwritten; choose another --keypair)",
            code="keypair_exists",
        ) from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create keypair file: {exc}", code="keypair_invalid") from exc
    return path


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data`` with mode 0600, atomically and durably; never replace a file.

    The bytes go to a temporary file beside ``path`` (written, fsynced), which is then hard-linked
    to ``path`` -- a link fails with :class:`FileExistsError` instead of replacing -- and the folder
    is fsynced, so after a power cut ``path`` is either absent or whole.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0600, unique
    tmp = Path(name)
    try:
        try:
            os.fchmod(fd, KEY_FILE_MODE)
            with os.fdopen(os.dup(fd), "wb") as stream:
                stream.write(data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)
    finally:
        tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
