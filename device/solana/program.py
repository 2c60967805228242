"""The ``balance-payment`` Anchor program as bytes: ids, PDAs, account layouts, instructions, errors.

Two incompatible deployments exist (``shared/reference/xephy-protocol.md`` section 6):

- **v1** -- the dsproxy program ``GguV…nPS9``: one global bot and treasury, no namespaces, signed prefix
  ``"DePHY vending machine/Example:\\n"``.
- **v2** -- the namespace program ``8Pna…73dL``: one ``NamespaceAccount`` (bot, treasury, name) per operator;
  ``lock``/``pay`` take a leading ``namespace_id``.

Everything here is pure (solders only, no network I/O).  Codecs check representability (sizes, integer ranges,
discriminators), never the program's business rules (a 2-byte namespace name encodes fine; the program rejects
it with ``NameTooShort``), so a chain stand-in can run the rules itself and return the program's errors.

Decoders are stricter than Anchor in one respect: trailing bytes after the last field are refused (Anchor's
instruction deserializer ignores them); the program's own accounts are allocated at exactly their size, except
``NamespaceAccount`` whose unused tail is zero padding.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Self, TypeAlias, cast

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID

from device.errors import DeviceError

U64_MAX = 2**64 - 1
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


class ProgramVersion(StrEnum):
    """Which ``balance-payment`` deployment the device talks to."""

    V1 = "v1"
    """OLD dsproxy program: global bot/treasury, no namespaces."""
    V2 = "v2"
    """NEW program: per-operator namespaces."""


DEFAULT_PROGRAM_IDS: Mapping[ProgramVersion, Pubkey] = MappingProxyType(
    {
        ProgramVersion.V1: Pubkey.from_string("GguVKxU88NUe3GLtns7Uaa6a8Pjb9USKq3WD1rjZnPS9"),
        ProgramVersion.V2: Pubkey.from_string("8Pna6CZRquk83XT6ecisT9TYVfN3hY299GH2yEJk73dL"),
    }
)


@dataclass(frozen=True)
class ProgramRef:
    """One deployment: its layout version and the address it is deployed at."""

    version: ProgramVersion
    program_id: Pubkey

    @classmethod
    def default(cls, version: ProgramVersion) -> ProgramRef:
        """The deployment at the program id the reference implementation compiles in."""
        return cls(version, DEFAULT_PROGRAM_IDS[version])


# ----------------------------------------------------------------------------------------------------------
# Errors raised by this module


class ProgramError(DeviceError):
    """Base of the errors this module raises."""

    code = "program_error"


class InvalidArgument(ProgramError):
    """A value the program's encoding cannot carry, or that does not exist in the chosen version."""

    code = "argument_invalid"


class AccountLayoutError(ProgramError):
    """Account data that is not the expected account (discriminator, length, field contents).

    ``anchor_code`` is the error Anchor itself raises for the same defect (3001 no discriminator, 3002 wrong
    discriminator, 3003 body does not deserialize), for a chain stand-in that must answer like the program.
    """

    code = "account_layout_invalid"

    def __init__(self, message: str, *, anchor_code: int) -> None:
        super().__init__(message)
        self.anchor_code = anchor_code


class InstructionDataError(ProgramError):
    """Instruction data the program would refuse before running (Anchor codes 100, 101, 102).

    ``code`` is the stable code of that Anchor error (e.g. ``instruction_fallback_not_found`` for an unknown
    discriminator), so it reads the same as :func:`describe_custom_error` of the chain's answer.
    """

    def __init__(self, message: str, *, anchor_code: int) -> None:
        super().__init__(message, code=FRAMEWORK_ERRORS[anchor_code].code)
        self.anchor_code = anchor_code


# ----------------------------------------------------------------------------------------------------------
# Discriminators and PDAs


def instruction_discriminator(name: str) -> bytes:
    """Anchor instruction discriminator: ``sha256("global:<name>")[:8]``."""
    return hashlib.sha256(f"global:{name}".encode()).digest()[:8]


