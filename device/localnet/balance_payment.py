"""A reference model of the ``balance-payment`` Anchor program (v1 and v2), run by the stand-in.

No compiled program exists to execute (``xephy-protocol.md`` §8), so this module re-states §6.4-6.6 as an
Anchor-shaped interpreter over :class:`~device.localnet.runtime.InvokeContext`:

1. **Dispatch**: fewer than 8 bytes -> 100 ``InstructionMissing``; unknown discriminator -> 101; then the
   log ``Instruction: <Name>``; arguments that do not decode -> 102
   (:func:`device.solana.program.decode_instruction`, which -- unlike Anchor -- also refuses trailing bytes).
2. **Accounts, in declaration order** (Anchor's ``try_accounts``): too few -> 3005; ``Account<T>``:
   system-owned with 0 lamports -> 3012 ``AccountNotInitialized``, other owner -> 3007, bad discriminator /
   body -> 3001/3002/3003 (from :class:`~device.solana.program.AccountLayoutError`); ``Signer`` -> 3010;
   ``Program<System>`` -> 3008.
3. **init** accounts: seeds -> 2006, then creation through System-program CPIs exactly like Anchor
   (``create_account``, or ``transfer``+``allocate``+``assign`` when the address already holds lamports), so
   an existing account fails with the System program's ``already in use`` (custom error 0).
4. **Constraints**, field by field: seeds 2006, ``mut`` 2000, ``has_one`` 2001 (with ``Left:``/``Right:`` log
   lines), raw constraints 2003 (treasury equals the operator's, authority/bot/treasury/vault data-empty).
5. **Handler** (the business rules of §6.4), custom errors 6000+ numbered per version from
   :data:`device.solana.program.CUSTOM_ERRORS`.
6. **Exit**: changed accounts are serialized with the encoders of :mod:`device.solana.program` (a namespace
   name that does not fit the 182-byte account -> 3004); ``close`` moves the lock's lamports to the payer.

The ``recover_info`` check is the program's in-program, cofactorless Ed25519 verification
(:func:`device.localnet.ed25519.verify_cofactorless`) over the text built by
:func:`device.solana.authorization.signed_text` from the **on-chain** nonce and namespace name.

Inferred details (the program's source is not available; each is the natural reading of §6.4):
``settle`` with ``amount > lock.amount`` fails ``InsufficientFunds``; ``register``'s vault must be data-empty
(2003) and at its PDA (2006).  ``update_namespace`` (v2) and ``set_bot``/``set_treasury`` (v1) are **not
modeled**: they fail with ``InvalidInstructionData`` and a log line saying so.  Error *messages* (not numbers)
of the custom errors are derived from their names; handler errors log ``AnchorError occurred`` because the
source file/line of the real ``require!`` is unknown.  Compute units are fixed per instruction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final, Literal

from solders.pubkey import Pubkey
from solders.system_program import (
    ID as SYSTEM_PROGRAM_ID,
)
from solders.system_program import (
    AllocateParams,
    AssignParams,
    CreateAccountParams,
    TransferParams,
    allocate,
    assign,
    create_account,
    transfer,
)

from device.localnet.ed25519 import Verdict, verify_cofactorless
from device.localnet.runtime import (
    InstrError,
    InstructionFailure,
    InvokeContext,
    checked_add,
    checked_sub,
    rent_exempt_minimum,
    split_camel,
)
from device.solana.authorization import signed_message, signed_text
from device.solana.program import (
    CUSTOM_ERRORS,
    FRAMEWORK_ERRORS,
    AccountLayoutError,
    CreateNamespaceArgs,
    DepositArgs,
    GlobalAccountV1,
    GlobalAccountV2,
    InitializeArgs,
    InstructionArgs,
    InstructionDataError,
    InvalidArgument,
    LockAccountV1,
    LockAccountV2,
    LockArgs,
    NamespaceAccount,
    PayArgs,
    ProgramVersion,
    RegisterArgs,
    SettleArgs,
    UserAccount,
    WithdrawArgs,
    decode_instruction,
    error_number,
    global_pda,
    instruction_discriminator,
    lock_pda,
    namespace_pda,
    user_pda,
    vault_pda,
)

# Anchor framework error messages (the ``Error Message:`` part of an AnchorError log line).
_ANCHOR_MESSAGES: Final[dict[int, str]] = {
    100: "8 byte instruction identifier not provided",
    101: "Fallback functions are not supported",
    102: "The program could not deserialize the given instruction",
    2000: "A mut constraint was violated",
    2001: "A has one constraint was violated",
    2003: "A raw constraint was violated",
    2006: "A seeds constraint was violated",
    3001: "No 8 byte discriminator was found on the account",
    3002: "8 byte discriminator did not match what was expected",
    3003: "Failed to deserialize the account",
    3004: "Failed to serialize the account",
    3005: "Not enough account keys given to the instruction",
    3007: "The given account is owned by a different program than expected",
    3008: "Program ID was not as expected",
    3009: "Program account is not executable",
    3010: "The given account did not sign",
    3012: "The program expected this account to be already initialized",
    4101: "You cannot/should not initialize the payer account as a program account",
}
_ANCHOR_NAMES: Final[dict[int, str]] = {
    3004: "AccountDidNotSerialize",
    3008: "InvalidProgramId",
    3009: "InvalidProgramExecutable",
    4101: "TryingToInitPayerAsProgramAccount",
}

# Fixed compute-unit costs (not metered): dispatch + account checks, and the in-program Ed25519 check.
_BASE_UNITS: Final = 4_000
_UNITS: Final[dict[str, int]] = {
    "initialize": 6_000,
    "create_namespace": 9_000,
    "register": 7_000,
    "deposit": 3_000,
    "withdraw": 3_000,
    "lock": 8_000,
    "settle": 6_000,
    "pay": 5_000,
}
_ED25519_UNITS: Final = 32_000

_NOT_MODELED: Final = {
    ProgramVersion.V1: ("set_bot", "set_treasury"),
    ProgramVersion.V2: ("update_namespace",),
}

Kind = Literal["account", "init", "signer", "unchecked", "program"]
Layout = (
    type[GlobalAccountV1]
    | type[GlobalAccountV2]
    | type[NamespaceAccount]
    | type[UserAccount]
    | type[LockAccountV1]
    | type[LockAccountV2]
)


class _Accounts:
    """The validated accounts of one instruction, by field name (what ``ctx.accounts`` is in Anchor)."""

    def __init__(self, ctx: InvokeContext, fields: tuple[Field, ...], args: InstructionArgs) -> None:
        self.ctx = ctx
        self.fields = fields
        self.args = args
        self.pos = {f.name: i for i, f in enumerate(fields)}
        self.values: dict[str, Any] = {}
        self.closed: set[str] = set()

    def key(self, name: str) -> Pubkey:
        return self.ctx.key(self.pos[name])

    def value(self, name: str) -> Any:
        return self.values[name]

    def lamports(self, name: str) -> int:
        return self.ctx.lamports(self.pos[name])


SeedsFn = Callable[[Pubkey, _Accounts], Pubkey]
RawFn = Callable[[_Accounts], bool]


@dataclass(frozen=True)
class Field:
    """One field of an Anchor ``#[derive(Accounts)]`` struct, with its constraints."""

    name: str
    kind: Kind
    layout: Layout | None = None
    mut: bool = False
    seeds: SeedsFn | None = None  # the expected address (a PDA derived with device.solana.program)
    has_one: str | None = None  # field whose key must equal this account's attribute of the same name
    raw: RawFn | None = None
    close_to: str | None = None


