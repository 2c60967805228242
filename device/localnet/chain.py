"""The stand-in's chain: accounts, a simulated clock, blockhashes, and the transaction pipeline.  No I/O.

This is a **test and demo double, not a validator**: one in-memory ledger, every accepted transaction is
final the moment it is processed (``finalized``, no forks, no votes), and slots advance on a simulated
400 ms clock (wall clock plus an adjustable offset).  It runs the System program, a no-op Compute Budget
program and models of both ``balance-payment`` versions.

Transaction pipeline, in the order a real node applies it:

1. **Sanitize** (:meth:`Chain.decode_transaction`): real bytes through solders (legacy and v0), header and
   index checks, signature count, duplicate keys (``AccountLoadedTwice``), address lookup tables (none exist
   here: ``AddressLookupTableNotFound``), at most 64 accounts.  Refusal -> :class:`InvalidTransaction`.
2. **Signatures**: every signature must verify (``-32003`` on ``sendTransaction`` with preflight).
3. **Age**: the recent blockhash must be one of the last 150 slots' (``BlockhashNotFound``).
4. **Status cache**: a signature already processed -> ``AlreadyProcessed``.
5. **Fee payer**: exists, system-owned, no data, can pay ``5 000 × signatures`` (+ priority fee) and stay
   rent-exempt (``AccountNotFound``, ``InvalidAccountForFee``, ``InsufficientFundsForFee``).
6. **Programs** must exist and be executable (``ProgramAccountNotFound``/``InvalidProgramForExecution``).
7. **Execute** every instruction; the first failure aborts (``InstructionError``).
8. **Rent** state of every writable account (``InsufficientFundsForRent``).

Failures in 2-5 mean the transaction never lands: nothing is charged.  From 6 on it lands: on failure the fee
is charged and nothing else changes (atomic); on success every change commits.  :meth:`Chain.send_transaction`
with preflight refuses a failing transaction instead (:class:`PreflightFailure`, nothing charged), exactly
like ``sendTransaction`` on a real node; with ``skip_preflight`` a failing transaction lands and pays its fee,
and one that cannot land (2-5) is dropped silently (its signature is returned, its status stays ``null``;
:attr:`Chain.dropped` says why).
"""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from device.localnet.balance_payment import BalancePaymentModel
from device.localnet.runtime import (
    BPF_LOADER_UPGRADEABLE_ID,
    COMPUTE_BUDGET_PROGRAM_ID,
    DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT,
    LAMPORTS_PER_SIGNATURE,
    NATIVE_LOADER_ID,
    RESERVED_ACCOUNT_KEYS,
    Account,
    ComputeBudget,
    ComputeBudgetError,
    ComputeBudgetProgram,
    InnerInstruction,
    InstructionFailure,
    LocalnetError,
    Program,
    SystemProgram,
    TransactionRun,
    TxError,
    live_copy,
    parse_compute_budget,
    rent_exempt_minimum,
    rent_state,
    rent_transition_allowed,
    with_lamports,
)
from device.solana.program import DEFAULT_PROGRAM_IDS, U64_MAX, ProgramVersion

SLOT_SECONDS: Final = 0.4
MAX_PROCESSING_AGE: Final = 150
MAX_TX_ACCOUNT_LOCKS: Final = 64
PACKET_DATA_SIZE: Final = 1232
FAUCET_LAMPORTS: Final = 500_000_000 * 10**9
TRANSACTION_ACCOUNT_BASE_SIZE: Final = 64
DEFAULT_HISTORY_LIMIT: Final = 10_000
_MAX_AIRDROP_VARIANTS: Final = 10_000
STATE_FORMAT: Final = "xephy-localnet-state"
STATE_VERSION: Final = 1


class InvalidTransaction(LocalnetError):
    """Bytes that are not a transaction the node would accept (JSON-RPC ``-32602``)."""

    code = "transaction_invalid"


class SignatureVerificationFailure(LocalnetError):
    """A signature does not verify (JSON-RPC ``-32003``)."""

    code = "signature_verification_failed"