def account_discriminator(name: str) -> bytes:
    """Anchor account discriminator: ``sha256("account:<Name>")[:8]``."""
    return hashlib.sha256(f"account:{name}".encode()).digest()[:8]


def u64_le(value: int, what: str) -> bytes:
    """``value`` as a little-endian u64, or :class:`InvalidArgument` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise InvalidArgument(f"{what} must be an integer in [0, 2^64-1], got {value!r}")
    return value.to_bytes(8, "little")


def i64_le(value: int, what: str) -> bytes:
    """``value`` as a little-endian i64, or :class:`InvalidArgument` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or not I64_MIN <= value <= I64_MAX:
        raise InvalidArgument(f"{what} must be an integer in [-2^63, 2^63-1], got {value!r}")
    return value.to_bytes(8, "little", signed=True)


def _pda(program_id: Pubkey, *seeds: bytes) -> Pubkey:
    return Pubkey.find_program_address(list(seeds), program_id)[0]


def global_pda(program_id: Pubkey) -> Pubkey:
    """``["GLOBAL"]``."""
    return _pda(program_id, b"GLOBAL")


def namespace_pda(program_id: Pubkey, namespace_id: int) -> Pubkey:
    """``["NAMESPACE", u64le(namespace_id)]`` (v2 only)."""
    return _pda(program_id, b"NAMESPACE", u64_le(namespace_id, "namespace_id"))


def user_pda(program_id: Pubkey, user: Pubkey) -> Pubkey:
    """``["USER", user]``: the user's ``UserAccount``."""
    return _pda(program_id, b"USER", bytes(user))


def vault_pda(program_id: Pubkey, user: Pubkey) -> Pubkey:
    """``["VAULT", user]``: the system-owned, data-empty account holding the user's lamports."""
    return _pda(program_id, b"VAULT", bytes(user))


def lock_pda(program_id: Pubkey, user: Pubkey, nonce: int) -> Pubkey:
    """``["LOCK", user, u64le(nonce)]``; ``nonce`` is the user's nonce *before* ``lock`` increments it."""
    return _pda(program_id, b"LOCK", bytes(user), u64_le(nonce, "nonce"))


# ----------------------------------------------------------------------------------------------------------
# Borsh: the handful of field kinds the program uses


