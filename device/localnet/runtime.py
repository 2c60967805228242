"""The slice of the Solana runtime the stand-in executes: accounts, errors, invocation, System program.

What is modeled, and how closely:

- **Accounts** are ``(lamports, data, owner, executable, rent_epoch)``.  Every change goes through
  :class:`InvokeContext`, which enforces the runtime's ownership rules *at the moment of the change*, as
  agave's ``BorrowedAccount`` does: only the owner may debit lamports (``ExternalAccountLamportSpend``) or
  change data (``ExternalAccountDataModified``); read-only accounts keep their balance and data
  (``ReadonlyLamportChange``/``ReadonlyDataModified``); executable accounts are frozen; only the owner may
  reassign a zeroed account (``ModifiedProgramId``).  Each instruction must leave the lamport sum of its
  accounts unchanged (``UnbalancedInstruction``).
- **Cross-program invocation** checks signer and writable privileges against the caller's instruction
  (``PrivilegeEscalation``, with the runtime's log lines), lets a program sign for its own PDAs, records
  inner instructions and nests logs (``invoke [2]``).
- **System program**: ``CreateAccount``, ``Assign``, ``Transfer``, ``Allocate`` with the real checks, log
  lines and ``SystemError`` numbers (0 already in use, 1 insufficient lamports, 3 bad data length).  The
  other system instructions (nonces, ``*WithSeed``) fail with ``InvalidInstructionData`` and a log line
  saying they are not modeled.
- **Compute Budget program**: parsed for the fee (``SetComputeUnitPrice``/``SetComputeUnitLimit``); a no-op
  when executed.  Compute units are *not metered*: programs report fixed costs.
- **Rent**: the default rent (3 480 lamports per byte-year, 2 years exemption, 128 bytes overhead), used for
  the per-transaction rent-state rule (an account may not end ``0 < lamports < minimum`` unless it already
  was rent-paying with the same size and did not grow its balance).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Final, Protocol

from solders.instruction import Instruction
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID

from device.errors import DeviceError
from device.solana.program import U64_MAX

COMPUTE_BUDGET_PROGRAM_ID: Final = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
NATIVE_LOADER_ID: Final = Pubkey.from_string("NativeLoader1111111111111111111111111111111")
BPF_LOADER_UPGRADEABLE_ID: Final = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")

# Keys the runtime never lets a transaction write (builtins, loaders, the sysvars a client could name).
RESERVED_ACCOUNT_KEYS: Final = frozenset(
    {
        SYSTEM_PROGRAM_ID,
        COMPUTE_BUDGET_PROGRAM_ID,
        NATIVE_LOADER_ID,
        BPF_LOADER_UPGRADEABLE_ID,
        Pubkey.from_string("BPFLoader2111111111111111111111111111111111"),
        Pubkey.from_string("SysvarC1ock11111111111111111111111111111111"),
        Pubkey.from_string("SysvarRent111111111111111111111111111111111"),
        Pubkey.from_string("Sysvar1nstructions1111111111111111111111111"),
        Pubkey.from_string("SysvarRecentB1ockHashes11111111111111111111"),
    }
)

LAMPORTS_PER_SIGNATURE: Final = 5_000
RENT_LAMPORTS_PER_BYTE_YEAR: Final = 3_480
RENT_EXEMPTION_YEARS: Final = 2
ACCOUNT_STORAGE_OVERHEAD: Final = 128
MAX_PERMITTED_DATA_LENGTH: Final = 10 * 1024 * 1024
DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT: Final = 200_000
MAX_COMPUTE_UNIT_LIMIT: Final = 1_400_000
MICRO_LAMPORTS_PER_LAMPORT: Final = 1_000_000
BUILTIN_COMPUTE_UNITS: Final = 150


def rent_exempt_minimum(data_len: int) -> int:
    """Lamports an account of ``data_len`` bytes needs to be rent-exempt (890 880 for 0 bytes)."""
    return (ACCOUNT_STORAGE_OVERHEAD + data_len) * RENT_LAMPORTS_PER_BYTE_YEAR * RENT_EXEMPTION_YEARS


class LocalnetError(DeviceError):
    """Base of the stand-in's own errors (bad setup, bad state file, refused host)."""

    code = "localnet_error"


