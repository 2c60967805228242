"""The JSON-RPC surface: every method in the shape solana-py parses, transaction-level refusals
(malformed bytes, signatures, blockhash age, duplicates), simulation, raw JSON-RPC envelopes, and a
restart with a state file."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed, Finalized, Processed
from solana.rpc.core import RPCException
from solana.rpc.jsonrpc import JsonRpcRequest
from solana.rpc.models import TxOpts
from solders.keypair import Keypair
from solders.message import Message
from solders.rpc.errors import (
    InvalidParamsMessage,
    RpcCustomErrorFieldless,
    SendTransactionPreflightFailureMessage,
)
from solders.rpc.responses import IsBlockhashValidResp
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus

from device.localnet import MAX_PROCESSING_AGE, LocalnetError, LocalnetServer, rent_exempt_minimum
from device.localnet.rpc import b58encode
from device.solana import program as bp
from device.solana.program import ProgramVersion
from tests.fixtures.localnet import (
    FEE,
    SOL,
    balances,
    blockhash,
    build_tx,
    client,
    make_operator,
    send_skip_preflight,
    server,
    stored,
    user_state,
)

__all__ = ["client", "server"]  # fixtures used by name below

RENT_0 = rent_exempt_minimum(0)


async def funded(client: AsyncClient, lamports: int = SOL, seed: int | None = None) -> Keypair:
    keypair = Keypair() if seed is None else Keypair.from_seed(bytes([seed]) * 32)
    signature = (await client.request_airdrop(keypair.pubkey(), lamports)).value
    await client.confirm_transaction(signature, sleep_seconds=0.01)
    return keypair


def transfer_tx(
    payer: Keypair, to: Keypair, lamports: int, recent: Any, *, v0: bool = False
) -> VersionedTransaction:
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to.pubkey(), lamports=lamports))
    return build_tx(recent, payer, [ix], v0=v0)


async def rpc(server: LocalnetServer, payload: Any) -> Any:
    """Raw JSON-RPC over HTTP (for envelopes solana-py never sends)."""
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            server.url, content=json.dumps(payload), headers={"Content-Type": "application/json"}
        )
        return response.json() if response.content else None


# --------------------------------------------------------------------------------------------------------
# Methods, through AsyncClient


async def test_cluster_methods_answer_in_the_shapes_solana_py_parses(client: AsyncClient) -> None:
    assert await client.is_connected()
    version = (await client.get_version()).value
    assert "localnet" in version.solana_core
    slot = (await client.get_slot()).value
    height = (await client.get_block_height(Finalized)).value
    assert slot >= 0 and height >= slot
    latest = (await client.get_latest_blockhash(Processed)).value
    assert latest.last_valid_block_height >= height + MAX_PROCESSING_AGE
    assert (await client.get_minimum_balance_for_rent_exemption(0)).value == 890_880
    assert (await client.get_minimum_balance_for_rent_exemption(56)).value == (128 + 56) * 6_960


async def test_airdrop_balance_and_account_info(client: AsyncClient) -> None:
    keypair = Keypair()
    assert (await client.get_balance(keypair.pubkey())).value == 0
    assert (await client.get_account_info(keypair.pubkey())).value is None
    signature = (await client.request_airdrop(keypair.pubkey(), 2 * SOL)).value
    statuses = await client.confirm_transaction(signature, Confirmed, sleep_seconds=0.01)
    assert statuses.value[0] is not None
    assert statuses.value[0].confirmation_status == TransactionConfirmationStatus.Finalized
    response = await client.get_balance(keypair.pubkey())
    assert response.value == 2 * SOL and response.context.slot >= 0
    info = (await client.get_account_info(keypair.pubkey(), encoding="base64")).value
    assert info is not None
    assert (info.lamports, bytes(info.data), str(info.owner), info.executable) == (
        2 * SOL,
        b"",
        "11111111111111111111111111111111",
        False,
    )
    program = (await client.get_account_info(bp.DEFAULT_PROGRAM_IDS[ProgramVersion.V2])).value
    assert program is not None and program.executable
    many = (await client.get_multiple_accounts([keypair.pubkey(), Keypair().pubkey()])).value
    assert many[0] is not None and many[0].lamports == 2 * SOL and many[1] is None


async def test_account_data_slices_and_encodings(client: AsyncClient, server: LocalnetServer) -> None:
    op = await make_operator(client, ProgramVersion.V2)
    answer = await rpc(
        server,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "getAccountInfo",
            "params": [str(op.user_account), {"encoding": "base58", "dataSlice": {"offset": 8, "length": 8}}],
        },
    )
    assert answer["result"]["value"]["data"] == [b58encode(bytes(8)), "base58"]
    assert answer["result"]["value"]["space"] == bp.UserAccount.SIZE
    legacy = await rpc(
        server, {"jsonrpc": "2.0", "id": 2, "method": "getAccountInfo", "params": [str(op.vault)]}
    )
    assert legacy["result"]["value"]["data"] == ""  # default "binary": a bare base58 string
    parsed = await rpc(
        server,
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "getAccountInfo",
            "params": [str(op.user_account), {"encoding": "jsonParsed"}],
        },
    )
    assert parsed["result"]["value"]["data"][1] == "base64"  # no parser for program accounts: base64 fallback


async def test_send_confirm_statuses_and_transaction(client: AsyncClient) -> None:
    payer, to = await funded(client), Keypair()
    latest = (await client.get_latest_blockhash()).value
    tx = transfer_tx(payer, to, RENT_0, latest.blockhash)
    fee = (await client.get_fee_for_message(tx.message)).value
    assert fee == FEE
    sent = await client.send_transaction(
        tx,
        TxOpts(
            skip_confirmation=False,
            preflight_commitment=Confirmed,
            last_valid_block_height=latest.last_valid_block_height,
        ),
    )
    assert sent.value == tx.signatures[0]
    status = (await client.get_signature_statuses([tx.signatures[0], Signature.default()], True)).value
    assert status[1] is None
    assert status[0] is not None and status[0].err is None and status[0].confirmations is None
    assert status[0].confirmation_status == TransactionConfirmationStatus.Finalized

    found = (await client.get_transaction(tx.signatures[0])).value
    assert found is not None
    assert found.slot == status[0].slot and found.block_time is not None
    meta = found.transaction.meta
    assert meta is not None and meta.err is None and meta.fee == FEE
    assert meta.pre_balances[:2] == [SOL, 0] and meta.post_balances[:2] == [SOL - RENT_0 - FEE, RENT_0]
    assert meta.log_messages == [
        "Program 11111111111111111111111111111111 invoke [1]",
        "Program 11111111111111111111111111111111 success",
    ]
    raw = (await client.get_transaction(tx.signatures[0], encoding="base64")).value
    assert raw is not None
    assert bytes(raw.transaction.transaction) == bytes(tx)  # type: ignore[arg-type]
    assert (await client.get_transaction(Signature.default())).value is None


async def test_signatures_for_address_newest_first_with_paging_like_a_node(
    client: AsyncClient, server: LocalnetServer
) -> None:
    payer, to, stranger = await funded(client), Keypair(), await funded(client)
    sent = []
    for extra in range(3):  # different amounts: equal transfers in one slot would be one duplicate
        tx = transfer_tx(payer, to, RENT_0 + extra, await blockhash(client))
        sent.append((await client.send_transaction(tx)).value)
    await client.send_transaction(transfer_tx(stranger, Keypair(), RENT_0, await blockhash(client)))

    found = (await client.get_signatures_for_address(to.pubkey())).value
    assert [entry.signature for entry in found] == sent[::-1]  # newest first; the stranger's is not there
    assert all(e.err is None and e.block_time is not None and e.memo is None for e in found)
    assert found[0].confirmation_status == TransactionConfirmationStatus.Finalized
    assert found[0].slot >= found[1].slot >= found[2].slot
    page = (await client.get_signatures_for_address(to.pubkey(), before=sent[2], limit=1)).value
    assert [e.signature for e in page] == [sent[1]]
    assert [
        e.signature for e in (await client.get_signatures_for_address(to.pubkey(), until=sent[0])).value
    ] == (sent[:0:-1])
    payer_history = (await client.get_signatures_for_address(payer.pubkey())).value
    assert len(payer_history) == 4  # its airdrop too: the fee payer is an account key of each

    answer = await rpc(
        server,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "getSignaturesForAddress",
            "params": [str(to.pubkey()), {"limit": 1001}],
        },
    )
    assert answer["error"] == {"code": -32602, "message": "Invalid limit; max 1000"}


async def test_v0_transactions_are_processed_and_need_max_supported_version(client: AsyncClient) -> None:
    payer, to = await funded(client), Keypair()
    tx = transfer_tx(payer, to, RENT_0, await blockhash(client), v0=True)
    await client.send_transaction(tx, TxOpts(skip_confirmation=False))
    assert (await client.get_balance(to.pubkey())).value == RENT_0
    with pytest.raises(RPCException) as caught:
        await client.get_transaction(tx.signatures[0])
    assert "maxSupportedTransactionVersion" in str(caught.value)
    found = (await client.get_transaction(tx.signatures[0], max_supported_transaction_version=0)).value
    assert found is not None and found.transaction.version == 0
    assert (await client.get_fee_for_message(tx.message)).value == FEE


async def test_is_blockhash_valid_through_send_rpc_request(
    client: AsyncClient, server: LocalnetServer
) -> None:
    latest = await blockhash(client)
    request = JsonRpcRequest(method="isBlockhashValid", params=[str(latest), {"commitment": "processed"}])
    answer = await client.send_rpc_request(request, dict)
    assert answer["value"] is True and "slot" in answer["context"]
    raw = await rpc(
        server, {"jsonrpc": "2.0", "id": 1, "method": "isBlockhashValid", "params": [str(latest)]}
    )
    assert IsBlockhashValidResp.from_json(json.dumps(raw)).value is True
    server.chain.advance_clock(61)  # 152 slots
    assert (await client.send_rpc_request(request, dict))["value"] is False


async def test_fee_for_message_counts_signatures_and_priority_fees(client: AsyncClient) -> None:
    payer, other = await funded(client), await funded(client)
    recent = await blockhash(client)
    ixs = [
        transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=other.pubkey(), lamports=1)),
        transfer(TransferParams(from_pubkey=other.pubkey(), to_pubkey=payer.pubkey(), lamports=1)),
    ]
    two = Message.new_with_blockhash(ixs, payer.pubkey(), recent)
    assert (await client.get_fee_for_message(two)).value == 2 * FEE
    from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price

    priced = Message.new_with_blockhash(
        [set_compute_unit_limit(100_000), set_compute_unit_price(1_000_000), ixs[0]], payer.pubkey(), recent
    )
    assert (await client.get_fee_for_message(priced)).value == FEE + 100_000
    tx = VersionedTransaction(priced, [payer])
    before = (await client.get_balance(payer.pubkey())).value
    await client.send_transaction(tx, TxOpts(skip_confirmation=False))
    assert (await client.get_balance(payer.pubkey())).value == before - FEE - 100_000 - 1


# --------------------------------------------------------------------------------------------------------
# Transaction-level refusals


async def test_malformed_bytes_are_refused_with_invalid_params(client: AsyncClient) -> None:
    payer = await funded(client)
    good = bytes(transfer_tx(payer, Keypair(), RENT_0, await blockhash(client)))
    for raw in (b"\x01garbage", good[:-5], b""):
        for opts in (TxOpts(), TxOpts(skip_preflight=True)):
            with pytest.raises(RPCException) as caught:
                await client.send_raw_transaction(raw, opts)
            assert isinstance(caught.value.args[0], InvalidParamsMessage)
            assert "failed to deserialize" in caught.value.args[0].message
    assert (await client.get_balance(payer.pubkey())).value == SOL


async def test_structurally_invalid_transactions_are_refused(
    client: AsyncClient, server: LocalnetServer
) -> None:
    payer = await funded(client)
    tx = transfer_tx(payer, Keypair(), RENT_0, await blockhash(client))
    unsigned_extra = VersionedTransaction.populate(tx.message, [tx.signatures[0], Signature.default()])
    with pytest.raises(RPCException) as caught:
        await client.send_raw_transaction(bytes(unsigned_extra))
    assert (
        caught.value.args[0].message
        == "invalid transaction: Transaction failed to sanitize accounts offsets correctly"
    )
    too_big = "A" * 1700
    answer = await rpc(
        server,
        {"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", "params": [too_big, {"encoding": "base64"}]},
    )
    assert answer["error"]["code"] == -32602 and "too large" in answer["error"]["message"]
    bad_b64 = await rpc(
        server,
        {"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", "params": ["!!", {"encoding": "base64"}]},
    )
    assert bad_b64["error"]["code"] == -32602 and bad_b64["error"]["message"].startswith(
        "invalid base64 encoding"
    )


async def test_bad_signature_is_refused_or_dropped_and_charges_nothing(
    client: AsyncClient, server: LocalnetServer
) -> None:
    payer, to = await funded(client), Keypair()
    tx = transfer_tx(payer, to, RENT_0, await blockhash(client))
    forged = VersionedTransaction.populate(tx.message, [Keypair().sign_message(bytes(tx.message))])
    with pytest.raises(RPCException) as caught:
        await client.send_transaction(forged)
    assert caught.value.args[0] == RpcCustomErrorFieldless.TransactionSignatureVerificationFailure
    signature = (await client.send_transaction(forged, TxOpts(skip_preflight=True))).value
    assert (await client.get_signature_statuses([signature])).value[0] is None
    assert server.chain.dropped[-1].reason == "Transaction did not pass signature verification"
    assert await balances(client, payer.pubkey(), to.pubkey()) == [SOL, 0]


@pytest.mark.parametrize("which", ["unknown", "expired"])
async def test_unknown_or_expired_blockhash_never_lands(
    client: AsyncClient, server: LocalnetServer, which: str
) -> None:
    payer, to = await funded(client), Keypair()
    if which == "unknown":
        from solders.hash import Hash

        recent = Hash.new_unique()
    else:
        recent = await blockhash(client)
        server.chain.advance_clock(MAX_PROCESSING_AGE * 0.4 + 1)
    tx = transfer_tx(payer, to, RENT_0, recent)
    with pytest.raises(RPCException) as caught:
        await client.send_transaction(tx)
    failure = caught.value.args[0]
    assert isinstance(failure, SendTransactionPreflightFailureMessage)
    assert failure.message == "Transaction simulation failed: Blockhash not found"
    assert json.loads(failure.data.to_json())["err"] == "BlockhashNotFound"
    signature = (await client.send_transaction(tx, TxOpts(skip_preflight=True))).value
    assert (await client.get_signature_statuses([signature])).value[0] is None
    assert await balances(client, payer.pubkey(), to.pubkey()) == [SOL, 0]


async def test_blockhash_stays_valid_for_150_slots(client: AsyncClient, server: LocalnetServer) -> None:
    payer, to = await funded(client), Keypair()
    latest = (await client.get_latest_blockhash()).value
    server.chain.advance_clock(50)  # 125 slots: still valid
    tx = transfer_tx(payer, to, RENT_0, latest.blockhash)
    await client.send_transaction(tx, TxOpts(skip_confirmation=False))
    assert (await client.get_block_height()).value <= latest.last_valid_block_height


async def test_duplicate_transaction_is_already_processed_and_charged_once(client: AsyncClient) -> None:
    payer, to = await funded(client), Keypair()
    tx = transfer_tx(payer, to, RENT_0, await blockhash(client))
    await client.send_transaction(tx, TxOpts(skip_confirmation=False))
    with pytest.raises(RPCException) as caught:
        await client.send_transaction(tx)
    failure = caught.value.args[0]
    assert isinstance(failure, SendTransactionPreflightFailureMessage)
    assert json.loads(failure.data.to_json())["err"] == "AlreadyProcessed"
    assert failure.message == "Transaction simulation failed: This transaction has already been processed"
    again = (await client.send_transaction(tx, TxOpts(skip_preflight=True))).value
    assert again == tx.signatures[0]
    assert await balances(client, payer.pubkey(), to.pubkey()) == [SOL - RENT_0 - FEE, RENT_0]


async def test_fee_is_charged_when_instructions_fail_and_nothing_else_moves(client: AsyncClient) -> None:
    payer, to = await funded(client), Keypair()
    tx = build_tx(
        await blockhash(client),
        payer,
        [
            transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to.pubkey(), lamports=RENT_0)),
            transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to.pubkey(), lamports=10 * SOL)),
        ],
    )
    _, err = await send_skip_preflight(client, tx)
    assert err == {"InstructionError": [1, {"Custom": 1}]}
    assert await balances(client, payer.pubkey(), to.pubkey()) == [SOL - FEE, 0]


async def test_rent_rule_refuses_a_new_account_below_the_minimum(client: AsyncClient) -> None:
    payer, to = await funded(client), Keypair()
    _, err = await send_skip_preflight(client, transfer_tx(payer, to, 12_345, await blockhash(client)))
    assert err == {"InsufficientFundsForRent": {"account_index": 1}}
    assert await balances(client, payer.pubkey(), to.pubkey()) == [SOL - FEE, 0]


async def test_fee_payer_problems_never_land(client: AsyncClient, server: LocalnetServer) -> None:
    ghost, poor, to = Keypair(), await funded(client, RENT_0 + 4_999), Keypair()
    recent = await blockhash(client)
    for payer, expected in (
        (ghost, "AccountNotFound"),
        (poor, {"InsufficientFundsForRent": {"account_index": 0}}),
    ):
        with pytest.raises(RPCException) as caught:
            await client.send_transaction(transfer_tx(payer, to, 1, recent))
        assert json.loads(caught.value.args[0].data.to_json())["err"] == expected
    broke = await funded(client, RENT_0)
    server.chain.set_account(broke.pubkey(), None)
    server.chain.airdrop(broke.pubkey(), 4_000)  # below the fee, no rent question
    with pytest.raises(RPCException) as caught:
        await client.send_transaction(transfer_tx(broke, to, 1, recent))
    assert json.loads(caught.value.args[0].data.to_json())["err"] == "InsufficientFundsForFee"


# --------------------------------------------------------------------------------------------------------
# Simulation


async def test_simulating_a_failing_pay_returns_the_program_logs_and_changes_nothing(
    client: AsyncClient, server: LocalnetServer
) -> None:
    op = await make_operator(client, ProgramVersion.V2)
    recover_info = op.authorize(nonce=0, deadline=server.chain.unix_timestamp - 5)
    tx = build_tx(await blockhash(client), op.bot, [op.pay_ix(recover_info, 1_000_000)])
    watched = [op.vault, op.treasury.pubkey(), op.bot.pubkey()]
    before = await balances(client, *watched)

    simulated = (await client.simulate_transaction(tx, sig_verify=True, accounts_addresses=[op.vault])).value

    assert json.loads(simulated.to_json())["err"] == {"InstructionError": [0, {"Custom": 6008}]}
    assert simulated.logs is not None
    assert f"Program {op.ref.program_id} failed: custom program error: 0x1778" in simulated.logs
    assert simulated.units_consumed is not None and simulated.units_consumed > 0
    assert simulated.accounts is not None and simulated.accounts[0] is not None
    assert simulated.accounts[0].lamports == before[0]
    assert await balances(client, *watched) == before
    assert (await user_state(client, op)).nonce == 0
    assert (await client.get_signature_statuses([tx.signatures[0]])).value[0] is None
    # The same transaction is still sendable afterwards: simulation did not enter the status cache.
    _, err = await send_skip_preflight(client, tx)
    assert err == {"InstructionError": [0, {"Custom": 6008}]}


async def test_simulating_a_good_pay_shows_the_state_after_and_inner_transfers(
    client: AsyncClient, server: LocalnetServer
) -> None:
    op = await make_operator(client, ProgramVersion.V2)
    recover_info = op.authorize(nonce=0, deadline=server.chain.unix_timestamp + 60)
    tx = build_tx(await blockhash(client), op.bot, [op.pay_ix(recover_info, 1_000_000)])
    simulated = (
        await client.simulate_transaction(
            tx, accounts_addresses=[op.vault, op.user_account], inner_instructions=True
        )
    ).value
    assert simulated.err is None
    assert simulated.accounts is not None
    vault_after, user_after = simulated.accounts
    assert vault_after is not None and vault_after.lamports == 49_000_000
    assert user_after is not None and bp.UserAccount.decode(bytes(user_after.data)).nonce == 1
    assert simulated.inner_instructions is not None and len(simulated.inner_instructions) == 1
    assert (await client.get_balance(op.vault)).value == 50_000_000
    unsigned = VersionedTransaction.populate(tx.message, [Signature.default()])
    replaced = (await client.simulate_transaction(unsigned, replace_recent_blockhash=True)).value
    assert replaced.err is None and replaced.replacement_blockhash is not None
    with pytest.raises(RPCException):
        await client.simulate_transaction(unsigned, sig_verify=True)


# --------------------------------------------------------------------------------------------------------
# Raw JSON-RPC envelopes


async def test_json_rpc_envelopes(server: LocalnetServer) -> None:
    assert (await rpc(server, {"jsonrpc": "2.0", "id": 7, "method": "getHealth"}))["result"] == "ok"
    missing = await rpc(server, {"jsonrpc": "2.0", "id": 8, "method": "getProgramAccounts", "params": []})
    assert missing == {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": 8}
    bad = await rpc(server, {"jsonrpc": "2.0", "id": "x", "method": "getBalance", "params": ["not-a-key"]})
    assert bad["error"] == {"code": -32602, "message": "Invalid param: Invalid"} and bad["id"] == "x"
    batch = await rpc(
        server,
        [
            {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
            {"jsonrpc": "2.0", "method": "getSlot"},  # a notification: no answer
            {"jsonrpc": "2.0", "id": 2, "method": "nope"},
            {"id": 3, "method": "getSlot"},
        ],
    )
    assert [item["id"] for item in batch] == [1, 2, 3]
    assert isinstance(batch[0]["result"], int)
    assert batch[1]["error"]["code"] == -32601 and batch[2]["error"]["code"] == -32600
    assert (await rpc(server, []))["error"]["code"] == -32600
    async with httpx2.AsyncClient() as http:
        garbage = await http.post(server.url, content=b"{nope", headers={"Content-Type": "application/json"})
        assert garbage.json() == {
            "jsonrpc": "2.0",
            "error": {"code": -32700, "message": "Parse error"},
            "id": None,
        }
        health = await http.get(server.url + "/health")
        assert health.text == "ok"
    too_new = await rpc(
        server,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "getBalance",
            "params": [str(Keypair().pubkey()), {"minContextSlot": 10**12}],
        },
    )
    assert too_new["error"]["code"] == -32016 and "contextSlot" in too_new["error"]["data"]
    bad_commitment = await rpc(
        server, {"jsonrpc": "2.0", "id": 1, "method": "getSlot", "params": [{"commitment": "max"}]}
    )
    assert bad_commitment["error"]["code"] == -32602


async def test_send_transaction_accepts_base58_and_base64(
    server: LocalnetServer, client: AsyncClient
) -> None:
    payer = await funded(client)
    recent = await blockhash(client)
    first = transfer_tx(payer, Keypair(), RENT_0, recent)
    second = transfer_tx(payer, Keypair(), RENT_0, recent)
    by58 = await rpc(
        server, {"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", "params": [b58encode(bytes(first))]}
    )
    assert by58["result"] == str(first.signatures[0])
    by64 = await rpc(
        server,
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "sendTransaction",
            "params": [base64.b64encode(bytes(second)).decode(), {"encoding": "base64"}],
        },
    )
    assert by64["result"] == str(second.signatures[0])
    wrong = await rpc(
        server,
        {"jsonrpc": "2.0", "id": 3, "method": "sendTransaction", "params": ["x", {"encoding": "json"}]},
    )
    assert wrong["error"] == {
        "code": -32602,
        "message": "unsupported encoding: json. Supported encodings: base58, base64",
    }


# --------------------------------------------------------------------------------------------------------
# Loopback only, and restart with a state file


def test_only_loopback_hosts_are_accepted() -> None:
    for host in ("0.0.0.0", "192.168.1.10", "::"):
        with pytest.raises(LocalnetError) as caught:
            LocalnetServer(host=host)
        assert caught.value.code == "localnet_host_refused"
    LocalnetServer(host="localhost")


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "chain.json"
    first = LocalnetServer(state_file=state)
    await first.start()
    async with AsyncClient(first.url, commitment=Confirmed) as rpc_client:
        op = await make_operator(rpc_client, ProgramVersion.V2)
        recover_info = op.authorize(nonce=0, deadline=first.chain.unix_timestamp + 3_600)
        paid = build_tx(await blockhash(rpc_client), op.bot, [op.pay_ix(recover_info, 5_000_000)])
        await rpc_client.send_transaction(paid, TxOpts(skip_confirmation=False))
        assert state.exists()  # written before the answer
        before = await balances(rpc_client, op.vault, op.treasury.pubkey(), op.bot.pubkey())
        slot_before = (await rpc_client.get_slot()).value
    await first.stop()

    second = LocalnetServer(state_file=state)
    await second.start()
    try:
        async with AsyncClient(second.url, commitment=Confirmed) as rpc_client:
            assert await balances(rpc_client, op.vault, op.treasury.pubkey(), op.bot.pubkey()) == before
            assert (await user_state(rpc_client, op)).nonce == 1
            assert (await rpc_client.get_slot()).value >= slot_before
            status = (await rpc_client.get_signature_statuses([paid.signatures[0]])).value[0]
            assert status is not None and status.err is None
            assert (await rpc_client.get_transaction(paid.signatures[0])).value is not None
            next_auth = op.authorize(nonce=1, deadline=second.chain.unix_timestamp + 3_600)
            again = build_tx(await blockhash(rpc_client), op.bot, [op.pay_ix(next_auth, 5_000_000)])
            await rpc_client.send_transaction(again, TxOpts(skip_confirmation=False))
            assert (await rpc_client.get_balance(op.vault)).value == before[0] - 5_000_000
            # the namespace created before the restart still answers create_namespace with the next id
            global_data = stored(second.chain, bp.global_pda(op.ref.program_id))
            assert bp.GlobalAccountV2.decode(global_data).namespace_nonce == 1
    finally:
        await second.stop()
    assert json.loads(state.read_text())["format"] == "xephy-localnet-state"


async def test_a_damaged_state_file_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "chain.json"
    state.write_text('{"format": "something else"}')
    with pytest.raises(LocalnetError) as caught:
        LocalnetServer(state_file=state)
    assert caught.value.code == "localnet_state_invalid"
    state.write_text("{not json")
    with pytest.raises(LocalnetError) as caught:
        LocalnetServer(state_file=state)
    assert caught.value.code == "localnet_state_invalid"
