"""``xephy-device user …``: what a person needs to pay a device without the dApp.

Solana CLI conventions (:mod:`device.wallet.solana_cli`): amounts are SOL (``user airdrop 2``),
lamports with ``--lamports``; a user keypair in the Solana CLI format (a JSON array of 64 integers)
signs everything: ``-k/--keypair``, else ``keypair_path`` of ``~/.config/solana/cli/config.yml``, else
:data:`device.keys.DEFAULT_KEYPAIR`.  The RPC URL: ``-u/--url`` (a URL or a moniker: ``localhost``,
``devnet``, ``testnet``, ``mainnet-beta``, or ``l d t m``), else ``solana.rpc_url`` of the configuration
unless it is ``embedded``, else the running agent's (``endpoints.json``), else ``json_rpc_url`` of the
Solana CLI config.  The program version, id and namespace come from ``solana.*``.  Nostr keys on flags
are hex or ``npub1…``; relays are URLs or bare hosts (``relay.damus.io`` means ``wss://``).

========================  ===========================================================================
``user keygen``           create a new keypair file (mode 0600); never overwrites one
``user airdrop N``        ask the RPC for N SOL -- only when it is a local stand-in (``getVersion``'s
                          ``solana-core`` contains ``localnet``)
``user register``         create the user's ``UserAccount`` (idempotent: says so if it exists)
``user deposit N``        move N SOL from the wallet into the vault
``user withdraw N``       move N available SOL from the vault back to the wallet
``user balance``          wallet, vault, locked, available lamports, the next nonce and the device-side
                          token balance from the device's Transaction events and your open sessions
                          (``--json``)
``user sign``             print a ``recover_info`` authorizing one payment, bound to a machine and amount
``user recharge``         sign, publish a Request like the dApp, wait for the device's grant or refusal
                          (``--session``: require a pay-as-you-go session: lock now, pay by use)
``user stop``             end your open pay-as-you-go session; prints locked / settled / returned lamports
``user token``            print a chat bearer token (an OpenAI client's ``api_key``) for one device
========================  ===========================================================================

``user sign`` prints ``{"signature":[…],"extra_data":[…],"deadline":N}`` (``payload`` instead of
``extra_data`` for program v1) -- the exact text a Request payload's ``recover_info`` carries -- or, with
``--payload``, the whole Request payload, signed by :mod:`device.wallet.signing` (bound to ``--machine``
and ``--amount``).  ``--nonce`` (and, v2, ``--namespace-name``) sign without asking the chain.

Failures print one line ``xephy-device: <code>: <message>`` and exit 1 (see ``docs/errors.md``);
impossible arguments (``--ttl`` above what the device accepts, a tenth decimal of SOL) exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from device.chat.auth import TOKEN_LIFETIME_SECONDS, issue_token
from device.chat.client import ChatClient, ChatClientError
from device.commands.arguments import (
    add_amount_argument,
    add_lamports_flag,
    amount_lamports,
    chat_socket,
    keypair_option,
    machine_pubkey,
    nonce,
    nostr_pubkey,
    relay_url,
    rpc_url,
    sol_amount,
    ttl_seconds,
)
from device.config import Config
from device.endpoints import Endpoints
from device.errors import DeviceError, UsageError
from device.keys import create_keypair_file, load_keypair
from device.solana import program as prog
from device.solana.client import ChainClient, TxOutcome, UserBalance
from device.solana.program import ProgramVersion
from device.wallet.signing import AUTHORIZATION_VALIDITY_SECONDS, sign_payload
from device.wallet.solana_cli import format_sol, read_cli_config, user_keypair_path

if TYPE_CHECKING:
    from device.wallet.recharge import RechargeTarget
    from device.wallet.sessions import OpenSession

#: The fee of a one-signature transaction at the default fee rate.
SIGNATURE_FEE_LAMPORTS: Final = 5000


class UserCommandError(DeviceError):
    """A user command cannot proceed; ``code`` says why."""

    code = "user_command_failed"


# ----------------------------------------------------------------------------------------------------------
# Chain access


def _rpc_url(args: argparse.Namespace, config: Config) -> str:
    """``-u``, else a configured ``solana.rpc_url``, else the running agent's, else the Solana CLI's."""
    if args.rpc_url:
        return str(args.rpc_url)
    if config.solana.rpc_url != "embedded":
        return config.solana.rpc_url
    try:
        return Endpoints.read(config.device.state_dir).rpc_url
    except DeviceError as exc:
        from_cli = read_cli_config(Path.home()).json_rpc_url
        if from_cli is not None:
            return from_cli
        raise UserCommandError(
            "solana.rpc_url is 'embedded' (the agent's in-process chain), no running agent was found "
            f"({exc.message}) and ~/.config/solana/cli/config.yml names no json_rpc_url; start "
            "`xephy-device run` or pass -u URL_OR_MONIKER",
            code="rpc_url_required",
        ) from exc


def _user_keypair(args: argparse.Namespace) -> Keypair:
    return load_keypair(user_keypair_path(args.keypair, Path.home()))


def _amount(args: argparse.Namespace, name: str = "AMOUNT") -> int:
    """The command's amount in lamports (typed in SOL, or lamports with ``--lamports``)."""
    return amount_lamports(args.amount, in_lamports=args.lamports, name=name)