# ----------------------------------------------------------------------------------------------------------
# Accounts


@dataclass(frozen=True, slots=True)
class Account:
    """One account as stored: what ``getAccountInfo`` returns."""

    lamports: int
    data: bytes = b""
    owner: Pubkey = SYSTEM_PROGRAM_ID
    executable: bool = False
    rent_epoch: int = U64_MAX

    def __post_init__(self) -> None:
        if not 0 <= self.lamports <= U64_MAX:
            raise LocalnetError(f"account lamports {self.lamports} outside [0, 2^64-1]")


@dataclass(slots=True)
class _LiveAccount:
    """The mutable copy a transaction works on."""

    lamports: int
    data: bytes
    owner: Pubkey
    executable: bool
    rent_epoch: int

    @classmethod
    def of(cls, account: Account | None) -> _LiveAccount:
        if account is None:
            return cls(0, b"", SYSTEM_PROGRAM_ID, False, U64_MAX)
        return cls(account.lamports, account.data, account.owner, account.executable, account.rent_epoch)

    def freeze(self) -> Account | None:
        """The stored form; an account left with 0 lamports no longer exists."""
        if self.lamports == 0:
            return None
        return Account(self.lamports, self.data, self.owner, self.executable, self.rent_epoch)


# ----------------------------------------------------------------------------------------------------------
# Errors in the shapes a real node returns them (JSON value + Display text)

_INSTRUCTION_ERROR_TEXT: Final[dict[str, str]] = {
    "GenericError": "generic instruction error",
    "InvalidArgument": "invalid program argument",
    "InvalidInstructionData": "invalid instruction data",
    "InvalidAccountData": "invalid account data for instruction",
    "AccountDataTooSmall": "account data too small for instruction",
    "InsufficientFunds": "insufficient funds for instruction",
    "IncorrectProgramId": "incorrect program id for instruction",
    "MissingRequiredSignature": "missing required signature for instruction",
    "AccountAlreadyInitialized": "instruction requires an uninitialized account",
    "UninitializedAccount": "instruction requires an initialized account",
    "UnbalancedInstruction": "sum of account balances before and after instruction do not match",
    "ModifiedProgramId": "instruction illegally modified the program id of an account",
    "ExternalAccountLamportSpend": "instruction spent from the balance of an account it does not own",
    "ExternalAccountDataModified": "instruction modified data of an account it does not own",
    "ReadonlyLamportChange": "instruction changed the balance of a read-only account",
    "ReadonlyDataModified": "instruction modified data of a read-only account",
    "NotEnoughAccountKeys": "insufficient account keys for instruction",
    "AccountDataSizeChanged": "program other than the account's owner changed the size of the account data",
    "ProgramFailedToComplete": "Program failed to complete",
    "MissingAccount": "An account required by the instruction is missing",
    "PrivilegeEscalation": "Cross-program invocation with unauthorized signer or writable account",
    "ArithmeticOverflow": "Program arithmetic overflowed",
    "ExecutableLamportChange": "instruction changed the balance of an executable account",
    "ExecutableDataModified": "instruction changed executable accounts data",
}

_TRANSACTION_ERROR_TEXT: Final[dict[str, str]] = {
    "AccountInUse": "Account in use",
    "AccountLoadedTwice": "Account loaded twice",
    "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
    "ProgramAccountNotFound": "Attempt to load a program that does not exist",
    "InsufficientFundsForFee": "Insufficient funds for fee",
    "InvalidAccountForFee": "This account may not be used to pay transaction fees",
    "AlreadyProcessed": "This transaction has already been processed",
    "BlockhashNotFound": "Blockhash not found",
    "MissingSignatureForFee": "Transaction requires a fee but has no signature present",
    "InvalidAccountIndex": "Transaction contains an invalid account reference",
    "SignatureFailure": "Transaction did not pass signature verification",
    "InvalidProgramForExecution": "This program may not be used for executing instructions",
    "SanitizeFailure": "Transaction failed to sanitize accounts offsets correctly",
    "TooManyAccountLocks": "Transaction locked too many accounts",
    "AddressLookupTableNotFound": "Transaction loads an address table account that doesn't exist",
    "UnsupportedVersion": "Transaction version is unsupported",
}


