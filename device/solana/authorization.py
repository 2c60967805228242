"""The ``recover_info`` authorization: what a user signs, what the device checks before it pays.

Scheme (``shared/reference/xephy-protocol.md`` section 6.6), for version v2 (v1 in brackets):

1. ``msg = extra_data(64) ‖ u64le(namespace_id) ‖ u64le(nonce) ‖ i64le(deadline)``  (88 bytes)
   [v1: ``payload(64) ‖ u64le(nonce) ‖ i64le(deadline)``, 80 bytes]
2. ``text = "DePHY vending machine/" + namespace name + ":\\n" + base58(keccak256(msg))``
   [v1: the fixed prefix ``"DePHY vending machine/Example:\\n"``]
3. ``signature = Ed25519(user secret key, utf-8 bytes of text)`` -- a plain wallet ``signMessage``.

Keccak-256 is the original Keccak (padding 0x01, as Solana's ``keccak::hash``), *not* ``hashlib.sha3_256``.

The program checks the signature against the **on-chain** nonce and namespace name, then ``now <= deadline``,
then ``vault - locked >= amount``.  :func:`verify_authorization` runs the same checks off-chain so the device
never pays a transaction fee for a ``pay`` the program would refuse.  One deliberate difference: verification
here is standard strict Ed25519 (solders), whereas the program also accepts malleated signatures
(non-canonical ``S``, small-order points).  Wallets never produce those; refusing them errs on the side of
not charging.

Device binding.  The program signs ``extra_data`` but gives it no meaning, so the signature covers neither the
amount nor the machine (reference section 9 item 4).  A client that wants to bind its authorization to one
device and one amount puts a :class:`DeviceBinding` in ``extra_data``; :func:`charge_amount` enforces it.
Authorizations without the magic (today's dApps: a UUID and zeros) stay accepted at the configured price.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final

from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from device.errors import DeviceError
from device.solana.program import (
    U64_MAX,
    ED25519RecoverInfo,
    InvalidArgument,
    ProgramVersion,
    i64_le,
    u64_le,
)

# The authorization as it travels: signature, extra_data (v1: "payload"), deadline.  Same type as the
# instruction argument, so what is verified here is byte for byte what ``pay``/``lock`` carry.
RecoverInfoBytes = ED25519RecoverInfo

EXTRA_DATA_LEN: Final = 64
V1_SIGN_PREFIX: Final = "DePHY vending machine/Example:\n"
V2_SIGN_PREFIX_HEAD: Final = "DePHY vending machine/"


class AuthorizationError(DeviceError):
    """A user authorization the device refuses; ``code`` says why (see module functions)."""

    code = "authorization_invalid"


def keccak256(data: bytes) -> bytes:
    """Keccak-256 with the original padding (what Solana's ``keccak::hash`` computes)."""
    from Crypto.Hash import keccak  # here: 20 ms of imports that only signing and verifying need

    digest: bytes = keccak.new(digest_bits=256, data=data).digest()
    return digest


def signed_message(
    version: ProgramVersion, *, extra_data: bytes, nonce: int, deadline: int, namespace_id: int = 0
) -> bytes:
    """The bytes whose Keccak-256 is signed: 88 bytes (v2) or 80 bytes (v1, no namespace)."""
    if len(extra_data) != EXTRA_DATA_LEN:
        raise InvalidArgument(f"extra_data must be {EXTRA_DATA_LEN} bytes, got {len(extra_data)}")
    tail = u64_le(nonce, "nonce") + i64_le(deadline, "deadline")
    if version is ProgramVersion.V1:
        if namespace_id != 0:
            raise InvalidArgument(f"program v1 has no namespaces; namespace_id must be 0, got {namespace_id}")
        return bytes(extra_data) + tail
    return bytes(extra_data) + u64_le(namespace_id, "namespace_id") + tail


def signed_text(version: ProgramVersion, msg: bytes, *, namespace_name: str | None) -> bytes:
    """The UTF-8 text the user's wallet signs: prefix ‖ base58(keccak256(msg)).

    v2 needs the namespace name exactly as stored on chain; v1 has a fixed prefix and takes no name.
    """
    if version is ProgramVersion.V1:
        if namespace_name is not None:
            raise InvalidArgument(
                "program v1 signs with the fixed prefix 'Example'; pass namespace_name=None"
            )
        prefix = V1_SIGN_PREFIX
    else:
        if namespace_name is None:
            raise InvalidArgument("program v2 needs the namespace name (as stored on chain) for the prefix")
        prefix = f"{V2_SIGN_PREFIX_HEAD}{namespace_name}:\n"
    return (prefix + str(Hash(keccak256(msg)))).encode("utf-8")


def _text(
    version: ProgramVersion,
    *,
    extra_data: bytes,
    nonce: int,
    deadline: int,
    namespace_id: int,
    namespace_name: str | None,
) -> bytes:
    msg = signed_message(
        version, extra_data=extra_data, nonce=nonce, deadline=deadline, namespace_id=namespace_id
    )
    return signed_text(version, msg, namespace_name=namespace_name)


def sign_authorization(
    keypair: Keypair,
    version: ProgramVersion,
    *,
    nonce: int,
    deadline: int,
    extra_data: bytes,
    namespace_id: int = 0,
    namespace_name: str | None = None,
) -> RecoverInfoBytes:
    """User side: authorize one ``lock``/``pay`` at on-chain ``nonce``, valid while ``now <= deadline``."""
    text = _text(
        version,
        extra_data=extra_data,
        nonce=nonce,
        deadline=deadline,
        namespace_id=namespace_id,
        namespace_name=namespace_name,
    )
    return RecoverInfoBytes(bytes(keypair.sign_message(text)), bytes(extra_data), deadline)


def verify_authorization(
    version: ProgramVersion,
    *,
    user: Pubkey,
    auth: RecoverInfoBytes,
    onchain_nonce: int,
    payload_nonce: int,
    now: int,
    namespace_id: int = 0,
    namespace_name: str | None,
    available_lamports: int,
    amount: int,
) -> None:
    """Device side: raise :class:`AuthorizationError` unless ``pay(amount)`` with ``auth`` would succeed now.

    Checks, in this order (the first failing one is reported):

    1. ``nonce_mismatch`` -- the Request's nonce is not the on-chain ``UserAccount.nonce``: the authorization
       was already used (or targets a nonce not reached yet).  First because it is the precise diagnosis of a
       replayed Request, which would otherwise surface as a puzzling ``signature_invalid``.
    2. ``signature_invalid`` -- the signature does not verify over the text built from the **on-chain** nonce
       (and, v2, the on-chain namespace name), exactly what the program rebuilds; the payload's nonce is
       user-controlled and the program never reads it.  Before the deadline because ``deadline`` is only
       trustworthy once the signature covering it has verified.
    3. ``signature_expired`` -- ``now > deadline`` (the chain's rule: valid while ``now <= deadline``).
    4. ``insufficient_funds`` -- ``available_lamports < amount``.  Last, as in the program, and because it is
       the one failure the user can cure (deposit) without signing again.

    2-4 are the program's own order (``SignatureMismatch``, ``SignatureExpired``, ``InsufficientFunds``), so
    the device reports what the chain would have answered, without paying the fee to hear it.
    """
    if payload_nonce != onchain_nonce:
        raise AuthorizationError(
            f"authorization is for nonce {payload_nonce} but the on-chain nonce is {onchain_nonce} "
            f"({'already used' if payload_nonce < onchain_nonce else 'not reached yet'})",
            code="nonce_mismatch",
        )
    text = _text(
        version,
        extra_data=auth.extra_data,
        nonce=onchain_nonce,
        deadline=auth.deadline,
        namespace_id=namespace_id,
        namespace_name=namespace_name,
    )
    if not Signature.from_bytes(auth.signature).verify(user, text):
        where = (
            "v1 prefix" if version is ProgramVersion.V1 else f"namespace {namespace_id} {namespace_name!r}"
        )
        raise AuthorizationError(
            f"signature does not verify for user {user} at nonce {onchain_nonce} ({where})",
            code="signature_invalid",
        )
    if now > auth.deadline:
        raise AuthorizationError(
            f"authorization expired at {auth.deadline}, now is {now}", code="signature_expired"
        )
    if available_lamports < amount:
        raise AuthorizationError(
            f"vault has {available_lamports} lamports available, {amount} needed", code="insufficient_funds"
        )


# --------------------------------------------------------------------------------------------------------
# Device binding inside extra_data

BINDING_MAGIC: Final = b"XPHY"
BINDING_VERSION: Final = 1
BINDING_NONCE_LEN: Final = 19
MACHINE_PUBKEY_LEN: Final = 32
# magic 4 ‖ version 1 ‖ machine pubkey 32 ‖ amount u64le 8 ‖ random 19 = 64
_MACHINE_AT: Final = len(BINDING_MAGIC) + 1
_AMOUNT_AT: Final = _MACHINE_AT + MACHINE_PUBKEY_LEN
_NONCE_AT: Final = _AMOUNT_AT + 8


@dataclass(frozen=True)
class DeviceBinding:
    """``extra_data`` naming the one machine (Nostr x-only pubkey) and the lamports it may charge."""

    machine_pubkey: bytes
    amount_lamports: int
    nonce_bytes: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.machine_pubkey, bytes) or len(self.machine_pubkey) != MACHINE_PUBKEY_LEN:
            raise AuthorizationError("binding machine_pubkey must be 32 bytes", code="binding_invalid")
        if isinstance(self.amount_lamports, bool) or not isinstance(self.amount_lamports, int):
            raise AuthorizationError("binding amount_lamports must be an integer", code="binding_invalid")
        if not 0 <= self.amount_lamports <= U64_MAX:
            raise AuthorizationError("binding amount_lamports must fit in a u64", code="binding_invalid")
        if not isinstance(self.nonce_bytes, bytes) or len(self.nonce_bytes) != BINDING_NONCE_LEN:
            raise AuthorizationError(
                f"binding nonce_bytes must be {BINDING_NONCE_LEN} bytes", code="binding_invalid"
            )