def _both(lamports: int) -> str:
    return f"{format_sol(lamports)} ({lamports} lamports)"


def _client(args: argparse.Namespace, config: Config) -> ChainClient:
    return ChainClient(
        _rpc_url(args, config),
        program=config.solana.program_ref,
        namespace_id=config.solana.namespace_id,
        commitment=config.solana.commitment,
        confirm_timeout=float(config.solana.confirm_timeout_seconds),
        poll_interval=0.25,
    )


def _run(args: argparse.Namespace, config: Config, body: Callable[[ChainClient], Awaitable[int]]) -> int:
    async def main() -> int:
        async with _client(args, config) as client:
            return await body(client)

    return asyncio.run(main())


def _landed(outcome: TxOutcome) -> str:
    if outcome.error is not None:
        raise outcome.error
    return outcome.signature


def _require_registered(balance: UserBalance, user: Pubkey) -> None:
    if not balance.registered:
        raise UserCommandError(
            f"user {user} is not registered; run `xephy-device user register` first",
            code="account_not_initialized",
        )


# ----------------------------------------------------------------------------------------------------------
# Handlers


def cmd_user_keygen(args: argparse.Namespace, config: Config) -> int:
    """Create a new user keypair file."""
    keypair = Keypair()
    path = create_keypair_file(args.keypair, keypair)
    print(f"wrote   {path}")
    print(f"pubkey  {keypair.pubkey()}")
    return 0


def cmd_user_airdrop(args: argparse.Namespace, config: Config) -> int:
    """Airdrop SOL to the user's wallet -- local stand-in only."""
    amount = _amount(args)
    keypair = _user_keypair(args)

    async def body(client: ChainClient) -> int:
        version = await client.node_version()
        if "localnet" not in version.lower():
            raise UserCommandError(
                f"{client.rpc_url} is not a local stand-in (solana-core {version!r}); airdrops are only "
                "requested from a localnet",
                code="airdrop_refused",
            )
        signature = _landed(await client.request_airdrop(keypair.pubkey(), amount))
        wallet = await client.wallet_balance(keypair.pubkey())
        print(f"airdropped {_both(amount)} to {keypair.pubkey()} ({signature})")
        print(f"wallet     {wallet} lamports ({format_sol(wallet)})")
        return 0

    return _run(args, config, body)


def cmd_user_register(args: argparse.Namespace, config: Config) -> int:
    """Create the user's account in the program (user = fee payer)."""
    keypair = _user_keypair(args)
    user = keypair.pubkey()

    async def body(client: ChainClient) -> int:
        pid = client.program.program_id
        if (await client.balance(user)).registered:
            print(f"already registered: {user} (user account {prog.user_pda(pid, user)})")
            return 0
        ix = prog.register(client.program, user=user, payer=user)
        signature = _landed(await client.send_and_confirm([ix], [keypair]))
        print(f"registered {user} ({signature})")
        print(f"user account {prog.user_pda(pid, user)}")
        print(f"vault        {prog.vault_pda(pid, user)}")
        return 0

    return _run(args, config, body)