def _empty(name: str) -> RawFn:
    return lambda a: not a.ctx.data_of(a.pos[name])


# Seeds (as expected addresses), shared by both versions.
def _global(pid: Pubkey, a: _Accounts) -> Pubkey:
    return global_pda(pid)


def _user_account(pid: Pubkey, a: _Accounts) -> Pubkey:
    return user_pda(pid, a.key("user"))


def _vault(pid: Pubkey, a: _Accounts) -> Pubkey:
    return vault_pda(pid, a.key("user"))


def _lock_at_user_nonce(pid: Pubkey, a: _Accounts) -> Pubkey:
    return lock_pda(pid, a.key("user"), a.value("user_account").nonce)


def _lock_at_arg_nonce(pid: Pubkey, a: _Accounts) -> Pubkey:
    args = a.args
    assert isinstance(args, SettleArgs)
    return lock_pda(pid, a.key("user"), args.nonce)


def _namespace_of_global_nonce(pid: Pubkey, a: _Accounts) -> Pubkey:
    return namespace_pda(pid, a.value("global_account").namespace_nonce)


def _namespace_of_arg(pid: Pubkey, a: _Accounts) -> Pubkey:
    args = a.args
    assert isinstance(args, LockArgs | PayArgs)
    return namespace_pda(pid, args.namespace_id)