@dataclass(frozen=True)
class InstrError:
    """An ``InstructionError``: ``json`` is its wire form (``"MissingRequiredSignature"``, ``{"Custom": 1}``).

    ``text`` is its Display form, as in ``failed: …`` log lines.
    """

    json: Any
    text: str

    @classmethod
    def named(cls, name: str) -> InstrError:
        return cls(name, _INSTRUCTION_ERROR_TEXT[name])

    @classmethod
    def custom(cls, number: int) -> InstrError:
        return cls({"Custom": number}, f"custom program error: {number:#x}")


@dataclass(frozen=True)
class TxError:
    """A ``TransactionError``: ``json`` as in ``err`` fields.

    ``text`` is its Display form, as in ``Transaction simulation failed: …``.
    """

    json: Any
    text: str

    @classmethod
    def named(cls, name: str) -> TxError:
        return cls(name, _TRANSACTION_ERROR_TEXT[name])

    @classmethod
    def instruction(cls, index: int, error: InstrError) -> TxError:
        return cls(
            {"InstructionError": [index, error.json]}, f"Error processing Instruction {index}: {error.text}"
        )

    @classmethod
    def insufficient_funds_for_rent(cls, account_index: int) -> TxError:
        return cls(
            {"InsufficientFundsForRent": {"account_index": account_index}},
            f"Transaction results in an account ({account_index}) with insufficient funds for rent",
        )

    @classmethod
    def duplicate_instruction(cls, index: int) -> TxError:
        return cls(
            {"DuplicateInstruction": index},
            f"Transaction contains a duplicate instruction ({index}) that is not allowed",
        )

    @property
    def instruction_error(self) -> tuple[int, Any] | None:
        """``(index, InstructionError json)`` when this is an instruction failure."""
        if isinstance(self.json, dict) and "InstructionError" in self.json:
            index, err = self.json["InstructionError"]
            return int(index), err
        return None

    @property
    def custom_code(self) -> int | None:
        """The ``Custom(n)`` number of an instruction failure, else ``None``."""
        found = self.instruction_error
        if found is not None and isinstance(found[1], dict) and "Custom" in found[1]:
            return int(found[1]["Custom"])
        return None


class InstructionFailure(Exception):
    """Raised inside a program: the current (outer) instruction fails with ``error``."""

    def __init__(self, error: InstrError) -> None:
        super().__init__(error.text)
        self.error = error


# ----------------------------------------------------------------------------------------------------------
# Programs and invocation


class Program(Protocol):
    """An executable the stand-in can run (a builtin or a model of an on-chain program)."""

    @property
    def logs_compute_units(self) -> bool:
        """BPF programs log ``consumed N of M compute units``; builtins do not."""

    def process(self, ctx: InvokeContext) -> None:
        """Execute one instruction; raise :class:`InstructionFailure` to fail it."""


@dataclass(frozen=True)
class InnerInstruction:
    """One CPI, as ``innerInstructions`` report it (indices into the transaction's account keys)."""

    program_id_index: int
    accounts: tuple[int, ...]
    data: bytes
    stack_height: int