async def _send_and_report(client: ChainClient, ix: Instruction, keypair: Keypair, done: str) -> int:
    """Send one vault instruction, then print ``done`` with its signature and the balances after it."""
    signature = _landed(await client.send_and_confirm([ix], [keypair]))
    print(f"{done} ({signature})")
    _print_balance(keypair.pubkey(), await client.balance(keypair.pubkey()))
    return 0


def cmd_user_deposit(args: argparse.Namespace, config: Config) -> int:
    """Move lamports from the wallet into the vault."""
    keypair = _user_keypair(args)
    user = keypair.pubkey()
    amount = _amount(args)

    async def body(client: ChainClient) -> int:
        balance = await client.balance(user)
        _require_registered(balance, user)
        if balance.wallet_lamports < amount + SIGNATURE_FEE_LAMPORTS:
            raise UserCommandError(
                f"wallet {user} has {balance.wallet_lamports} lamports; depositing {amount} needs "
                f"{amount + SIGNATURE_FEE_LAMPORTS} with the fee",
                code="insufficient_funds",
            )
        rent = await client.rent_exempt_minimum()
        if balance.vault_lamports + amount < rent:
            raise UserCommandError(
                f"the vault must hold at least {rent} lamports (rent-exempt minimum); deposit at least "
                f"{rent - balance.vault_lamports}",
                code="insufficient_funds_for_rent",
            )
        ix = prog.deposit(client.program, user=user, payer=user, amount=amount)
        return await _send_and_report(client, ix, keypair, f"deposited {_both(amount)}")

    return _run(args, config, body)


def cmd_user_withdraw(args: argparse.Namespace, config: Config) -> int:
    """Move available lamports from the vault back to the wallet."""
    keypair = _user_keypair(args)
    user = keypair.pubkey()
    amount = _amount(args)

    async def body(client: ChainClient) -> int:
        balance = await client.balance(user)
        _require_registered(balance, user)
        if balance.available < amount:
            raise UserCommandError(
                f"the vault has {balance.available} lamports available "
                f"({balance.vault_lamports} held, {balance.locked_lamports} locked); "
                f"cannot withdraw {amount}",
                code="insufficient_funds",
            )
        rent = await client.rent_exempt_minimum()
        remaining = balance.vault_lamports - amount
        if 0 < remaining < rent:
            raise UserCommandError(
                f"withdrawing {amount} would leave {remaining} lamports in the vault, below the rent-exempt "
                f"minimum {rent}; withdraw at most {balance.vault_lamports - rent} or all "
                f"{balance.vault_lamports}",
                code="insufficient_funds_for_rent",
            )
        ix = prog.withdraw(client.program, user=user, payer=user, amount=amount)
        return await _send_and_report(client, ix, keypair, f"withdrew {_both(amount)}")

    return _run(args, config, body)


def _balance_dict(user: Pubkey, balance: UserBalance) -> dict[str, Any]:
    return {
        "user": str(user),
        "registered": balance.registered,
        "wallet_lamports": balance.wallet_lamports,
        "vault_lamports": balance.vault_lamports,
        "locked_lamports": balance.locked_lamports,
        "available_lamports": balance.available,
        "nonce": balance.nonce,
    }


def _print_balance(user: Pubkey, balance: UserBalance) -> None:
    print(f"user       {user}{'' if balance.registered else '  (not registered)'}")
    print(f"wallet     {balance.wallet_lamports} lamports ({format_sol(balance.wallet_lamports)})")
    print(f"vault      {balance.vault_lamports} lamports ({format_sol(balance.vault_lamports)})")
    print(f"locked     {balance.locked_lamports} lamports")
    print(f"available  {balance.available} lamports ({format_sol(balance.available)})")
    print(f"nonce      {balance.nonce}")


