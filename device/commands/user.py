"""``xephy-device user …``: what a person needs to pay a device without the dApp.

A user keypair in the Solana CLI format (a JSON array of 64 integers; ``--keypair``, default
:data:`device.keys.DEFAULT_KEYPAIR`) signs everything; the RPC URL comes from ``solana.rpc_url`` of the
configuration or ``--rpc-url``.  The program version, id and namespace come from ``solana.*``.

========================  ===========================================================================
``user keygen``           create a new keypair file (mode 0600); never overwrites one
``user airdrop N``        ask the RPC for N lamports -- only when it is a local stand-in (``getVersion``'s
                          ``solana-core`` contains ``localnet``)
``user register``         create the user's ``UserAccount`` (idempotent: says so if it exists)
``user deposit N``        move N lamports from the wallet into the vault
``user withdraw N``       move N available lamports from the vault back to the wallet
``user balance``          wallet, vault, locked, available lamports, the next nonce, the device-side
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

Failures print one line ``xephy-device: <code>: <message>`` and exit 1 (see ``docs/errors.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from device.chat.auth import TOKEN_LIFETIME_SECONDS, issue_token
from device.chat.client import ChatClient, ChatClientError
from device.commands.arguments import (
    chat_socket,
    keypair_option,
    lamports,
    machine_pubkey,
    nonce,
    ttl_seconds,
)
from device.config import Config
from device.endpoints import Endpoints
from device.errors import DeviceError
from device.keys import create_keypair_file, load_keypair
from device.solana import program as prog
from device.solana.client import ChainClient, TxOutcome, UserBalance
from device.solana.program import ProgramVersion
from device.wallet.recharge import RechargeTarget, describe, recharge
from device.wallet.sessions import OpenSession, describe_sessions, fetch_open_sessions, stop_session
from device.wallet.signing import AUTHORIZATION_VALIDITY_SECONDS, sign_payload
from device.wallet.transaction_feed import fetch_transactions

#: The fee of a one-signature transaction at the default fee rate.
SIGNATURE_FEE_LAMPORTS: Final = 5000
LAMPORTS_PER_SOL: Final = 1_000_000_000


class UserCommandError(DeviceError):
    """A user command cannot proceed; ``code`` says why."""

    code = "user_command_failed"


# ----------------------------------------------------------------------------------------------------------
# Chain access


def _rpc_url(args: argparse.Namespace, config: Config) -> str:
    url: str = args.rpc_url or config.solana.rpc_url
    if url == "embedded":
        try:
            url = Endpoints.read(config.device.state_dir).rpc_url
        except DeviceError as exc:
            raise UserCommandError(
                "solana.rpc_url is 'embedded' (the agent's in-process chain) and no running agent was found "
                f"({exc.message}); start `xephy-device run` or pass --rpc-url http://HOST:PORT",
                code="rpc_url_required",
            ) from exc
    if not url.startswith(("http://", "https://")):
        raise UserCommandError(
            f"RPC URL must start with http:// or https://, got {url!r}", code="argument_invalid"
        )
    return url


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


def _sol(lamports: int) -> str:
    return f"{lamports / LAMPORTS_PER_SOL:.9f}".rstrip("0").rstrip(".") + " SOL"


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
    """Airdrop lamports to the user's wallet -- local stand-in only."""
    keypair = load_keypair(args.keypair)

    async def body(client: ChainClient) -> int:
        version = await client.node_version()
        if "localnet" not in version.lower():
            raise UserCommandError(
                f"{client.rpc_url} is not a local stand-in (solana-core {version!r}); airdrops are only "
                "requested from a localnet",
                code="airdrop_refused",
            )
        signature = _landed(await client.request_airdrop(keypair.pubkey(), args.lamports))
        wallet = await client.wallet_balance(keypair.pubkey())
        print(f"airdropped {args.lamports} lamports to {keypair.pubkey()} ({signature})")
        print(f"wallet     {wallet} lamports ({_sol(wallet)})")
        return 0

    return _run(args, config, body)


def cmd_user_register(args: argparse.Namespace, config: Config) -> int:
    """Create the user's account in the program (user = fee payer)."""
    keypair = load_keypair(args.keypair)
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


def cmd_user_deposit(args: argparse.Namespace, config: Config) -> int:
    """Move lamports from the wallet into the vault."""
    keypair = load_keypair(args.keypair)
    user = keypair.pubkey()
    amount: int = args.lamports

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
        signature = _landed(await client.send_and_confirm([ix], [keypair]))
        after = await client.balance(user)
        print(f"deposited {amount} lamports ({signature})")
        _print_balance(user, after)
        return 0

    return _run(args, config, body)


def cmd_user_withdraw(args: argparse.Namespace, config: Config) -> int:
    """Move available lamports from the vault back to the wallet."""
    keypair = load_keypair(args.keypair)
    user = keypair.pubkey()
    amount: int = args.lamports

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
        signature = _landed(await client.send_and_confirm([ix], [keypair]))
        after = await client.balance(user)
        print(f"withdrew {amount} lamports ({signature})")
        _print_balance(user, after)
        return 0

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
    print(f"wallet     {balance.wallet_lamports} lamports ({_sol(balance.wallet_lamports)})")
    print(f"vault      {balance.vault_lamports} lamports ({_sol(balance.vault_lamports)})")
    print(f"locked     {balance.locked_lamports} lamports")
    print(f"available  {balance.available} lamports ({_sol(balance.available)})")
    print(f"nonce      {balance.nonce}")