class PreflightFailure(LocalnetError):
    """``sendTransaction`` preflight refused a transaction that would fail (JSON-RPC ``-32002``)."""

    code = "preflight_failed"

    def __init__(self, result: ExecutionResult) -> None:
        assert result.err is not None
        super().__init__(f"Transaction simulation failed: {result.err.text}")
        self.result = result


@dataclass(frozen=True)
class ExecutionResult:
    """What processing (or simulating) one transaction produced."""

    signature: Signature
    err: TxError | None
    logs: tuple[str, ...]
    fee: int
    units_consumed: int
    pre_balances: tuple[int, ...]
    post_balances: tuple[int, ...]
    inner_instructions: tuple[tuple[int, tuple[InnerInstruction, ...]], ...]
    loaded_accounts_data_size: int
    landed: bool
    """False when the transaction could not be processed at all (signature, age, duplicate, fee payer)."""


@dataclass(frozen=True)
class TransactionRecord:
    """A processed (landed) transaction: what ``getSignatureStatuses``/``getTransaction`` report."""

    transaction: VersionedTransaction
    slot: int
    block_time: int
    result: ExecutionResult

    @property
    def signature(self) -> Signature:
        return self.result.signature


@dataclass(frozen=True)
class DroppedTransaction:
    """A transaction sent with ``skipPreflight`` that could not land (a real leader drops it silently)."""

    signature: Signature
    reason: str


@dataclass(frozen=True)
class Simulation:
    """``simulateTransaction``'s answer: the result plus the accounts' state after it (not committed)."""

    result: ExecutionResult
    accounts_after: Mapping[Pubkey, Account | None]
    replacement_blockhash: tuple[Hash, int] | None


@dataclass
class _Outcome:
    result: ExecutionResult
    commit: dict[Pubkey, Account | None] = field(default_factory=dict)
    after: dict[Pubkey, Account | None] = field(default_factory=dict)


def _program_account(program_id: Pubkey) -> Account:
    """An upgradeable-loader ``Program`` account (tag 2 ‖ programdata address), as deployed programs have."""
    programdata = Pubkey.find_program_address([bytes(program_id)], BPF_LOADER_UPGRADEABLE_ID)[0]
    data = (2).to_bytes(4, "little") + bytes(programdata)
    return Account(rent_exempt_minimum(len(data)), data, BPF_LOADER_UPGRADEABLE_ID, executable=True)


def _builtin_account(name: str) -> Account:
    return Account(1, name.encode(), NATIVE_LOADER_ID, executable=True)


def message_flags(message: Message | MessageV0) -> tuple[list[Pubkey], list[bool], list[bool]]:
    """``(keys, is_signer, is_writable)`` of a sanitized message, with the runtime's demotions.

    Program ids called by an instruction and reserved keys (builtins, loaders, sysvars) are never writable.
    """
    keys = list(message.account_keys)
    header = message.header
    signed = header.num_required_signatures
    n = len(keys)
    called = {ix.program_id_index for ix in message.instructions}
    signer = [i < signed for i in range(n)]
    writable = []
    for i, key in enumerate(keys):
        if i < signed:
            w = i < signed - header.num_readonly_signed_accounts
        else:
            w = i < n - header.num_readonly_unsigned_accounts
        writable.append(w and i not in called and key not in RESERVED_ACCOUNT_KEYS)
    return keys, signer, writable