@dataclass
class TransactionRun:
    """Working state of one transaction's execution (discarded unless the transaction commits)."""

    keys: Sequence[Pubkey]
    accounts: list[_LiveAccount]
    signer: Sequence[bool]
    writable: Sequence[bool]
    programs: dict[Pubkey, Program]
    unix_timestamp: int
    slot: int
    compute_unit_limit: int
    logs: list[str] = field(default_factory=list)
    inner: dict[int, list[InnerInstruction]] = field(default_factory=dict)
    units_consumed: int = 0

    def execute(
        self,
        program_id: Pubkey,
        indices: Sequence[int],
        signer: dict[int, bool],
        writable: dict[int, bool],
        data: bytes,
        *,
        depth: int,
        outer_index: int,
    ) -> None:
        """Run one instruction (outer when ``depth == 1``, a CPI otherwise) with the runtime's bookkeeping."""
        program = self.programs[program_id]
        self.logs.append(f"Program {program_id} invoke [{depth}]")
        unique = sorted(set(indices))
        before = sum(self.accounts[i].lamports for i in unique)
        budget = self.compute_unit_limit - self.units_consumed
        start = self.units_consumed
        ctx = InvokeContext(self, program_id, list(indices), signer, writable, data, depth, outer_index)
        try:
            program.process(ctx)
            if not program.logs_compute_units:
                self.units_consumed += BUILTIN_COMPUTE_UNITS
            if sum(self.accounts[i].lamports for i in unique) != before:
                raise InstructionFailure(InstrError.named("UnbalancedInstruction"))
        except InstructionFailure as failure:
            if program.logs_compute_units:
                self.logs.append(
                    f"Program {program_id} consumed {self.units_consumed - start} of {budget} compute units"
                )
            self.logs.append(f"Program {program_id} failed: {failure.error.text}")
            raise
        if program.logs_compute_units:
            self.logs.append(
                f"Program {program_id} consumed {self.units_consumed - start} of {budget} compute units"
            )
        self.logs.append(f"Program {program_id} success")