async def _device_tokens(args: argparse.Namespace, config: Config, user: Pubkey) -> tuple[int | None, str]:
    """The user's token balance as the device's Transaction events say (None and why, if unknown)."""
    try:
        target = _recharge_target(args, config)
        from device.wallet.transaction_feed import fetch_transactions, token_total  # Nostr: only now

        records = await fetch_transactions(
            target.relays,
            authors=[target.device_pubkey, *config.nostr.trusted_authors],
            session=target.session,
            machine=target.machine_pubkey,
            user=str(user),
        )
    except DeviceError as exc:
        return None, str(exc)
    return token_total(records), f"{len(records)} Transaction events"


async def _open_sessions(args: argparse.Namespace, config: Config, user: Pubkey) -> list[OpenSession] | None:
    """The user's open pay-as-you-go sessions on the device (None when its relays cannot be read)."""
    try:
        target = _recharge_target(args, config)
    except DeviceError:
        return None
    from device.wallet.sessions import fetch_open_sessions  # Nostr: only once there is somewhere to ask

    try:
        return await fetch_open_sessions(target, str(user))
    except DeviceError:
        return None


def cmd_user_balance(args: argparse.Namespace, config: Config) -> int:
    """Print wallet, vault, locked, available, the next nonce and the device-side token balance."""
    user = _user_keypair(args).pubkey()

    async def body(client: ChainClient) -> int:
        balance = await client.balance(user)
        tokens, source = await _device_tokens(args, config, user)
        sessions = await _open_sessions(args, config, user)
        if args.json:
            rows = None
            if sessions is not None:
                from device.wallet.sessions import describe_sessions  # loaded with the sessions

                rows = describe_sessions(sessions)
            print(json.dumps({**_balance_dict(user, balance), "tokens": tokens, "open_sessions": rows}))
        else:
            _print_balance(user, balance)
            shown = f"{tokens:,}" if tokens is not None else "unknown"
            print(f"tokens     {shown} ({source})")
            for opened in sessions or ():
                print(
                    f"session    {opened.request_id} open: {opened.locked_lamports} lamports locked, budget "
                    f"{opened.budget_tokens:,} tokens (`xephy-device user stop` settles what you used)"
                )
            if sessions is None:
                print("sessions   unknown (the device's relays cannot be read)")
        return 0

    return _run(args, config, body)


async def _chain_facts(
    client: ChainClient,
    user: Pubkey,
    version: ProgramVersion,
    amount: int,
    nonce: int | None,
    name: str | None,
) -> tuple[int, str | None]:
    """The nonce and (v2) namespace name to sign with, read from the chain where not given."""
    balance = await client.balance(user)
    _require_registered(balance, user)
    if nonce is None:
        nonce = balance.nonce
    if version is ProgramVersion.V2 and name is None:
        name = (await client.namespace()).name
    if balance.available < amount:
        print(
            f"warning: the vault has {balance.available} lamports available, less than "
            f"{amount}; deposit before the device charges",
            file=sys.stderr,
        )
    return nonce, name


def cmd_user_sign(args: argparse.Namespace, config: Config) -> int:
    """Print a recover_info authorizing one payment of ``--amount`` to ``--machine``."""
    keypair = _user_keypair(args)
    user = keypair.pubkey()
    version = config.solana.program
    if version is ProgramVersion.V1 and args.namespace_name is not None:
        raise UserCommandError(
            "program v1 signs with a fixed prefix; --namespace-name is for v2", code="argument_invalid"
        )
    amount = _amount(args, "--amount")
    nonce: int | None = args.nonce
    name: str | None = args.namespace_name
    offline = nonce is not None and (version is ProgramVersion.V1 or name is not None)

    if not offline:

        async def body(client: ChainClient) -> int:
            nonlocal nonce, name
            nonce, name = await _chain_facts(client, user, version, amount, nonce, name)
            return 0

        _run(args, config, body)
    assert nonce is not None
    signed = sign_payload(
        keypair,
        config,
        machine=args.machine,
        amount=amount,
        ttl=args.ttl,
        nonce=nonce,
        namespace_name=name,
    )
    print(signed.text if args.payload else signed.recover_info)
    print(
        f"signed: user {user}, nonce {nonce}, machine {args.machine.hex()}, amount {_both(amount)}, "
        f"valid until {signed.deadline} ({args.ttl} s)",
        file=sys.stderr,
    )
    return 0