class Chain:
    """The pure state model: accounts, clock, blockhashes, transaction history.  No network or file I/O.

    ``programs`` maps program ids to the ``balance-payment`` version deployed there; both versions are always
    deployed at their default ids (:data:`device.solana.program.DEFAULT_PROGRAM_IDS`).  ``clock`` returns the
    wall clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        *,
        programs: Mapping[Pubkey, ProgramVersion] | None = None,
        clock: Callable[[], float] = time.time,
        genesis_seed: bytes | None = None,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
    ) -> None:
        self._clock = clock
        self._seed = genesis_seed if genesis_seed is not None else secrets.token_bytes(32)
        if len(self._seed) != 32:
            raise LocalnetError("genesis_seed must be 32 bytes")
        self._genesis_unix = clock()
        self._offset = 0.0
        self._last_slot = 0
        self._accounts: dict[Pubkey, Account] = {}
        self._records: OrderedDict[Signature, TransactionRecord] = OrderedDict()
        self._history_limit = history_limit
        self.dropped: deque[DroppedTransaction] = deque(maxlen=1_000)
        self._listeners: list[Callable[[], None]] = []
        self.faucet = Keypair.from_seed(hashlib.sha256(b"xephy-localnet faucet" + self._seed).digest())
        self.program_versions: dict[Pubkey, ProgramVersion] = {
            pid: version for version, pid in DEFAULT_PROGRAM_IDS.items()
        }
        for pid, version in (programs or {}).items():
            self.program_versions[pid] = ProgramVersion(version)
        self._programs: dict[Pubkey, Program] = {
            SYSTEM_PROGRAM_ID: SystemProgram(),
            COMPUTE_BUDGET_PROGRAM_ID: ComputeBudgetProgram(),
        }
        models = {version: BalancePaymentModel(version) for version in ProgramVersion}
        for pid, version in self.program_versions.items():
            self._programs[pid] = models[version]
        self._install_genesis_accounts()

    def _install_genesis_accounts(self) -> None:
        self._accounts[SYSTEM_PROGRAM_ID] = _builtin_account("system_program")
        self._accounts[COMPUTE_BUDGET_PROGRAM_ID] = _builtin_account("compute_budget_program")
        for pid in self.program_versions:
            self._accounts[pid] = _program_account(pid)
        self._accounts.setdefault(self.faucet.pubkey(), Account(FAUCET_LAMPORTS))

    # ------------------------------------------------------------------------------------------------------
    # Listeners (the server persists the state after every change)

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every state change (transaction, airdrop, account set, clock move)."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in self._listeners:
            callback()

    # ------------------------------------------------------------------------------------------------------
    # Clock, slots, blockhashes

    @property
    def unix_timestamp(self) -> int:
        """``Clock.unix_timestamp`` programs see: wall clock + offset, whole seconds."""
        return math.floor(self._clock() + self._offset)

    @property
    def slot(self) -> int:
        """Current slot: one every 400 ms of simulated time since genesis (never goes backwards)."""
        elapsed = self._clock() + self._offset - self._genesis_unix
        self._last_slot = max(self._last_slot, math.floor(elapsed / SLOT_SECONDS))
        return self._last_slot

    @property
    def block_height(self) -> int:
        """Every slot has a block here, so the block height equals the slot."""
        return self.slot

    def advance_clock(self, seconds: float) -> None:
        """Move simulated time forward: ``unix_timestamp`` by ``seconds``, slots by ``seconds / 0.4``."""
        if seconds < 0:
            raise LocalnetError("the clock only moves forward")
        self._offset += seconds
        self._changed()

    def blockhash_at(self, slot: int) -> Hash:
        """The (deterministic) blockhash of ``slot``."""
        return Hash(
            hashlib.sha256(b"xephy-localnet blockhash" + self._seed + slot.to_bytes(8, "little")).digest()
        )

    def latest_blockhash(self) -> tuple[Hash, int]:
        """``(blockhash, last_valid_block_height)`` as ``getLatestBlockhash`` returns them."""
        slot = self.slot
        return self.blockhash_at(slot), slot + MAX_PROCESSING_AGE

    def blockhash_slot(self, blockhash: Hash) -> int | None:
        """The slot of ``blockhash`` if it is still valid (at most 150 slots old), else ``None``."""
        current = self.slot
        for slot in range(current, max(-1, current - MAX_PROCESSING_AGE - 1), -1):
            if self.blockhash_at(slot) == blockhash:
                return slot
        return None

    def is_blockhash_valid(self, blockhash: Hash) -> bool:
        return self.blockhash_slot(blockhash) is not None

    # ------------------------------------------------------------------------------------------------------
    # Accounts

    def account(self, pubkey: Pubkey) -> Account | None:
        """The stored account, or ``None`` when it does not exist (0 lamports)."""
        return self._accounts.get(pubkey)

    def balance(self, pubkey: Pubkey) -> int:
        account = self._accounts.get(pubkey)
        return 0 if account is None else account.lamports

    def airdrop(self, pubkey: Pubkey, lamports: int) -> None:
        """Test setup: credit ``lamports`` directly (no transaction, no rent rule, nothing recorded)."""
        if lamports <= 0:
            raise LocalnetError("airdrop needs a positive amount")
        account = self._accounts.get(pubkey)
        total = lamports + (0 if account is None else account.lamports)
        if total > U64_MAX:
            raise LocalnetError("airdrop would overflow the account balance")
        self._accounts[pubkey] = with_lamports(account, total)
        self._changed()

    def set_account(self, pubkey: Pubkey, account: Account | None) -> None:
        """Test setup: overwrite (or with ``None`` delete) an account."""
        if account is None or account.lamports == 0:
            self._accounts.pop(pubkey, None)
        else:
            self._accounts[pubkey] = account
        self._changed()

    def accounts(self) -> Mapping[Pubkey, Account]:
        """A read-only view of every account."""
        return dict(self._accounts)

    def is_program(self, pubkey: Pubkey) -> bool:
        return pubkey in self._programs

    # ------------------------------------------------------------------------------------------------------
    # Decoding and sanitizing

    @staticmethod
    def decode_transaction(raw: bytes) -> VersionedTransaction:
        """Parse and sanitize wire bytes; :class:`InvalidTransaction` with the node's message otherwise."""
        if len(raw) > PACKET_DATA_SIZE:
            raise InvalidTransaction(
                f"decoded solana_transaction::versioned::VersionedTransaction too large: {len(raw)} bytes "
                f"(max: {PACKET_DATA_SIZE} bytes)"
            )
        try:
            tx = VersionedTransaction.from_bytes(raw)
        except ValueError as exc:
            raise InvalidTransaction(
                f"failed to deserialize solana_transaction::versioned::VersionedTransaction: {exc}"
            ) from exc
        Chain.sanitize(tx)
        return tx

    @staticmethod
    def sanitize(tx: VersionedTransaction) -> None:
        """The node's ``sanitize_transaction``: ``invalid transaction: …`` on failure."""
        message = tx.message
        if not isinstance(message, Message | MessageV0):
            raise InvalidTransaction(f"invalid transaction: {TxError.named('UnsupportedVersion').text}")
        try:
            tx.sanitize()
        except Exception as exc:
            raise InvalidTransaction(f"invalid transaction: {TxError.named('SanitizeFailure').text}") from exc
        if isinstance(message, MessageV0) and message.address_table_lookups:
            raise InvalidTransaction(
                f"invalid transaction: {TxError.named('AddressLookupTableNotFound').text}"
            )
        keys = list(message.account_keys)
        if len(set(keys)) != len(keys):
            raise InvalidTransaction(f"invalid transaction: {TxError.named('AccountLoadedTwice').text}")
        if len(keys) > MAX_TX_ACCOUNT_LOCKS:
            raise InvalidTransaction(f"invalid transaction: {TxError.named('TooManyAccountLocks').text}")

    # ------------------------------------------------------------------------------------------------------
    # Fees

    def _budget(self, message: Message | MessageV0) -> ComputeBudget:
        keys = list(message.account_keys)
        return parse_compute_budget(
            [(keys[ix.program_id_index], bytes(ix.data)) for ix in message.instructions]
        )

    def fee_for_message(self, message: Message | MessageV0) -> int | None:
        """``getFeeForMessage``: ``5 000 × signatures`` + priority fee; ``None`` for an invalid blockhash."""
        if not self.is_blockhash_valid(message.recent_blockhash):
            return None
        try:
            budget = self._budget(message)
        except ComputeBudgetError:
            return None
        return LAMPORTS_PER_SIGNATURE * message.header.num_required_signatures + budget.prioritization_fee

    # ------------------------------------------------------------------------------------------------------
    # Processing

    def _process(self, tx: VersionedTransaction, *, check_blockhash: bool = True) -> _Outcome:
        """Steps 3-8 of the pipeline (see the module docstring); never commits."""
        message = tx.message
        assert isinstance(message, Message | MessageV0)
        signature = tx.signatures[0]
        keys, signer, writable = message_flags(message)
        pre_accounts = [self._accounts.get(k) for k in keys]
        pre_balances = tuple(0 if a is None else a.lamports for a in pre_accounts)
        data_size = sum(
            TRANSACTION_ACCOUNT_BASE_SIZE + (0 if a is None else len(a.data)) for a in pre_accounts
        )

        def refused(err: TxError) -> _Outcome:
            return _Outcome(
                ExecutionResult(signature, err, (), 0, 0, pre_balances, pre_balances, (), data_size, False)
            )

        if check_blockhash and not self.is_blockhash_valid(message.recent_blockhash):
            return refused(TxError.named("BlockhashNotFound"))
        if signature in self._records:
            return refused(TxError.named("AlreadyProcessed"))
        try:
            budget = self._budget(message)
        except ComputeBudgetError as exc:
            return refused(exc.error)
        fee = LAMPORTS_PER_SIGNATURE * message.header.num_required_signatures + budget.prioritization_fee
        payer = pre_accounts[0]
        if payer is None:
            return refused(TxError.named("AccountNotFound"))
        if payer.owner != SYSTEM_PROGRAM_ID or payer.data:
            return refused(TxError.named("InvalidAccountForFee"))
        if payer.lamports < fee:
            return refused(TxError.named("InsufficientFundsForFee"))
        paid = with_lamports(payer, payer.lamports - fee)
        if not rent_transition_allowed(rent_state(payer), rent_state(paid)):
            return refused(TxError.insufficient_funds_for_rent(0))
        fee_only: dict[Pubkey, Account | None] = {keys[0]: paid if paid.lamports else None}
        fee_balances = (paid.lamports, *pre_balances[1:])

        def failed(err: TxError, run: TransactionRun | None) -> _Outcome:
            logs = tuple(run.logs) if run else ()
            units = run.units_consumed if run else 0
            inner = _inner(run)
            result = ExecutionResult(
                signature, err, logs, fee, units, pre_balances, fee_balances, inner, data_size, True
            )
            after = {k: self._accounts.get(k) for k in keys}
            after.update(fee_only)
            return _Outcome(result, dict(fee_only), after)

        for ix in message.instructions:
            program_id = keys[ix.program_id_index]
            program_account = self._accounts.get(program_id)
            if program_account is None:
                return failed(TxError.named("ProgramAccountNotFound"), None)
            if not program_account.executable or program_id not in self._programs:
                return failed(TxError.named("InvalidProgramForExecution"), None)

        live = [live_copy(a) for a in pre_accounts]
        live[0].lamports -= fee
        run = TransactionRun(
            keys=keys,
            accounts=live,
            signer=signer,
            writable=writable,
            programs=self._programs,
            unix_timestamp=self.unix_timestamp,
            slot=self.slot,
            compute_unit_limit=budget.unit_limit,
        )
        for index, ix in enumerate(message.instructions):
            indices = list(ix.accounts)
            try:
                run.execute(
                    keys[ix.program_id_index],
                    indices,
                    {i: signer[i] for i in indices},
                    {i: writable[i] for i in indices},
                    bytes(ix.data),
                    depth=1,
                    outer_index=index,
                )
            except InstructionFailure as failure:
                return failed(TxError.instruction(index, failure.error), run)
        for i in range(len(keys)):
            if not writable[i]:
                continue
            before = paid if i == 0 else pre_accounts[i]
            if not rent_transition_allowed(rent_state(before), rent_state(live[i])):
                return failed(TxError.insufficient_funds_for_rent(i), run)
        commit = {key: live[i].freeze() for i, key in enumerate(keys) if writable[i]}
        result = ExecutionResult(
            signature,
            None,
            tuple(run.logs),
            fee,
            run.units_consumed,
            pre_balances,
            tuple(a.lamports for a in live),
            _inner(run),
            data_size,
            True,
        )
        after = {k: self._accounts.get(k) for k in keys}
        after.update(commit)
        return _Outcome(result, commit, after)

    def _commit(self, tx: VersionedTransaction, outcome: _Outcome) -> TransactionRecord:
        for key, account in outcome.commit.items():
            if account is None:
                self._accounts.pop(key, None)
            else:
                self._accounts[key] = account
        record = TransactionRecord(tx, self.slot, self.unix_timestamp, outcome.result)
        self._records[record.signature] = record
        while len(self._records) > self._history_limit:
            self._records.popitem(last=False)
        self._changed()
        return record

    def _drop(self, signature: Signature, reason: str) -> Signature:
        self.dropped.append(DroppedTransaction(signature, reason))
        return signature

    def send_transaction(self, tx: VersionedTransaction, *, skip_preflight: bool = False) -> Signature:
        """``sendTransaction``: process ``tx`` (already sanitized) and return its first signature.

        With preflight: :class:`SignatureVerificationFailure` or :class:`PreflightFailure` when it would not
        succeed, and nothing changes.  With ``skip_preflight``: a transaction that fails in execution lands
        (fee charged, status carries the error); one that cannot land is dropped (see :attr:`dropped`).
        """
        signature = tx.signatures[0]
        signatures_ok = all(tx.verify_with_results())
        if not skip_preflight and not signatures_ok:
            raise SignatureVerificationFailure("Transaction signature verification failure")
        if not signatures_ok:
            return self._drop(signature, TxError.named("SignatureFailure").text)
        outcome = self._process(tx)
        result = outcome.result
        if not skip_preflight and result.err is not None:
            raise PreflightFailure(result)
        if not result.landed:
            assert result.err is not None
            return self._drop(signature, result.err.text)
        self._commit(tx, outcome)
        return signature

    def simulate_transaction(
        self, tx: VersionedTransaction, *, sig_verify: bool = False, replace_recent_blockhash: bool = False
    ) -> Simulation:
        """``simulateTransaction``: the result of processing ``tx`` now, committing nothing."""
        if sig_verify and not all(tx.verify_with_results()):
            raise SignatureVerificationFailure("Transaction signature verification failure")
        replacement = self.latest_blockhash() if replace_recent_blockhash else None
        outcome = self._process(tx, check_blockhash=not replace_recent_blockhash)
        return Simulation(outcome.result, outcome.after, replacement)

    def request_airdrop(self, pubkey: Pubkey, lamports: int) -> Signature:
        """``requestAirdrop``: a real System transfer from the faucet, processed like any transaction."""
        if lamports <= 0:
            raise LocalnetError("airdrop needs a positive amount")
        ix = transfer(TransferParams(from_pubkey=self.faucet.pubkey(), to_pubkey=pubkey, lamports=lamports))
        blockhash = self.latest_blockhash()[0]
        # Identical airdrops in one slot would be one identical transaction (a duplicate): vary a no-op
        # compute-unit limit until the signature is new.
        for variant in range(_MAX_AIRDROP_VARIANTS):
            limit = DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT - variant
            extra = [set_compute_unit_limit(limit)] if variant else []
            message = Message.new_with_blockhash([*extra, ix], self.faucet.pubkey(), blockhash)
            tx = VersionedTransaction(message, [self.faucet])
            if tx.signatures[0] not in self._records:
                return self.send_transaction(tx, skip_preflight=True)
        raise LocalnetError("too many identical airdrops in one slot")

    # ------------------------------------------------------------------------------------------------------
    # History

    def record(self, signature: Signature) -> TransactionRecord | None:
        """The landed transaction with this (first) signature, or ``None``."""
        return self._records.get(signature)

    def records(self) -> Iterable[TransactionRecord]:
        return self._records.values()

    # ------------------------------------------------------------------------------------------------------
    # Snapshots (the server writes them to the state file)

    def snapshot(self, *, max_transactions: int | None = None) -> dict[str, Any]:
        """Everything needed to rebuild this chain, as JSON-able data (the newest ``max_transactions``)."""
        records = list(self._records.values())
        if max_transactions is not None:
            records = records[-max_transactions:] if max_transactions > 0 else []
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "genesis_seed": self._seed.hex(),
            "genesis_unix": self._genesis_unix,
            "clock_offset": self._offset,
            "last_slot": self._last_slot,
            "accounts": {str(k): _account_to_json(a) for k, a in self._accounts.items()},
            "transactions": [_record_to_json(r) for r in records],
        }

    @classmethod
    def from_snapshot(
        cls,
        data: Mapping[str, Any],
        *,
        programs: Mapping[Pubkey, ProgramVersion] | None = None,
        clock: Callable[[], float] = time.time,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
    ) -> Chain:
        """Rebuild a chain from :meth:`snapshot`; :class:`LocalnetError` when ``data`` is not one."""
        if data.get("format") != STATE_FORMAT or data.get("version") != STATE_VERSION:
            raise LocalnetError(
                f"not a localnet state (format {data.get('format')!r} version {data.get('version')!r})",
                code="localnet_state_invalid",
            )
        try:
            chain = cls(
                programs=programs,
                clock=clock,
                genesis_seed=bytes.fromhex(data["genesis_seed"]),
                history_limit=history_limit,
            )
            chain._genesis_unix = float(data["genesis_unix"])
            chain._offset = float(data["clock_offset"])
            chain._last_slot = int(data["last_slot"])
            chain._accounts = {
                Pubkey.from_string(k): _account_from_json(v) for k, v in data["accounts"].items()
            }
            chain._install_genesis_accounts()
            for item in data["transactions"]:
                record = _record_from_json(item)
                chain._records[record.signature] = record
        except (KeyError, TypeError, ValueError) as exc:
            raise LocalnetError(f"localnet state is damaged: {exc!r}", code="localnet_state_invalid") from exc
        return chain