class InvokeContext:
    """What a program sees of one instruction: its accounts (by position), data, clock, and CPI.

    Account accessors take the *position* in the instruction's account list.  Mutators enforce the
    runtime's rules and raise :class:`InstructionFailure` like the real runtime would.
    """

    def __init__(
        self,
        run: TransactionRun,
        program_id: Pubkey,
        indices: list[int],
        signer: dict[int, bool],
        writable: dict[int, bool],
        data: bytes,
        depth: int,
        outer_index: int,
    ) -> None:
        self._run = run
        self.program_id = program_id
        self._indices = indices
        self._signer = signer
        self._writable = writable
        self.data = data
        self.depth = depth
        self._outer_index = outer_index

    # -- reading

    @property
    def unix_timestamp(self) -> int:
        """``Clock::get().unix_timestamp`` for this transaction."""
        return self._run.unix_timestamp

    @property
    def account_count(self) -> int:
        return len(self._indices)

    def require_accounts(self, n: int) -> None:
        """The runtime's ``check_number_of_instruction_accounts``."""
        if len(self._indices) < n:
            raise InstructionFailure(InstrError.named("NotEnoughAccountKeys"))

    def key(self, pos: int) -> Pubkey:
        return self._run.keys[self._indices[pos]]

    def _acc(self, pos: int) -> _LiveAccount:
        return self._run.accounts[self._indices[pos]]

    def lamports(self, pos: int) -> int:
        return self._acc(pos).lamports

    def data_of(self, pos: int) -> bytes:
        return self._acc(pos).data

    def owner(self, pos: int) -> Pubkey:
        return self._acc(pos).owner

    def executable(self, pos: int) -> bool:
        return self._acc(pos).executable

    def is_signer(self, pos: int) -> bool:
        return self._signer[self._indices[pos]]

    def is_writable(self, pos: int) -> bool:
        return self._writable[self._indices[pos]]

    def signer_keys(self) -> set[Pubkey]:
        return {self.key(p) for p in range(len(self._indices)) if self.is_signer(p)}

    # -- logging and metering

    def log(self, message: str) -> None:
        """``msg!``: a ``Program log: …`` line."""
        self._run.logs.append(f"Program log: {message}")

    def raw_log(self, message: str) -> None:
        """``ic_msg!``: a runtime/builtin line without prefix."""
        self._run.logs.append(message)

    def consume(self, units: int) -> None:
        """Report compute units (fixed costs, not metered)."""
        self._run.units_consumed += units

    # -- writing (the BorrowedAccount rules)

    def _owned(self, pos: int) -> bool:
        return self._acc(pos).owner == self.program_id

    def set_lamports(self, pos: int, lamports: int) -> None:
        account = self._acc(pos)
        if not self._owned(pos) and lamports < account.lamports:
            raise InstructionFailure(InstrError.named("ExternalAccountLamportSpend"))
        if not self.is_writable(pos):
            raise InstructionFailure(InstrError.named("ReadonlyLamportChange"))
        if account.executable:
            raise InstructionFailure(InstrError.named("ExecutableLamportChange"))
        if lamports > U64_MAX or lamports < 0:
            raise InstructionFailure(InstrError.named("ArithmeticOverflow"))
        account.lamports = lamports

    def set_data(self, pos: int, data: bytes) -> None:
        account = self._acc(pos)
        if account.data == data:
            return
        if account.executable:
            raise InstructionFailure(InstrError.named("ExecutableDataModified"))
        if not self.is_writable(pos):
            raise InstructionFailure(InstrError.named("ReadonlyDataModified"))
        if not self._owned(pos):
            if len(data) != len(account.data):
                raise InstructionFailure(InstrError.named("AccountDataSizeChanged"))
            raise InstructionFailure(InstrError.named("ExternalAccountDataModified"))
        account.data = bytes(data)

    def set_owner(self, pos: int, owner: Pubkey) -> None:
        account = self._acc(pos)
        if account.owner == owner:
            return
        if not self._owned(pos) or not self.is_writable(pos) or account.executable or any(account.data):
            raise InstructionFailure(InstrError.named("ModifiedProgramId"))
        account.owner = owner

    # -- cross-program invocation

    def invoke(self, instruction: Instruction, *, pda_signers: Sequence[Pubkey] = ()) -> None:
        """``invoke_signed``: run ``instruction`` as a CPI.

        ``pda_signers`` are PDAs of the *calling* program (derived with :mod:`device.solana.program`), the
        stand-in's equivalent of passing their seeds: they may appear as signers.
        """
        run = self._run
        mine = {run.keys[i]: i for i in self._indices}
        indices: list[int] = []
        signer: dict[int, bool] = {}
        writable: dict[int, bool] = {}
        for meta in instruction.accounts:
            index = mine.get(meta.pubkey)
            if index is None:
                self.raw_log(f"Instruction references an unknown account {meta.pubkey}")
                raise InstructionFailure(InstrError.named("MissingAccount"))
            if meta.is_writable and not self._writable[index]:
                self.raw_log(f"{meta.pubkey}'s writable privilege escalated")
                raise InstructionFailure(InstrError.named("PrivilegeEscalation"))
            if meta.is_signer and not (self._signer[index] or meta.pubkey in pda_signers):
                self.raw_log(f"{meta.pubkey}'s signer privilege escalated")
                raise InstructionFailure(InstrError.named("PrivilegeEscalation"))
            indices.append(index)
            signer[index] = signer.get(index, False) or meta.is_signer
            writable[index] = writable.get(index, False) or meta.is_writable
        program_index = mine.get(instruction.program_id)
        if program_index is None or instruction.program_id not in run.programs:
            self.raw_log(f"Unknown program {instruction.program_id}")
            raise InstructionFailure(InstrError.named("MissingAccount"))
        run.inner.setdefault(self._outer_index, []).append(
            InnerInstruction(program_index, tuple(indices), bytes(instruction.data), self.depth + 1)
        )
        run.execute(
            instruction.program_id,
            indices,
            signer,
            writable,
            bytes(instruction.data),
            depth=self.depth + 1,
            outer_index=self._outer_index,
        )


def checked_add(a: int, b: int, ctx: InvokeContext, what: str) -> int:
    """``a + b`` as a u64 in a program built with ``overflow-checks = true``: overflow panics."""
    total = a + b
    if total > U64_MAX:
        ctx.log(f"panicked at 'attempt to add with overflow' ({what})")
        raise InstructionFailure(InstrError.named("ProgramFailedToComplete"))
    return total


def checked_sub(a: int, b: int, ctx: InvokeContext, what: str) -> int:
    """``a - b`` as a u64 with overflow checks: underflow panics."""
    if b > a:
        ctx.log(f"panicked at 'attempt to subtract with overflow' ({what})")
        raise InstructionFailure(InstrError.named("ProgramFailedToComplete"))
    return a - b


# ----------------------------------------------------------------------------------------------------------
# System program