def _recharge_target(args: argparse.Namespace, config: Config) -> RechargeTarget:
    """Relays, machine and device key: flags, then the config, then the running agent's endpoints.json."""
    relays: tuple[str, ...] = tuple(args.relay or ())
    machine: str | None = args.machine.hex() if args.machine is not None else config.nostr.machine_pubkey
    device: str | None = args.device_pubkey
    if not relays and "embedded" not in config.nostr.relays:
        relays = config.nostr.relays
    if not relays or machine is None or device is None:
        try:
            endpoints = Endpoints.read(config.device.state_dir)
        except DeviceError as exc:
            raise UserCommandError(
                f"{exc.message}; or pass --relay URL --machine HEX --device-pubkey HEX", code=exc.code
            ) from exc
        relays = relays or endpoints.relays
        machine = machine or endpoints.machine_pubkey
        device = device or endpoints.device_pubkey
    from device.wallet.recharge import RechargeTarget  # Nostr: only once there is somewhere to ask

    return RechargeTarget(relays, config.nostr.session, machine, device or machine)


def cmd_user_recharge(args: argparse.Namespace, config: Config) -> int:
    """Sign a bound authorization, publish the Request, wait for the grant."""
    from device.wallet.recharge import describe, recharge

    keypair = _user_keypair(args)
    target = _recharge_target(args, config)
    amount = config.pricing.recharge_lamports if args.amount is None else _amount(args, "--amount")
    version = config.solana.program
    if args.session and _device_pricing_mode(config) != "session":
        raise UserCommandError(
            "the device charges prepaid (pricing.mode: prepaid): a recharge pays the whole amount at once; "
            "run it with pricing.mode: session for pay-as-you-go, or recharge without --session",
            code="session_unsupported",
        )

    async def body(client: ChainClient) -> int:
        nonce, name = await _chain_facts(client, keypair.pubkey(), version, amount, None, None)
        signed = sign_payload(
            keypair,
            config,
            machine=bytes.fromhex(target.machine_pubkey),
            amount=amount,
            ttl=args.ttl,
            nonce=nonce,
            namespace_name=name,
        )
        print(f"requesting {_both(amount)} of tokens from machine {target.machine_pubkey} (nonce {nonce})")
        result = await recharge(signed.text, target, wait_seconds=args.timeout)
        print(
            f"granted {result.tokens:,} tokens "
            f"(request {result.request_id}, transaction {result.transaction_id})"
        )
        if result.session is not None:
            print(
                f"session open: {result.session.get('locked_lamports')} lamports locked in your vault "
                "(not paid); when it ends you pay ceil(tokens used / tokens per lamport) and the rest is "
                "unlocked; `xephy-device user stop` ends it now"
            )
        if args.json:
            print(describe(result))
        return 0

    return _run(args, config, body)


def _device_pricing_mode(config: Config) -> str:
    """``pricing.mode`` of the running agent (its endpoints.json), else of this configuration."""
    try:
        return Endpoints.read(config.device.state_dir).pricing_mode
    except DeviceError:
        return config.pricing.mode


def cmd_user_stop(args: argparse.Namespace, config: Config) -> int:
    """End the user's open pay-as-you-go session and print what was settled and returned."""
    from device.wallet.sessions import fetch_open_sessions, stop_session

    user = load_keypair(args.keypair).pubkey()
    target = _recharge_target(args, config)

    async def main() -> int:
        sessions = await fetch_open_sessions(target, str(user))
        chosen = [s for s in sessions if args.request in (None, s.request_id)]
        if not chosen:
            which = f" {args.request}" if args.request else ""
            raise UserCommandError(
                f"no open session{which} of {user} on machine {target.machine_pubkey}",
                code="session_not_found",
            )
        summary = await stop_session(chosen[-1], target, wait_seconds=args.timeout)
        if args.json:
            print(json.dumps({"request": chosen[-1].request_id, **summary}))
        else:
            print(f"session {chosen[-1].request_id} ended ({summary.get('reason')})")
            print(f"tokens used  {summary.get('tokens_used')}")
            print(f"locked       {summary.get('locked_lamports')} lamports")
            print(f"settled      {summary.get('settled_lamports')} lamports (paid to the operator)")
            print(f"returned     {summary.get('returned_lamports')} lamports (unlocked in your vault)")
        return 0

    return asyncio.run(main())