def encode_binding(machine_pubkey: bytes, amount_lamports: int, *, nonce_bytes: bytes | None = None) -> bytes:
    """64-byte ``extra_data`` binding an authorization to ``machine_pubkey`` and ``amount_lamports``.

    ``nonce_bytes`` (19) default to fresh random bytes: two bindings for one machine and amount differ.
    """
    binding = DeviceBinding(
        machine_pubkey,
        amount_lamports,
        secrets.token_bytes(BINDING_NONCE_LEN) if nonce_bytes is None else nonce_bytes,
    )
    return (
        BINDING_MAGIC
        + bytes([BINDING_VERSION])
        + binding.machine_pubkey
        + binding.amount_lamports.to_bytes(8, "little")
        + binding.nonce_bytes
    )


def decode_binding(extra_data: bytes) -> DeviceBinding | None:
    """The binding in ``extra_data``; ``None`` when it carries none (no magic: an unbound authorization).

    Magic present but an unknown version or a length other than 64 -> ``binding_invalid``.
    """
    if not extra_data.startswith(BINDING_MAGIC):
        return None
    if len(extra_data) != EXTRA_DATA_LEN:
        raise AuthorizationError(
            f"binding is {len(extra_data)} bytes, expected {EXTRA_DATA_LEN}", code="binding_invalid"
        )
    version = extra_data[len(BINDING_MAGIC)]
    if version != BINDING_VERSION:
        raise AuthorizationError(f"unknown binding version {version}", code="binding_invalid")
    return DeviceBinding(
        machine_pubkey=bytes(extra_data[_MACHINE_AT:_AMOUNT_AT]),
        amount_lamports=int.from_bytes(extra_data[_AMOUNT_AT:_NONCE_AT], "little"),
        nonce_bytes=bytes(extra_data[_NONCE_AT:]),
    )