def _namespace_of_lock(pid: Pubkey, a: _Accounts) -> Pubkey:
    return namespace_pda(pid, a.value("lock_account").namespace_id)


def _treasury_matches(operator: str) -> RawFn:
    return lambda a: a.key("treasury") == a.value(operator).treasury


_PAYER = Field("payer", "signer", mut=True)
_SYSTEM = Field("system_program", "program")
_USER_ACCOUNT = Field("user_account", "account", UserAccount, mut=True, seeds=_user_account)
_VAULT_MUT = Field("vault", "unchecked", mut=True, seeds=_vault)


def _fields(version: ProgramVersion, name: str) -> tuple[Field, ...]:
    v2 = version is ProgramVersion.V2
    global_layout = GlobalAccountV2 if v2 else GlobalAccountV1
    lock_layout = LockAccountV2 if v2 else LockAccountV1
    operator = (
        Field("namespace_account", "account", NamespaceAccount, seeds=_namespace_of_arg, has_one="bot")
        if v2
        else Field("global_account", "account", GlobalAccountV1, seeds=_global, has_one="bot")
    )
    operator_name = operator.name
    transfer_accounts = (
        _USER_ACCOUNT,
        Field("user", "signer", mut=True),
        _VAULT_MUT,
        _PAYER,
        _SYSTEM,
    )
    if name == "initialize":
        init = Field("global_account", "init", global_layout, seeds=_global)
        if v2:
            return (init, _PAYER, _SYSTEM)
        return (
            init,
            Field("authority", "unchecked", raw=_empty("authority")),
            Field("treasury", "unchecked", raw=_empty("treasury")),
            Field("bot", "unchecked", raw=_empty("bot")),
            _PAYER,
            _SYSTEM,
        )
    if name == "create_namespace":
        return (
            Field("global_account", "account", GlobalAccountV2, mut=True, seeds=_global),
            Field("namespace_account", "init", NamespaceAccount, seeds=_namespace_of_global_nonce),
            Field("authority", "unchecked", raw=_empty("authority")),
            Field("treasury", "unchecked", raw=_empty("treasury")),
            Field("bot", "unchecked", raw=_empty("bot")),
            _PAYER,
            _SYSTEM,
        )
    if name == "register":
        return (
            Field("user_account", "init", UserAccount, seeds=_user_account),
            Field("user", "signer"),
            Field("vault", "unchecked", seeds=_vault, raw=_empty("vault")),
            _PAYER,
            _SYSTEM,
        )
    if name in ("deposit", "withdraw"):
        return transfer_accounts
    if name == "lock":
        return (
            operator,
            _USER_ACCOUNT,
            Field("user", "unchecked", mut=True),
            Field("lock_account", "init", lock_layout, seeds=_lock_at_user_nonce),
            Field("vault", "unchecked", seeds=_vault),
            Field("bot", "signer"),
            _PAYER,
            _SYSTEM,
        )
    if name == "settle":
        settle_operator = replace(operator, seeds=_namespace_of_lock) if v2 else operator
        return (
            settle_operator,
            _USER_ACCOUNT,
            Field("user", "unchecked", mut=True),
            Field("treasury", "unchecked", mut=True, raw=_treasury_matches(operator_name)),
            Field(
                "lock_account", "account", lock_layout, mut=True, seeds=_lock_at_arg_nonce, close_to="payer"
            ),
            _VAULT_MUT,
            Field("bot", "signer"),
            _PAYER,
            _SYSTEM,
        )
    if name == "pay":
        return (
            operator,
            _USER_ACCOUNT,
            Field("user", "unchecked", mut=True),
            Field("treasury", "unchecked", mut=True, raw=_treasury_matches(operator_name)),
            _VAULT_MUT,
            Field("bot", "signer"),
            _PAYER,
            _SYSTEM,
        )
    raise AssertionError(f"no accounts for {name}")  # pragma: no cover - names come from program.py


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