_SYSTEM_ERROR_ALREADY_IN_USE = 0
_SYSTEM_ERROR_NEGATIVE_LAMPORTS = 1
_SYSTEM_ERROR_INVALID_DATA_LENGTH = 3
_SYSTEM_NAMES: Final = {
    3: "CreateAccountWithSeed",
    4: "AdvanceNonceAccount",
    5: "WithdrawNonceAccount",
    6: "InitializeNonceAccount",
    7: "AuthorizeNonceAccount",
    9: "AllocateWithSeed",
    10: "AssignWithSeed",
    11: "TransferWithSeed",
    12: "UpgradeNonceAccount",
    13: "CreateAccountAllowPrefund",
}


def _address(key: Pubkey) -> str:
    """How the system program prints an address in its log lines."""
    return f"Address {{ address: {key}, base: None }}"


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise InstructionFailure(InstrError.named("InvalidInstructionData"))
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "little")

    def pubkey(self) -> Pubkey:
        return Pubkey.from_bytes(self.take(32))


class SystemProgram:
    """The parts of the System program that transfers and Anchor's ``init`` use."""

    logs_compute_units: ClassVar[bool] = False

    def process(self, ctx: InvokeContext) -> None:
        reader = _Reader(ctx.data)
        tag = reader.u32()
        if tag == 0:
            lamports, space, owner = reader.u64(), reader.u64(), reader.pubkey()
            ctx.require_accounts(2)
            self._create_account(ctx, lamports, space, owner)
        elif tag == 1:
            owner = reader.pubkey()
            ctx.require_accounts(1)
            self._assign(ctx, 0, owner)
        elif tag == 2:
            lamports = reader.u64()
            ctx.require_accounts(2)
            self._transfer(ctx, 0, 1, lamports)
        elif tag == 8:
            space = reader.u64()
            ctx.require_accounts(1)
            self._allocate(ctx, 0, space)
        else:
            name = _SYSTEM_NAMES.get(tag, f"instruction {tag}")
            ctx.raw_log(f"localnet: system {name} is not modeled by this stand-in")
            raise InstructionFailure(InstrError.named("InvalidInstructionData"))

    def _create_account(self, ctx: InvokeContext, lamports: int, space: int, owner: Pubkey) -> None:
        if ctx.lamports(1) > 0:
            ctx.raw_log(f"Create Account: account {_address(ctx.key(1))} already in use")
            raise InstructionFailure(InstrError.custom(_SYSTEM_ERROR_ALREADY_IN_USE))
        self._allocate(ctx, 1, space)
        self._assign(ctx, 1, owner)
        self._transfer(ctx, 0, 1, lamports)

    def _allocate(self, ctx: InvokeContext, pos: int, space: int) -> None:
        if not ctx.is_signer(pos):
            ctx.raw_log(f"Allocate: 'to' account {_address(ctx.key(pos))} must sign")
            raise InstructionFailure(InstrError.named("MissingRequiredSignature"))
        if ctx.data_of(pos) or ctx.owner(pos) != SYSTEM_PROGRAM_ID:
            ctx.raw_log(f"Allocate: account {_address(ctx.key(pos))} already in use")
            raise InstructionFailure(InstrError.custom(_SYSTEM_ERROR_ALREADY_IN_USE))
        if space > MAX_PERMITTED_DATA_LENGTH:
            ctx.raw_log(f"Allocate: requested {space}, max allowed {MAX_PERMITTED_DATA_LENGTH}")
            raise InstructionFailure(InstrError.custom(_SYSTEM_ERROR_INVALID_DATA_LENGTH))
        ctx.set_data(pos, bytes(space))

    def _assign(self, ctx: InvokeContext, pos: int, owner: Pubkey) -> None:
        if ctx.owner(pos) == owner:
            return
        if not ctx.is_signer(pos):
            ctx.raw_log(f"Assign: account {_address(ctx.key(pos))} must sign")
            raise InstructionFailure(InstrError.named("MissingRequiredSignature"))
        ctx.set_owner(pos, owner)

    def _transfer(self, ctx: InvokeContext, source: int, destination: int, lamports: int) -> None:
        if not ctx.is_signer(source):
            ctx.raw_log(f"Transfer: `from` account {ctx.key(source)} must sign")
            raise InstructionFailure(InstrError.named("MissingRequiredSignature"))
        if ctx.data_of(source):
            ctx.raw_log("Transfer: `from` must not carry data")
            raise InstructionFailure(InstrError.named("InvalidArgument"))
        have = ctx.lamports(source)
        if lamports > have:
            ctx.raw_log(f"Transfer: insufficient lamports {have}, need {lamports}")
            raise InstructionFailure(InstrError.custom(_SYSTEM_ERROR_NEGATIVE_LAMPORTS))
        ctx.set_lamports(source, have - lamports)
        ctx.set_lamports(destination, ctx.lamports(destination) + lamports)