def cmd_user_token(args: argparse.Namespace, config: Config) -> int:
    """Print a chat bearer token for this user and machine."""
    limit = config.chat.token_max_ttl_seconds
    if args.ttl > limit:
        raise UsageError(
            f"--ttl {args.ttl}: the device accepts tokens valid at most {limit} s "
            "(chat.token_max_ttl_seconds); use a shorter --ttl",
            code="argument_invalid",
        )
    machine: str | None = args.machine or config.nostr.machine_pubkey
    if machine is None:
        try:
            machine = str(ChatClient(chat_socket(args, config)).health()["machine"])
        except ChatClientError as exc:
            raise ChatClientError(
                f"pass --machine (the device's Nostr pubkey): cannot ask the chat socket: {exc.message}",
                code=exc.code,
            ) from exc
    keypair = _user_keypair(args)
    print(issue_token(keypair, machine, ttl_seconds=args.ttl))
    print(f"token for user {keypair.pubkey()} at machine {machine}, valid {args.ttl} s", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------------------------------------
# Parser


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """Every ``user ACTION``; ``common`` carries ``--config``."""
    keypair_opt = keypair_option()
    rpc_opt = argparse.ArgumentParser(add_help=False)
    rpc_opt.add_argument(
        "-u",
        "--url",
        "--rpc-url",
        dest="rpc_url",
        type=rpc_url,
        default=None,
        metavar="URL_OR_MONIKER",
        help="Solana JSON-RPC URL or moniker: mainnet-beta, testnet, devnet, localhost (or m, t, d, l); "
        "default: solana.rpc_url, the running agent's, else json_rpc_url of ~/.config/solana/cli/config.yml",
    )
    device_opt = argparse.ArgumentParser(add_help=False)
    device_opt.add_argument(
        "--relay", action="append", type=relay_url, metavar="URL", help="relay URL or host (repeatable)"
    )
    device_opt.add_argument(
        "--machine", type=machine_pubkey, default=None, metavar="NPUB|HEX", help="machine pubkey"
    )
    device_opt.add_argument(
        "--device-pubkey",
        type=nostr_pubkey,
        default=None,
        metavar="NPUB|HEX",
        help="the device's Nostr key whose events to trust",
    )
    offline = [common, keypair_opt]
    online = [common, keypair_opt, rpc_opt]

    actions = parser.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    token = actions.add_parser(
        "token",
        parents=offline,
        help="print a chat bearer token (an OpenAI client's api_key) for this device",
        description="Sign a bearer token proving you own the keypair whose tokens a chat spends.",
    )
    token.add_argument(
        "--machine",
        type=nostr_pubkey,
        default=None,
        metavar="NPUB|HEX",
        help="the device's Nostr pubkey (default: ask the socket)",
    )
    token.add_argument("--socket", type=Path, default=None, metavar="PATH", help="chat socket to ask")
    token.add_argument(
        "--ttl",
        type=ttl_seconds,
        default=TOKEN_LIFETIME_SECONDS,
        metavar="SECONDS",
        help=f"validity from now (default {TOKEN_LIFETIME_SECONDS}; at most chat.token_max_ttl_seconds)",
    )
    token.set_defaults(handler=cmd_user_token)

    actions.add_parser(
        "keygen", parents=offline, help="create a new user keypair file (mode 0600; never overwrites)"
    ).set_defaults(handler=cmd_user_keygen)

    airdrop = actions.add_parser("airdrop", parents=online, help="request SOL from a localnet stand-in")
    airdrop.add_argument(
        "amount", type=sol_amount, metavar="AMOUNT", help="in SOL (lamports with --lamports)"
    )
    add_lamports_flag(airdrop)
    airdrop.set_defaults(handler=cmd_user_airdrop)

    actions.add_parser(
        "register", parents=online, help="create the user's account in the program"
    ).set_defaults(handler=cmd_user_register)

    deposit = actions.add_parser("deposit", parents=online, help="move SOL from the wallet into the vault")
    deposit.add_argument(
        "amount", type=sol_amount, metavar="AMOUNT", help="in SOL (lamports with --lamports)"
    )
    add_lamports_flag(deposit)
    deposit.set_defaults(handler=cmd_user_deposit)

    withdraw = actions.add_parser("withdraw", parents=online, help="move available SOL back to the wallet")
    add_amount_argument(withdraw)
    withdraw.set_defaults(handler=cmd_user_withdraw)

    balance = actions.add_parser(
        "balance",
        parents=[*online, device_opt],
        help="wallet, vault, locked and available lamports, next nonce",
    )
    balance.add_argument("--json", action="store_true", help="print one JSON object")
    balance.set_defaults(handler=cmd_user_balance)

    sign = actions.add_parser(
        "sign",
        parents=online,
        help="print a recover_info authorizing one payment to one machine",
        description="Print the recover_info JSON for a Request payload, bound to --machine and --amount.",
    )
    sign.add_argument(
        "--machine",
        type=machine_pubkey,
        required=True,
        metavar="NPUB|HEX",
        help="the machine's Nostr pubkey (npub1… or 64 hex)",
    )
    sign.add_argument(
        "--amount",
        type=sol_amount,
        required=True,
        metavar="AMOUNT",
        help="most the device may charge, in SOL (lamports with --lamports)",
    )
    add_lamports_flag(sign)
    sign.add_argument(
        "--ttl",
        type=ttl_seconds,
        default=AUTHORIZATION_VALIDITY_SECONDS,
        metavar="SECONDS",
        help=f"validity from now (default {AUTHORIZATION_VALIDITY_SECONDS})",
    )
    sign.add_argument(
        "--nonce", type=nonce, default=None, metavar="N", help="sign for nonce N (default: read from chain)"
    )
    sign.add_argument(
        "--namespace-name",
        default=None,
        metavar="NAME",
        help="v2: the namespace name as stored on chain (default: read from chain)",
    )
    sign.add_argument(
        "--payload", action="store_true", help="print the whole Request payload (user, nonce, recover_info)"
    )
    sign.set_defaults(handler=cmd_user_sign)

    recharge_cmd = actions.add_parser(
        "recharge",
        parents=[*online, device_opt],
        help="pay the device for tokens: sign, publish a Request, wait for the grant",
        description="Sign a bound authorization, publish a Request like the XePHY dApp, wait for the grant.",
    )
    recharge_cmd.add_argument(
        "--amount",
        type=sol_amount,
        default=None,
        metavar="AMOUNT",
        help="in SOL (lamports with --lamports); default: pricing.recharge_lamports",
    )
    add_lamports_flag(recharge_cmd)
    recharge_cmd.add_argument(
        "--ttl",
        type=ttl_seconds,
        default=AUTHORIZATION_VALIDITY_SECONDS,
        metavar="SECONDS",
        help="authorization validity",
    )
    recharge_cmd.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="wait this long")
    recharge_cmd.add_argument(
        "--session",
        action="store_true",
        help="require a pay-as-you-go session (lock now, pay only what you use); refused by a prepaid device",
    )
    recharge_cmd.add_argument("--json", action="store_true", help="also print one JSON line")
    recharge_cmd.set_defaults(handler=cmd_user_recharge)

    stop = actions.add_parser(
        "stop",
        parents=[common, keypair_opt, device_opt],
        help="end your pay-as-you-go session: pay what you used, unlock the rest",
        description="Publish Request{Available, UserRequest} for your open session; wait for its settlement.",
    )
    stop.add_argument(
        "--request", default=None, metavar="ID", help="the session's Request id (default: your open session)"
    )
    stop.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="wait this long")
    stop.add_argument("--json", action="store_true", help="print one JSON object")
    stop.set_defaults(handler=cmd_user_stop)