class BalancePaymentModel:
    """One deployment of ``balance-payment`` (``version`` decides the layouts, rules and error numbers)."""

    logs_compute_units: ClassVar[bool] = True

    def __init__(self, version: ProgramVersion) -> None:
        self.version = version
        self._not_modeled = {instruction_discriminator(n): n for n in _NOT_MODELED[version]}

    # -- errors

    def _fail(
        self,
        ctx: InvokeContext,
        number: int,
        *,
        account: str | None = None,
        pubkeys: tuple[Pubkey, Pubkey] | None = None,
    ) -> InstructionFailure:
        """Log an AnchorError like the program does and build the failure to raise."""
        custom = CUSTOM_ERRORS[self.version].get(number) if number >= 6000 else None
        if custom is not None:
            name, message = custom.name, split_camel(custom.name)
        else:
            known = FRAMEWORK_ERRORS.get(number)
            name = known.name if known is not None else _ANCHOR_NAMES.get(number, f"Error{number}")
            message = _ANCHOR_MESSAGES.get(number, split_camel(name))
        where = f"AnchorError caused by account: {account}." if account else "AnchorError occurred."
        ctx.log(f"{where} Error Code: {name}. Error Number: {number}. Error Message: {message}.")
        if pubkeys is not None:
            ctx.log("Left:")
            ctx.log(str(pubkeys[0]))
            ctx.log("Right:")
            ctx.log(str(pubkeys[1]))
        return InstructionFailure(InstrError.custom(number))

    def _custom(self, ctx: InvokeContext, code: str) -> InstructionFailure:
        return self._fail(ctx, error_number(self.version, code))

    # -- entry point

    def process(self, ctx: InvokeContext) -> None:
        ctx.consume(_BASE_UNITS)
        data = ctx.data
        if len(data) < 8:
            raise self._fail(ctx, 100)
        skipped = self._not_modeled.get(bytes(data[:8]))
        if skipped is not None:
            ctx.log(f"Instruction: {_pascal(skipped)}")
            ctx.log(f"localnet: {skipped} is not modeled by this stand-in")
            raise InstructionFailure(InstrError.named("InvalidInstructionData"))
        try:
            args = decode_instruction(self.version, bytes(data))
        except InstructionDataError as exc:
            if exc.anchor_code == 102:
                ctx.log(f"Instruction: {_pascal(self._name_of(bytes(data[:8])))}")
            raise self._fail(ctx, exc.anchor_code) from exc
        ctx.log(f"Instruction: {_pascal(args.NAME)}")
        ctx.consume(_UNITS[args.NAME])
        accounts = self._try_accounts(ctx, args)
        handler = getattr(self, f"_handle_{args.NAME}")
        handler(accounts, args)
        self._exit(accounts)

    def _name_of(self, discriminator: bytes) -> str:
        for name in _UNITS:
            if instruction_discriminator(name) == discriminator:
                return name
        return "unknown"  # pragma: no cover - 102 only follows a known discriminator

    # -- Anchor's try_accounts: deserialize in order, then init, then constraints

    def _try_accounts(self, ctx: InvokeContext, args: InstructionArgs) -> _Accounts:
        fields = _fields(self.version, args.NAME)
        accounts = _Accounts(ctx, fields, args)
        if ctx.account_count < len(fields):
            raise self._fail(ctx, 3005)
        for pos, f in enumerate(fields):
            self._deserialize(ctx, accounts, pos, f)
        for pos, f in enumerate(fields):
            if f.kind == "init":
                self._init(ctx, accounts, pos, f)
        for pos, f in enumerate(fields):
            if f.kind != "init":
                self._constraints(ctx, accounts, pos, f)
        return accounts

    def _deserialize(self, ctx: InvokeContext, accounts: _Accounts, pos: int, f: Field) -> None:
        if f.kind == "signer" and not ctx.is_signer(pos):
            raise self._fail(ctx, 3010, account=f.name)
        if f.kind == "program":
            if ctx.key(pos) != SYSTEM_PROGRAM_ID:
                raise self._fail(ctx, 3008, account=f.name, pubkeys=(ctx.key(pos), SYSTEM_PROGRAM_ID))
            if not ctx.executable(pos):
                raise self._fail(ctx, 3009, account=f.name)
        if f.kind != "account":
            return
        assert f.layout is not None
        if ctx.owner(pos) == SYSTEM_PROGRAM_ID and ctx.lamports(pos) == 0:
            raise self._fail(ctx, 3012, account=f.name)
        if ctx.owner(pos) != ctx.program_id:
            raise self._fail(ctx, 3007, account=f.name, pubkeys=(ctx.owner(pos), ctx.program_id))
        try:
            accounts.values[f.name] = f.layout.decode(ctx.data_of(pos))
        except AccountLayoutError as exc:
            raise self._fail(ctx, exc.anchor_code, account=f.name) from exc

    def _check_seeds(self, ctx: InvokeContext, accounts: _Accounts, pos: int, f: Field) -> None:
        if f.seeds is None:
            return
        expected = f.seeds(ctx.program_id, accounts)
        if ctx.key(pos) != expected:
            raise self._fail(ctx, 2006, account=f.name, pubkeys=(ctx.key(pos), expected))

    def _init(self, ctx: InvokeContext, accounts: _Accounts, pos: int, f: Field) -> None:
        """``#[account(init, seeds = …, bump, payer = payer, space = SIZE)]``."""
        assert f.layout is not None
        self._check_seeds(ctx, accounts, pos, f)
        address = ctx.key(pos)
        payer = accounts.key("payer")
        space = f.layout.SIZE
        rent = rent_exempt_minimum(space)
        current = ctx.lamports(pos)
        if current == 0:
            ctx.invoke(
                create_account(
                    CreateAccountParams(
                        from_pubkey=payer, to_pubkey=address, lamports=rent, space=space, owner=ctx.program_id
                    )
                ),
                pda_signers=[address],
            )
        else:
            if payer == address:
                raise self._fail(ctx, 4101, account=f.name)
            required = max(rent, 1) - current
            if required > 0:
                ctx.invoke(transfer(TransferParams(from_pubkey=payer, to_pubkey=address, lamports=required)))
            ctx.invoke(allocate(AllocateParams(pubkey=address, space=space)), pda_signers=[address])
            ctx.invoke(assign(AssignParams(pubkey=address, owner=ctx.program_id)), pda_signers=[address])
        accounts.values[f.name] = None  # the handler fills it in; serialized at exit

    def _constraints(self, ctx: InvokeContext, accounts: _Accounts, pos: int, f: Field) -> None:
        self._check_seeds(ctx, accounts, pos, f)
        if f.mut and not ctx.is_writable(pos):
            raise self._fail(ctx, 2000, account=f.name)
        if f.has_one is not None:
            stored = getattr(accounts.value(f.name), f.has_one)
            given = accounts.key(f.has_one)
            if stored != given:
                raise self._fail(ctx, 2001, account=f.name, pubkeys=(stored, given))
        if f.raw is not None and not f.raw(accounts):
            raise self._fail(ctx, 2003, account=f.name)

    # -- exit: serialize what changed, close what is closed

    def _exit(self, accounts: _Accounts) -> None:
        ctx = accounts.ctx
        for pos, f in enumerate(accounts.fields):
            if f.kind not in ("account", "init"):
                continue
            if f.close_to is not None:
                self._close(ctx, pos, accounts.pos[f.close_to])
                continue
            value = accounts.values[f.name]
            try:
                encoded = value.encode()
            except InvalidArgument as exc:
                raise self._fail(ctx, 3004, account=f.name) from exc
            ctx.set_data(pos, encoded)

    @staticmethod
    def _close(ctx: InvokeContext, pos: int, destination: int) -> None:
        lamports = ctx.lamports(pos)
        ctx.set_lamports(destination, checked_add(ctx.lamports(destination), lamports, ctx, "close"))
        ctx.set_lamports(pos, 0)
        ctx.set_data(pos, b"")
        ctx.set_owner(pos, SYSTEM_PROGRAM_ID)

    # -- helpers the handlers share

    def _vault_transfer(self, a: _Accounts, destination: str, amount: int) -> None:
        """Vault -> ``destination``, a System transfer signed by the vault PDA."""
        vault = a.key("vault")
        a.ctx.invoke(
            transfer(TransferParams(from_pubkey=vault, to_pubkey=a.key(destination), lamports=amount)),
            pda_signers=[vault],
        )

    def _available(self, a: _Accounts) -> int:
        return checked_sub(
            a.lamports("vault"), a.value("user_account").locked_amount, a.ctx, "vault - locked"
        )

    def _verify(self, a: _Accounts, namespace_id: int, recover_info: Any) -> None:
        """``ED25519RecoverInfo::verify``: format, signature, then deadline (§6.6)."""
        ctx = a.ctx
        ctx.consume(_ED25519_UNITS)
        user_account = a.value("user_account")
        if self.version is ProgramVersion.V2:
            name: str | None = a.value("namespace_account").name
        else:
            name = None
        msg = signed_message(
            self.version,
            extra_data=recover_info.extra_data,
            nonce=user_account.nonce,
            deadline=recover_info.deadline,
            namespace_id=namespace_id,
        )
        text = signed_text(self.version, msg, namespace_name=name)
        verdict = verify_cofactorless(bytes(a.key("user")), recover_info.signature, text)
        if verdict is Verdict.FORMAT_INVALID:
            raise self._custom(ctx, "signature_format_invalid")
        if verdict is Verdict.MISMATCH:
            raise self._custom(ctx, "signature_mismatch")
        if ctx.unix_timestamp > recover_info.deadline:
            raise self._custom(ctx, "signature_expired")

    # -- handlers (§6.4)

    def _handle_initialize(self, a: _Accounts, args: InitializeArgs) -> None:
        if self.version is ProgramVersion.V2:
            a.values["global_account"] = GlobalAccountV2(namespace_nonce=0)
        else:
            a.values["global_account"] = GlobalAccountV1(
                authority=a.key("authority"), bot=a.key("bot"), treasury=a.key("treasury")
            )

    def _handle_create_namespace(self, a: _Accounts, args: CreateNamespaceArgs) -> None:
        ctx = a.ctx
        if len(args.name.encode("utf-8")) < 3:
            raise self._custom(ctx, "name_too_short")
        global_account = a.value("global_account")
        now = ctx.unix_timestamp
        a.values["namespace_account"] = NamespaceAccount(
            id=global_account.namespace_nonce,
            name=args.name,
            authority=a.key("authority"),
            bot=a.key("bot"),
            treasury=a.key("treasury"),
            created_at=now,
            updated_at=now,
        )
        a.values["global_account"] = replace(
            global_account,
            namespace_nonce=checked_add(global_account.namespace_nonce, 1, ctx, "namespace_nonce"),
        )

    def _handle_register(self, a: _Accounts, args: RegisterArgs) -> None:
        a.values["user_account"] = UserAccount(nonce=0, locked_amount=0, vault=a.key("vault"))

    def _handle_deposit(self, a: _Accounts, args: DepositArgs) -> None:
        a.ctx.invoke(
            transfer(
                TransferParams(from_pubkey=a.key("user"), to_pubkey=a.key("vault"), lamports=args.amount)
            )
        )

    def _handle_withdraw(self, a: _Accounts, args: WithdrawArgs) -> None:
        if self._available(a) < args.amount:
            raise self._custom(a.ctx, "insufficient_funds")
        self._vault_transfer(a, "user", args.amount)

    def _handle_lock(self, a: _Accounts, args: LockArgs) -> None:
        ctx = a.ctx
        self._verify(a, args.namespace_id, args.recover_info)
        if self._available(a) < args.amount:
            raise self._custom(ctx, "insufficient_funds")
        user_account = a.value("user_account")
        a.values["user_account"] = replace(
            user_account,
            nonce=checked_add(user_account.nonce, 1, ctx, "nonce"),
            locked_amount=checked_add(user_account.locked_amount, args.amount, ctx, "locked_amount"),
        )
        if self.version is ProgramVersion.V2:
            a.values["lock_account"] = LockAccountV2(namespace_id=args.namespace_id, amount=args.amount)
        else:
            a.values["lock_account"] = LockAccountV1(amount=args.amount)

    def _handle_settle(self, a: _Accounts, args: SettleArgs) -> None:
        ctx = a.ctx
        lock = a.value("lock_account")
        if lock.amount < args.amount:
            raise self._custom(ctx, "insufficient_funds")
        user_account = a.value("user_account")
        a.values["user_account"] = replace(
            user_account,
            locked_amount=checked_sub(user_account.locked_amount, lock.amount, ctx, "locked_amount"),
        )
        self._vault_transfer(a, "treasury", args.amount)

    def _handle_pay(self, a: _Accounts, args: PayArgs) -> None:
        ctx = a.ctx
        self._verify(a, args.namespace_id, args.recover_info)
        if self._available(a) < args.amount:
            raise self._custom(ctx, "insufficient_funds")
        self._vault_transfer(a, "treasury", args.amount)
        user_account = a.value("user_account")
        a.values["user_account"] = replace(
            user_account, nonce=checked_add(user_account.nonce, 1, ctx, "nonce")
        )