# ----------------------------------------------------------------------------------------------------------
# Compute Budget program


@dataclass(frozen=True)
class ComputeBudget:
    """What a transaction's Compute Budget instructions ask for (defaults when absent)."""

    unit_limit: int
    unit_price_micro_lamports: int = 0

    @property
    def prioritization_fee(self) -> int:
        """``ceil(price × limit / 10^6)`` lamports on top of the signature fee."""
        return -(-self.unit_price_micro_lamports * self.unit_limit // MICRO_LAMPORTS_PER_LAMPORT)


class ComputeBudgetError(Exception):
    """A Compute Budget instruction the fee calculation refuses (the transaction is not processed)."""

    def __init__(self, error: TxError) -> None:
        super().__init__(error.text)
        self.error = error


def parse_compute_budget(instructions: Sequence[tuple[Pubkey, bytes]]) -> ComputeBudget:
    """The budget ``(program_id, data)`` instructions request, or :class:`ComputeBudgetError`."""
    limit: int | None = None
    price = 0
    seen: set[int] = set()
    others = 0
    for index, (program_id, data) in enumerate(instructions):
        if program_id != COMPUTE_BUDGET_PROGRAM_ID:
            others += 1
            continue
        invalid = ComputeBudgetError(TxError.instruction(index, InstrError.named("InvalidInstructionData")))
        if not data:
            raise invalid
        tag = data[0]
        sizes = {1: 5, 2: 5, 3: 9, 4: 5}
        if tag not in sizes or len(data) != sizes[tag]:
            raise invalid
        if tag in seen:
            raise ComputeBudgetError(TxError.duplicate_instruction(index))
        seen.add(tag)
        value = int.from_bytes(data[1:], "little")
        if tag == 2:
            limit = value
        elif tag == 3:
            price = value
    if limit is None:
        limit = DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT * others
    return ComputeBudget(min(limit, MAX_COMPUTE_UNIT_LIMIT), price)


class ComputeBudgetProgram:
    """Executing a Compute Budget instruction does nothing (it was applied before execution)."""

    logs_compute_units: ClassVar[bool] = False

    def process(self, ctx: InvokeContext) -> None:
        return None


# ----------------------------------------------------------------------------------------------------------
# Rent state transitions (checked once per transaction over its writable accounts)


def rent_state(account: _LiveAccount | Account | None) -> tuple[str, int, int]:
    """``("uninitialized"|"exempt"|"paying", data_len, lamports)``."""
    if account is None or account.lamports == 0:
        return ("uninitialized", 0, 0)
    if account.lamports >= rent_exempt_minimum(len(account.data)):
        return ("exempt", len(account.data), account.lamports)
    return ("paying", len(account.data), account.lamports)


def rent_transition_allowed(pre: tuple[str, int, int], post: tuple[str, int, int]) -> bool:
    """agave's ``RentState::transition_allowed_from``."""
    if post[0] != "paying":
        return True
    return pre[0] == "paying" and post[1] == pre[1] and post[2] <= pre[2]


def split_camel(name: str) -> str:
    """``"SignatureExpired"`` -> ``"Signature expired"`` (used for error messages)."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", name).split(" ")
    return " ".join([words[0], *(w.lower() for w in words[1:])])


def live_copy(account: Account | None) -> _LiveAccount:
    """A mutable copy for a transaction run."""
    return _LiveAccount.of(account)


def with_lamports(account: Account | None, lamports: int) -> Account:
    """``account`` (or a new system account) holding ``lamports``."""
    if account is None:
        return Account(lamports)
    return replace(account, lamports=lamports)