async def _device_tokens(args: argparse.Namespace, config: Config, user: Pubkey) -> tuple[int | None, str]:
    """The user's token balance as the device's Transaction events say (None and why, if unknown)."""
    try:
        target = _recharge_target(args, config)
        records = await fetch_transactions(
            target.relays,
            authors=[target.device_pubkey, *config.nostr.trusted_authors],
            session=target.session,
            machine=target.machine_pubkey,
            user=str(user),
        )
    except DeviceError as exc:
        return None, str(exc)
    return sum(r.tokens for r in records), f"{len(records)} Transaction events"


async def _open_sessions(args: argparse.Namespace, config: Config, user: Pubkey) -> list[OpenSession] | None:
    """The user's open pay-as-you-go sessions on the device (None when its relays cannot be read)."""
    try:
        return await fetch_open_sessions(_recharge_target(args, config), str(user))
    except DeviceError:
        return None


def cmd_user_balance(args: argparse.Namespace, config: Config) -> int:
    """Print wallet, vault, locked, available, the next nonce and the device-side token balance."""
    user = load_keypair(args.keypair).pubkey()

    async def body(client: ChainClient) -> int:
        balance = await client.balance(user)
        tokens, source = await _device_tokens(args, config, user)
        sessions = await _open_sessions(args, config, user)
        if args.json:
            rows = None if sessions is None else describe_sessions(sessions)
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
    keypair = load_keypair(args.keypair)
    user = keypair.pubkey()
    version = config.solana.program
    if version is ProgramVersion.V1 and args.namespace_name is not None:
        raise UserCommandError(
            "program v1 signs with a fixed prefix; --namespace-name is for v2", code="argument_invalid"
        )
    nonce: int | None = args.nonce
    name: str | None = args.namespace_name
    offline = nonce is not None and (version is ProgramVersion.V1 or name is not None)

    if not offline:

        async def body(client: ChainClient) -> int:
            nonlocal nonce, name
            nonce, name = await _chain_facts(client, user, version, args.amount, nonce, name)
            return 0

        _run(args, config, body)
    assert nonce is not None
    signed = sign_payload(
        keypair,
        config,
        machine=args.machine,
        amount=args.amount,
        ttl=args.ttl,
        nonce=nonce,
        namespace_name=name,
    )
    print(signed.text if args.payload else signed.recover_info)
    print(
        f"signed: user {user}, nonce {nonce}, machine {args.machine.hex()}, amount {args.amount} lamports, "
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
    return RechargeTarget(relays, config.nostr.session, machine, device or machine)


def cmd_user_recharge(args: argparse.Namespace, config: Config) -> int:
    """Sign a bound authorization, publish the Request, wait for the grant."""
    keypair = load_keypair(args.keypair)
    target = _recharge_target(args, config)
    amount: int = args.amount or config.pricing.recharge_lamports
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
        print(f"requesting {amount} lamports of tokens from machine {target.machine_pubkey} (nonce {nonce})")
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
    machine: str | None = args.machine or config.nostr.machine_pubkey
    if machine is None:
        try:
            machine = str(ChatClient(chat_socket(args, config)).health()["machine"])
        except ChatClientError as exc:
            raise ChatClientError(
                f"pass --machine (the device's Nostr pubkey): cannot ask the chat socket: {exc.message}",
                code=exc.code,
            ) from exc
    keypair = load_keypair(args.keypair)
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
        "--rpc-url", default=None, metavar="URL", help="Solana JSON-RPC URL (default: solana.rpc_url)"
    )
    device_opt = argparse.ArgumentParser(add_help=False)
    device_opt.add_argument("--relay", action="append", metavar="URL", help="relay URL (repeatable)")
    device_opt.add_argument(
        "--machine", type=machine_pubkey, default=None, metavar="HEX", help="machine pubkey"
    )
    device_opt.add_argument(
        "--device-pubkey", default=None, metavar="HEX", help="the device's Nostr key whose events to trust"
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
        "--machine", default=None, metavar="HEX", help="the device's Nostr pubkey (default: ask the socket)"
    )
    token.add_argument("--socket", type=Path, default=None, metavar="PATH", help="chat socket to ask")
    token.add_argument(
        "--ttl",
        type=ttl_seconds,
        default=TOKEN_LIFETIME_SECONDS,
        metavar="SECONDS",
        help=f"validity from now (default {TOKEN_LIFETIME_SECONDS}; the device caps it)",
    )
    token.set_defaults(handler=cmd_user_token)

    actions.add_parser(
        "keygen", parents=offline, help="create a new user keypair file (mode 0600; never overwrites)"
    ).set_defaults(handler=cmd_user_keygen)

    airdrop = actions.add_parser("airdrop", parents=online, help="request lamports from a localnet stand-in")
    airdrop.add_argument("lamports", type=lamports, metavar="LAMPORTS")
    airdrop.set_defaults(handler=cmd_user_airdrop)

    actions.add_parser(
        "register", parents=online, help="create the user's account in the program"
    ).set_defaults(handler=cmd_user_register)

    deposit = actions.add_parser(
        "deposit", parents=online, help="move lamports from the wallet into the vault"
    )
    deposit.add_argument("lamports", type=lamports, metavar="LAMPORTS")
    deposit.set_defaults(handler=cmd_user_deposit)

    withdraw = actions.add_parser(
        "withdraw", parents=online, help="move available lamports back to the wallet"
    )
    withdraw.add_argument("lamports", type=lamports, metavar="LAMPORTS")
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
        metavar="HEX",
        help="the machine's Nostr pubkey (64 hex)",
    )
    sign.add_argument(
        "--amount", type=lamports, required=True, metavar="LAMPORTS", help="most the device may charge"
    )
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
        type=lamports,
        default=None,
        metavar="LAMPORTS",
        help="default: pricing.recharge_lamports",
    )
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