def _inner(run: TransactionRun | None) -> tuple[tuple[int, tuple[InnerInstruction, ...]], ...]:
    if run is None:
        return ()
    return tuple((index, tuple(items)) for index, items in sorted(run.inner.items()))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _account_to_json(account: Account) -> dict[str, Any]:
    return {
        "lamports": account.lamports,
        "data": _b64(account.data),
        "owner": str(account.owner),
        "executable": account.executable,
        "rent_epoch": account.rent_epoch,
    }


def _account_from_json(data: Mapping[str, Any]) -> Account:
    return Account(
        int(data["lamports"]),
        base64.b64decode(data["data"], validate=True),
        Pubkey.from_string(data["owner"]),
        bool(data["executable"]),
        int(data["rent_epoch"]),
    )


def _record_to_json(record: TransactionRecord) -> dict[str, Any]:
    r = record.result
    return {
        "transaction": _b64(bytes(record.transaction)),
        "slot": record.slot,
        "block_time": record.block_time,
        "err": None if r.err is None else {"json": r.err.json, "text": r.err.text},
        "logs": list(r.logs),
        "fee": r.fee,
        "units_consumed": r.units_consumed,
        "pre_balances": list(r.pre_balances),
        "post_balances": list(r.post_balances),
        "inner_instructions": [
            [index, [[i.program_id_index, list(i.accounts), _b64(i.data), i.stack_height] for i in items]]
            for index, items in r.inner_instructions
        ],
        "loaded_accounts_data_size": r.loaded_accounts_data_size,
    }


def _record_from_json(data: Mapping[str, Any]) -> TransactionRecord:
    tx = VersionedTransaction.from_bytes(base64.b64decode(data["transaction"], validate=True))
    err = data["err"]
    inner: Sequence[Any] = data["inner_instructions"]
    result = ExecutionResult(
        signature=tx.signatures[0],
        err=None if err is None else TxError(err["json"], str(err["text"])),
        logs=tuple(str(line) for line in data["logs"]),
        fee=int(data["fee"]),
        units_consumed=int(data["units_consumed"]),
        pre_balances=tuple(int(b) for b in data["pre_balances"]),
        post_balances=tuple(int(b) for b in data["post_balances"]),
        inner_instructions=tuple(
            (
                int(index),
                tuple(
                    InnerInstruction(int(p), tuple(int(a) for a in accs), base64.b64decode(d), int(h))
                    for p, accs, d, h in items
                ),
            )
            for index, items in inner
        ),
        loaded_accounts_data_size=int(data["loaded_accounts_data_size"]),
        landed=True,
    )
    return TransactionRecord(tx, int(data["slot"]), int(data["block_time"]), result)