@dataclass(frozen=True)
class ED25519RecoverInfo:
    """The user's authorization: ``signature[64] ‖ extra_data[64] ‖ deadline i64`` (136 bytes Borsh).

    v1 calls the middle field ``payload``; the bytes are the same.
    """

    signature: bytes
    extra_data: bytes
    deadline: int

    SIZE: ClassVar[int] = 136

    def __post_init__(self) -> None:
        for name in ("signature", "extra_data"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 64:
                raise InvalidArgument(
                    f"recover_info.{name} must be 64 bytes, got {_describe_len(value)}",
                    code="recover_info_invalid",
                )
        if isinstance(self.deadline, bool) or not isinstance(self.deadline, int):
            raise InvalidArgument(
                f"recover_info.deadline must be an integer, got {self.deadline!r}",
                code="recover_info_invalid",
            )
        if not I64_MIN <= self.deadline <= I64_MAX:
            raise InvalidArgument(
                f"recover_info.deadline {self.deadline} does not fit in an i64", code="recover_info_invalid"
            )

    def encode(self) -> bytes:
        """The 136-byte Borsh encoding."""
        return self.signature + self.extra_data + i64_le(self.deadline, "recover_info.deadline")


def _describe_len(value: object) -> str:
    return f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__


_Kind = Literal["u64", "i64", "pubkey", "string", "recover_info"]
_Layout: TypeAlias = tuple[tuple[str, _Kind], ...]
_U32_MAX = 2**32 - 1


def _encode_field(kind: _Kind, value: Any, what: str) -> bytes:
    if kind == "u64":
        return u64_le(value, what)
    if kind == "i64":
        return i64_le(value, what)
    if kind == "pubkey":
        if not isinstance(value, Pubkey):
            raise InvalidArgument(f"{what} must be a Pubkey, got {type(value).__name__}")
        return bytes(value)
    if kind == "string":
        if not isinstance(value, str):
            raise InvalidArgument(f"{what} must be a str, got {type(value).__name__}")
        raw = value.encode("utf-8")
        if len(raw) > _U32_MAX:
            raise InvalidArgument(f"{what} is longer than 2^32-1 bytes")
        return len(raw).to_bytes(4, "little") + raw
    if not isinstance(value, ED25519RecoverInfo):
        raise InvalidArgument(f"{what} must be an ED25519RecoverInfo, got {type(value).__name__}")
    return value.encode()


def _encode_fields(obj: object, layout: _Layout) -> bytes:
    owner = type(obj).__name__
    return b"".join(_encode_field(kind, getattr(obj, name), f"{owner}.{name}") for name, kind in layout)


class _Reader:
    """Sequential Borsh reader; every shortfall becomes the error ``fail`` builds."""

    def __init__(self, data: bytes, fail: Callable[[str], ProgramError]) -> None:
        self._data = data
        self._pos = 0
        self._fail = fail

    def _take(self, n: int, what: str) -> bytes:
        left = len(self._data) - self._pos
        if n > left:
            raise self._fail(f"{what} needs {n} bytes at offset {self._pos}, only {left} left")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def read(self, kind: _Kind, what: str) -> Any:
        if kind == "u64":
            return int.from_bytes(self._take(8, what), "little")
        if kind == "i64":
            return int.from_bytes(self._take(8, what), "little", signed=True)
        if kind == "pubkey":
            return Pubkey.from_bytes(self._take(32, what))
        if kind == "string":
            size = int.from_bytes(self._take(4, f"{what} length"), "little")
            try:
                return self._take(size, what).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise self._fail(f"{what} is not UTF-8 ({exc.reason})") from exc
        signature = self._take(64, f"{what}.signature")
        extra_data = self._take(64, f"{what}.extra_data")
        deadline = int.from_bytes(self._take(8, f"{what}.deadline"), "little", signed=True)
        return ED25519RecoverInfo(signature, extra_data, deadline)

    def read_layout(self, layout: _Layout) -> dict[str, Any]:
        return {name: self.read(kind, name) for name, kind in layout}

    def finish(self, *, zero_padding_allowed: bool = False) -> None:
        rest = self._data[self._pos :]
        if rest and not (zero_padding_allowed and not any(rest)):
            kind = "non-zero padding" if zero_padding_allowed else "trailing bytes"
            raise self._fail(f"{len(rest)} {kind} after the last field")


# ----------------------------------------------------------------------------------------------------------
# Accounts


class _Account:
    """Anchor account: 8-byte discriminator + Borsh fields (``LAYOUT``), ``SIZE`` bytes allocated."""

    ACCOUNT_NAME: ClassVar[str]
    LAYOUT: ClassVar[_Layout]
    SIZE: ClassVar[int]
    PADDED: ClassVar[bool] = False  # variable-length body, zero-padded up to SIZE

    @classmethod
    def discriminator(cls) -> bytes:
        return account_discriminator(cls.ACCOUNT_NAME)

    def encode(self) -> bytes:
        """The account data as the program stores it (exactly ``SIZE`` bytes)."""
        data = self.discriminator() + _encode_fields(self, self.LAYOUT)
        if len(data) > self.SIZE:
            raise InvalidArgument(
                f"{type(self).__name__} needs {len(data)} bytes, the account has {self.SIZE}"
            )
        return data + bytes(self.SIZE - len(data))

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Parse account data; :class:`AccountLayoutError` unless it is exactly this account."""
        name = cls.__name__
        if len(data) < 8:
            raise AccountLayoutError(f"{name}: {len(data)} bytes, no discriminator", anchor_code=3001)
        expected = cls.discriminator()
        if data[:8] != expected:
            raise AccountLayoutError(
                f"{name}: discriminator {data[:8].hex()} is not {expected.hex()} ({cls.ACCOUNT_NAME})",
                anchor_code=3002,
            )

        def fail(message: str) -> ProgramError:
            return AccountLayoutError(f"{name} ({len(data)} bytes): {message}", anchor_code=3003)

        reader = _Reader(data[8:], fail)
        values = reader.read_layout(cls.LAYOUT)
        reader.finish(zero_padding_allowed=cls.PADDED)
        dataclass_type: type[Any] = cls  # the concrete subclasses are dataclasses over LAYOUT's names
        return cast(Self, dataclass_type(**values))


@dataclass(frozen=True)
class GlobalAccountV1(_Account):
    """v1 ``GlobalAccount`` at ``global_pda``: the program-wide authority, bot and treasury."""

    authority: Pubkey
    bot: Pubkey
    treasury: Pubkey

    ACCOUNT_NAME: ClassVar[str] = "GlobalAccount"
    LAYOUT: ClassVar[_Layout] = (("authority", "pubkey"), ("bot", "pubkey"), ("treasury", "pubkey"))
    SIZE: ClassVar[int] = 104


@dataclass(frozen=True)
class GlobalAccountV2(_Account):
    """v2 ``GlobalAccount``: the id the next ``create_namespace`` will use."""

    namespace_nonce: int

    ACCOUNT_NAME: ClassVar[str] = "GlobalAccount"
    LAYOUT: ClassVar[_Layout] = (("namespace_nonce", "u64"),)
    SIZE: ClassVar[int] = 16


NAMESPACE_NAME_MAX_BYTES = 50


@dataclass(frozen=True)
class NamespaceAccount(_Account):
    """v2 ``NamespaceAccount``: an operator's bot, treasury and the name inside the signed prefix."""

    id: int
    name: str
    authority: Pubkey
    bot: Pubkey
    treasury: Pubkey
    created_at: int
    updated_at: int

    ACCOUNT_NAME: ClassVar[str] = "NamespaceAccount"
    LAYOUT: ClassVar[_Layout] = (
        ("id", "u64"),
        ("name", "string"),
        ("authority", "pubkey"),
        ("bot", "pubkey"),
        ("treasury", "pubkey"),
        ("created_at", "i64"),
        ("updated_at", "i64"),
    )
    # 8 + id 8 + name (4 + 50) + 3 × 32 + 2 × 8; a shorter name leaves zero padding at the end.
    SIZE: ClassVar[int] = 182
    PADDED: ClassVar[bool] = True


@dataclass(frozen=True)
class UserAccount(_Account):
    """``UserAccount`` at ``user_pda``: next authorization nonce, lamports locked, the vault address."""

    nonce: int
    locked_amount: int
    vault: Pubkey

    ACCOUNT_NAME: ClassVar[str] = "UserAccount"
    LAYOUT: ClassVar[_Layout] = (("nonce", "u64"), ("locked_amount", "u64"), ("vault", "pubkey"))
    SIZE: ClassVar[int] = 56


@dataclass(frozen=True)
class LockAccountV1(_Account):
    """v1 ``LockAccount`` at ``lock_pda``."""

    amount: int

    ACCOUNT_NAME: ClassVar[str] = "LockAccount"
    LAYOUT: ClassVar[_Layout] = (("amount", "u64"),)
    SIZE: ClassVar[int] = 16


@dataclass(frozen=True)
class LockAccountV2(_Account):
    """v2 ``LockAccount``: ``settle`` finds the namespace through ``namespace_id``."""

    namespace_id: int
    amount: int

    ACCOUNT_NAME: ClassVar[str] = "LockAccount"
    LAYOUT: ClassVar[_Layout] = (("namespace_id", "u64"), ("amount", "u64"))
    SIZE: ClassVar[int] = 24


# ----------------------------------------------------------------------------------------------------------
# Instruction arguments (one type per instruction, shared by both versions)


@dataclass(frozen=True)
class InitializeArgs:
    NAME: ClassVar[str] = "initialize"


@dataclass(frozen=True)
class CreateNamespaceArgs:
    """v2 only."""

    name: str

    NAME: ClassVar[str] = "create_namespace"


@dataclass(frozen=True)
class RegisterArgs:
    NAME: ClassVar[str] = "register"


@dataclass(frozen=True)
class DepositArgs:
    amount: int

    NAME: ClassVar[str] = "deposit"


@dataclass(frozen=True)
class WithdrawArgs:
    amount: int

    NAME: ClassVar[str] = "withdraw"


@dataclass(frozen=True)
class LockArgs:
    """``namespace_id`` is not on the wire in v1 (it must be 0 there; decoding v1 gives 0)."""

    recover_info: ED25519RecoverInfo
    amount: int
    namespace_id: int = 0

    NAME: ClassVar[str] = "lock"


@dataclass(frozen=True)
class SettleArgs:
    """``nonce`` selects the lock (``lock_pda(user, nonce)``); ``amount`` goes to the treasury."""

    nonce: int
    amount: int

    NAME: ClassVar[str] = "settle"


@dataclass(frozen=True)
class PayArgs:
    """``namespace_id`` is not on the wire in v1 (it must be 0 there; decoding v1 gives 0)."""

    recover_info: ED25519RecoverInfo
    amount: int
    namespace_id: int = 0

    NAME: ClassVar[str] = "pay"


InstructionArgs: TypeAlias = (
    InitializeArgs
    | CreateNamespaceArgs
    | RegisterArgs
    | DepositArgs
    | WithdrawArgs
    | LockArgs
    | SettleArgs
    | PayArgs
)

_AMOUNT: _Layout = (("amount", "u64"),)
_SIGNED: _Layout = (("recover_info", "recover_info"), ("amount", "u64"))
_NAMESPACED: _Layout = (("namespace_id", "u64"), *_SIGNED)
_COMMON: Mapping[type[Any], _Layout] = {
    InitializeArgs: (),
    RegisterArgs: (),
    DepositArgs: _AMOUNT,
    WithdrawArgs: _AMOUNT,
    SettleArgs: (("nonce", "u64"), ("amount", "u64")),
}
_INSTRUCTION_LAYOUTS: Mapping[ProgramVersion, Mapping[type[Any], _Layout]] = MappingProxyType(
    {
        ProgramVersion.V1: {**_COMMON, LockArgs: _SIGNED, PayArgs: _SIGNED},
        ProgramVersion.V2: {
            **_COMMON,
            CreateNamespaceArgs: (("name", "string"),),
            LockArgs: _NAMESPACED,
            PayArgs: _NAMESPACED,
        },
    }
)
_BY_DISCRIMINATOR: Mapping[ProgramVersion, Mapping[bytes, tuple[type[Any], _Layout]]] = MappingProxyType(
    {
        version: {instruction_discriminator(cls.NAME): (cls, layout) for cls, layout in layouts.items()}
        for version, layouts in _INSTRUCTION_LAYOUTS.items()
    }
)


def encode_instruction_data(version: ProgramVersion, args: InstructionArgs) -> bytes:
    """Discriminator ‖ Borsh args, as ``version`` of the program expects them."""
    layout = _INSTRUCTION_LAYOUTS[version].get(type(args))
    if layout is None:
        raise InvalidArgument(f"program {version} has no {args.NAME} instruction")
    on_wire = {name for name, _ in layout}
    for field in fields(args):
        if field.name not in on_wire and getattr(args, field.name) != field.default:
            raise InvalidArgument(
                f"program {version} has no {field.name} in {args.NAME}; it must be {field.default}"
            )
    return instruction_discriminator(args.NAME) + _encode_fields(args, layout)


def decode_instruction(version: ProgramVersion, data: bytes) -> InstructionArgs:
    """Parse ``version`` instruction data; :class:`InstructionDataError` where the program would refuse it."""
    if len(data) < 8:
        raise InstructionDataError(
            f"instruction data of {len(data)} bytes has no discriminator", anchor_code=100
        )
    entry = _BY_DISCRIMINATOR[version].get(bytes(data[:8]))
    if entry is None:
        raise InstructionDataError(
            f"no {version} instruction has discriminator {data[:8].hex()}", anchor_code=101
        )
    cls, layout = entry

    def fail(message: str) -> ProgramError:
        return InstructionDataError(f"{cls.NAME} ({len(data)} bytes): {message}", anchor_code=102)

    reader = _Reader(bytes(data[8:]), fail)
    values = reader.read_layout(layout)
    reader.finish()
    return cast(InstructionArgs, cls(**values))


# ----------------------------------------------------------------------------------------------------------
# Instruction builders.  Account order, signer and writable flags follow section 6.4 of the reference.


def _ro(pubkey: Pubkey) -> AccountMeta:
    return AccountMeta(pubkey, is_signer=False, is_writable=False)


def _w(pubkey: Pubkey) -> AccountMeta:
    return AccountMeta(pubkey, is_signer=False, is_writable=True)


def _s(pubkey: Pubkey) -> AccountMeta:
    return AccountMeta(pubkey, is_signer=True, is_writable=False)


def _ws(pubkey: Pubkey) -> AccountMeta:
    return AccountMeta(pubkey, is_signer=True, is_writable=True)


def _instruction(program: ProgramRef, args: InstructionArgs, accounts: list[AccountMeta]) -> Instruction:
    return Instruction(program.program_id, encode_instruction_data(program.version, args), accounts)


def _operator_account(program: ProgramRef, namespace_id: int) -> AccountMeta:
    """Account 0 of lock/settle/pay: the namespace (v2) or global account (v1); read-only, ``has_one bot``."""
    if program.version is ProgramVersion.V1:
        if namespace_id != 0:
            raise InvalidArgument(f"program v1 has no namespaces; namespace_id must be 0, got {namespace_id}")
        return _ro(global_pda(program.program_id))
    return _ro(namespace_pda(program.program_id, namespace_id))


def initialize(
    program: ProgramRef,
    *,
    payer: Pubkey,
    authority: Pubkey | None = None,
    treasury: Pubkey | None = None,
    bot: Pubkey | None = None,
) -> Instruction:
    """Create the global account.  v1 stores ``authority``/``treasury``/``bot`` in it; v2 takes none."""
    global_account = global_pda(program.program_id)
    if program.version is ProgramVersion.V2:
        if authority is not None or treasury is not None or bot is not None:
            raise InvalidArgument("v2 initialize takes no authority/treasury/bot (create_namespace does)")
        accounts = [_w(global_account), _ws(payer), _ro(SYSTEM_PROGRAM_ID)]
    else:
        if authority is None or treasury is None or bot is None:
            raise InvalidArgument("v1 initialize needs authority, treasury and bot")
        accounts = [
            _w(global_account),
            _ro(authority),
            _ro(treasury),
            _ro(bot),
            _ws(payer),
            _ro(SYSTEM_PROGRAM_ID),
        ]
    return _instruction(program, InitializeArgs(), accounts)


def create_namespace(
    program: ProgramRef,
    *,
    namespace_id: int,
    name: str,
    authority: Pubkey,
    treasury: Pubkey,
    bot: Pubkey,
    payer: Pubkey,
) -> Instruction:
    """v2: create namespace ``namespace_id`` (must be the current ``GlobalAccountV2.namespace_nonce``)."""
    if program.version is not ProgramVersion.V2:
        raise InvalidArgument(f"program {program.version} has no create_namespace instruction")
    accounts = [
        _w(global_pda(program.program_id)),
        _w(namespace_pda(program.program_id, namespace_id)),
        _ro(authority),
        _ro(treasury),
        _ro(bot),
        _ws(payer),
        _ro(SYSTEM_PROGRAM_ID),
    ]
    return _instruction(program, CreateNamespaceArgs(name), accounts)


def register(program: ProgramRef, *, user: Pubkey, payer: Pubkey) -> Instruction:
    """Create the user's ``UserAccount`` (nonce 0, nothing locked); ``user`` signs."""
    pid = program.program_id
    accounts = [
        _w(user_pda(pid, user)),
        _s(user),
        _ro(vault_pda(pid, user)),
        _ws(payer),
        _ro(SYSTEM_PROGRAM_ID),
    ]
    return _instruction(program, RegisterArgs(), accounts)


def _vault_transfer_accounts(program: ProgramRef, user: Pubkey, payer: Pubkey) -> list[AccountMeta]:
    pid = program.program_id
    return [_w(user_pda(pid, user)), _ws(user), _w(vault_pda(pid, user)), _ws(payer), _ro(SYSTEM_PROGRAM_ID)]


def deposit(program: ProgramRef, *, user: Pubkey, payer: Pubkey, amount: int) -> Instruction:
    """Move ``amount`` lamports from ``user`` into its vault."""
    return _instruction(program, DepositArgs(amount), _vault_transfer_accounts(program, user, payer))


def withdraw(program: ProgramRef, *, user: Pubkey, payer: Pubkey, amount: int) -> Instruction:
    """Move ``amount`` unlocked lamports from the vault back to ``user``."""
    return _instruction(program, WithdrawArgs(amount), _vault_transfer_accounts(program, user, payer))


def lock(
    program: ProgramRef,
    *,
    user: Pubkey,
    nonce: int,
    bot: Pubkey,
    payer: Pubkey,
    recover_info: ED25519RecoverInfo,
    amount: int,
    namespace_id: int = 0,
) -> Instruction:
    """Lock ``amount`` of the user's vault under the authorization; ``nonce`` = the on-chain nonce now."""
    pid = program.program_id
    accounts = [
        _operator_account(program, namespace_id),
        _w(user_pda(pid, user)),
        _w(user),
        _w(lock_pda(pid, user, nonce)),
        _ro(vault_pda(pid, user)),
        _s(bot),
        _ws(payer),
        _ro(SYSTEM_PROGRAM_ID),
    ]
    return _instruction(program, LockArgs(recover_info, amount, namespace_id), accounts)


def settle(
    program: ProgramRef,
    *,
    user: Pubkey,
    nonce: int,
    treasury: Pubkey,
    bot: Pubkey,
    payer: Pubkey,
    amount: int,
    namespace_id: int = 0,
) -> Instruction:
    """Close lock ``nonce``, sending ``amount`` of it to ``treasury``; v2: ``namespace_id`` from the lock."""
    pid = program.program_id
    accounts = [
        _operator_account(program, namespace_id),
        _w(user_pda(pid, user)),
        _w(user),
        _w(treasury),
        _w(lock_pda(pid, user, nonce)),
        _w(vault_pda(pid, user)),
        _s(bot),
        _ws(payer),
        _ro(SYSTEM_PROGRAM_ID),
    ]
    return _instruction(program, SettleArgs(nonce, amount), accounts)


def pay(
    program: ProgramRef,
    *,
    user: Pubkey,
    treasury: Pubkey,
    bot: Pubkey,
    payer: Pubkey,
    recover_info: ED25519RecoverInfo,
    amount: int,
    namespace_id: int = 0,
) -> Instruction:
    """Transfer ``amount`` from the user's vault to ``treasury`` under the authorization (nonce += 1).

    ``treasury`` must equal the namespace's (v2) or the global account's (v1) treasury, and ``bot`` its bot.
    """
    pid = program.program_id
    accounts = [
        _operator_account(program, namespace_id),
        _w(user_pda(pid, user)),
        _w(user),
        _w(treasury),
        _w(vault_pda(pid, user)),
        _s(bot),
        _ws(payer),
        _ro(SYSTEM_PROGRAM_ID),
    ]
    return _instruction(program, PayArgs(recover_info, amount, namespace_id), accounts)


# ----------------------------------------------------------------------------------------------------------
# Program errors: custom codes (6000 + index, per version) and the framework codes this program can produce


def snake_case(name: str) -> str:
    """A Rust variant name as a stable error code: ``SignatureExpired`` → ``signature_expired``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class ProgramErrorCode:
    """One error the chain can return for this program: number, Rust name, stable snake_case code."""

    number: int
    name: str

    @property
    def code(self) -> str:
        return snake_case(self.name)


def _numbered(first: int, *names: str) -> Mapping[int, ProgramErrorCode]:
    return MappingProxyType({first + i: ProgramErrorCode(first + i, name) for i, name in enumerate(names)})


CUSTOM_ERRORS: Mapping[ProgramVersion, Mapping[int, ProgramErrorCode]] = MappingProxyType(
    {
        ProgramVersion.V1: _numbered(
            6000,
            "Unauthorized",
            "InsufficientFunds",
            "SignatureFormatInvalid",
            "SignatureRecoveryFailed",
            "SignatureMismatch",
            "SignatureExpired",
        ),
        ProgramVersion.V2: _numbered(
            6000,
            "NameTooShort",
            "NoUpdateFields",
            "InvalidPubkey",
            "Unauthorized",
            "InsufficientFunds",
            "SignatureFormatInvalid",
            "SignatureRecoveryFailed",
            "SignatureMismatch",
            "SignatureExpired",
        ),
    }
)

# Anchor framework errors reachable through this program's accounts and instructions, plus the System
# program's custom 0 (an ``init`` of an account that already exists) which surfaces as Custom(0).
FRAMEWORK_ERRORS: Mapping[int, ProgramErrorCode] = MappingProxyType(
    {
        err.number: err
        for err in (
            ProgramErrorCode(0, "AccountAlreadyInUse"),
            ProgramErrorCode(100, "InstructionMissing"),
            ProgramErrorCode(101, "InstructionFallbackNotFound"),
            ProgramErrorCode(102, "InstructionDidNotDeserialize"),
            ProgramErrorCode(2000, "ConstraintMut"),
            ProgramErrorCode(2001, "ConstraintHasOne"),
            ProgramErrorCode(2002, "ConstraintSigner"),
            ProgramErrorCode(2003, "ConstraintRaw"),
            ProgramErrorCode(2006, "ConstraintSeeds"),
            ProgramErrorCode(3001, "AccountDiscriminatorNotFound"),
            ProgramErrorCode(3002, "AccountDiscriminatorMismatch"),
            ProgramErrorCode(3003, "AccountDidNotDeserialize"),
            ProgramErrorCode(3005, "AccountNotEnoughKeys"),
            ProgramErrorCode(3007, "AccountOwnedByWrongProgram"),
            ProgramErrorCode(3010, "AccountNotSigner"),
            ProgramErrorCode(3012, "AccountNotInitialized"),
        )
    }
)


def describe_custom_error(version: ProgramVersion, code: int) -> tuple[str, str]:
    """``(RustName, stable_snake_case_code)`` for ``InstructionError(_, Custom(code))`` from ``version``.

    Unknown numbers give ``("Custom(<n>)", "program_error")``.
    """
    err = CUSTOM_ERRORS[version].get(code) or FRAMEWORK_ERRORS.get(code)
    if err is None:
        return f"Custom({code})", "program_error"
    return err.name, err.code


def error_number(version: ProgramVersion, code: str) -> int:
    """Inverse of :func:`describe_custom_error`: the number ``version`` returns for stable ``code``."""
    for table in (CUSTOM_ERRORS[version], FRAMEWORK_ERRORS):
        for err in table.values():
            if err.code == code:
                return err.number
    raise InvalidArgument(f"program {version} has no error {code!r}")
