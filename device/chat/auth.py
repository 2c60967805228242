"""Chat bearer tokens: proof that the caller owns the Solana key whose tokens are spent.

A token is self-contained (the device stores nothing) and is an ASCII string usable as an OpenAI
client's ``api_key``::

    xct1.<user>.<machine>.<expires>.<signature>

* ``user`` -- the user's Solana public key, base58 (the ledger account charged);
* ``machine`` -- the device's Nostr public key, 64 lowercase hex (the token is worthless elsewhere);
* ``expires`` -- unix seconds, decimal;
* ``signature`` -- base64url (no padding) of the 64-byte Ed25519 signature, by the user's keypair,
  over the UTF-8 text ``xephy-chat-token:v1:<machine>:<user>:<expires>``.

The signed text starts with a fixed ASCII domain tag, so it can never be mistaken for a Solana
transaction message or a ``recover_info`` authorization signed by the same key.

The device accepts a token when it parses, the signature verifies for ``user``, ``machine`` equals
its own pubkey (constant-time comparison), ``now < expires`` and ``expires - now`` is at most
``chat.token_max_ttl_seconds`` (plus :data:`CLOCK_SKEW_SECONDS`).  Anything else is ``unauthorized``
with a message saying which check failed.  Documented in ``docs/chat.md``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from device.errors import DeviceError

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "TOKEN_LIFETIME_SECONDS",
    "TOKEN_PREFIX",
    "AuthError",
    "TokenClaims",
    "TokenVerifier",
    "issue_token",
    "signed_text",
]

TOKEN_PREFIX: Final = "xct1"
DOMAIN: Final = "xephy-chat-token:v1"
#: How long a token the user's side signs (``user token``, ``chat``) lives unless ``--ttl`` says otherwise.
TOKEN_LIFETIME_SECONDS: Final = 3600
#: Tolerated difference between the signer's clock and the device's.
CLOCK_SKEW_SECONDS: Final = 60
_MACHINE_RE: Final = re.compile(r"[0-9a-f]{64}")
_EXPIRES_RE: Final = re.compile(r"[1-9][0-9]{0,11}")
_MAX_TOKEN_CHARS: Final = 512


class AuthError(DeviceError):
    """The bearer token is missing, malformed, forged, expired or for another machine."""

    code = "unauthorized"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token proves."""

    user: str
    machine: str
    expires: int


def signed_text(user: str, machine: str, expires: int) -> bytes:
    """The exact bytes the user's key signs."""
    return f"{DOMAIN}:{machine}:{user}:{expires}".encode()


def issue_token(keypair: Keypair, machine: str, *, ttl_seconds: int, now: float | None = None) -> str:
    """A token for ``keypair``'s account at ``machine`` (64 hex), valid ``ttl_seconds`` from ``now``."""
    machine = machine.lower()
    if not _MACHINE_RE.fullmatch(machine):
        raise AuthError(f"machine must be a Nostr pubkey as 64 hex characters, got {machine!r}")
    if ttl_seconds < 1:
        raise AuthError(f"ttl must be at least 1 second, got {ttl_seconds}")
    expires = int(time.time() if now is None else now) + ttl_seconds
    user = str(keypair.pubkey())
    signature = bytes(keypair.sign_message(signed_text(user, machine, expires)))
    sig = base64.urlsafe_b64encode(signature).rstrip(b"=").decode("ascii")
    return f"{TOKEN_PREFIX}.{user}.{machine}.{expires}.{sig}"


class TokenVerifier:
    """Checks tokens presented to one machine."""

    def __init__(self, machine: str, *, max_ttl_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self._machine = machine.lower().encode("ascii")
        self._max_ttl = max_ttl_seconds
        self._clock = clock

    def verify_header(self, header: str | None) -> TokenClaims:
        """Verify an ``Authorization: Bearer <token>`` header value."""
        if not header:
            raise AuthError("missing Authorization header; create a token with `xephy-device user token`")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must be 'Bearer <token>'")
        return self.verify(token.strip())

    def verify(self, token: str) -> TokenClaims:
        """Parse and check ``token``; raise :class:`AuthError` naming the failed check."""
        if len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            raise AuthError("malformed token")
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != TOKEN_PREFIX:
            raise AuthError(f"malformed token (expected {TOKEN_PREFIX}.<user>.<machine>.<expires>.<sig>)")
        _, user, machine, expires_text, sig_text = parts
        try:
            pubkey = Pubkey.from_string(user)
        except ValueError:
            raise AuthError("malformed token: user is not a Solana public key") from None
        if not _MACHINE_RE.fullmatch(machine) or not _EXPIRES_RE.fullmatch(expires_text):
            raise AuthError("malformed token: bad machine or expiry field")
        try:
            raw_sig = base64.urlsafe_b64decode(sig_text + "=" * (-len(sig_text) % 4))
        except (binascii.Error, ValueError):
            raise AuthError("malformed token: signature is not base64url") from None
        if len(raw_sig) != 64:
            raise AuthError("malformed token: signature must be 64 bytes")
        expires = int(expires_text)
        if not Signature.from_bytes(raw_sig).verify(pubkey, signed_text(user, machine, expires)):
            raise AuthError("token signature does not verify")
        if not hmac.compare_digest(machine.encode("ascii"), self._machine):
            raise AuthError("token was issued for another machine")
        now = self._clock()
        if now >= expires:
            raise AuthError("token expired; create a new one with `xephy-device user token`")
        if expires - now > self._max_ttl + CLOCK_SKEW_SECONDS:
            raise AuthError(
                f"token lifetime exceeds chat.token_max_ttl_seconds ({self._max_ttl} s); use a shorter --ttl"
            )
        return TokenClaims(user=user, machine=machine, expires=expires)