def charge_amount(
    extra_data: bytes, *, machine_pubkey_hex: str, recharge_lamports: int, max_recharge_lamports: int
) -> int:
    """Lamports to charge for an authorization with ``extra_data`` on the machine ``machine_pubkey_hex``.

    Unbound -> ``recharge_lamports`` (the configured price).  Bound -> the bound amount, provided the binding
    names this machine (else ``binding_wrong_machine``) and ``0 < amount <= max_recharge_lamports``
    (else ``binding_amount_invalid``).
    """
    binding = decode_binding(extra_data)
    if binding is None:
        return recharge_lamports
    try:
        machine = bytes.fromhex(machine_pubkey_hex)
    except ValueError as exc:
        raise InvalidArgument(f"machine pubkey {machine_pubkey_hex!r} is not hex") from exc
    if binding.machine_pubkey != machine:
        raise AuthorizationError(
            f"authorization is bound to machine {binding.machine_pubkey.hex()}, not {machine.hex()}",
            code="binding_wrong_machine",
        )
    if not 0 < binding.amount_lamports <= max_recharge_lamports:
        raise AuthorizationError(
            f"bound amount {binding.amount_lamports} lamports is outside 1..{max_recharge_lamports}",
            code="binding_amount_invalid",
        )
    return binding.amount_lamports
