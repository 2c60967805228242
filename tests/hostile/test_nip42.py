"""A relay that requires NIP-42 authentication for reads and writes: the device still serves.

Row: ``NIP-42 relay`` (goal: a real recharge published with the user's own command code,
:func:`device.wallet.recharge.recharge`, is granted, the command sees the grant, and the tokens are on
the device).
"""

from __future__ import annotations

import time

from device.errors import DeviceError
from device.wallet.recharge import recharge
from tests.hostile.conftest import MakeDevice
from tests.hostile.harness import PRICE, Row, record


async def test_recharge_granted_through_an_auth_required_relay(make_device: MakeDevice) -> None:
    device = await make_device(nip42="both")
    user = await device.registered_user()
    started = time.monotonic()
    answered = 0  # tokens the user's command saw granted
    try:
        result = await recharge(device.request_payload(user), device.target, wait_seconds=20)
        answered = result.tokens
        measured = f"granted {result.tokens} tokens in {time.monotonic() - started:.1f} s"
    except DeviceError as exc:
        measured = f"the user's command got {exc.code}: {exc.message}"[:120]
    balance = await device.balance(user)
    row = record(
        Row(
            "NIP-42 relay",
            "relay requires AUTH to read and write (serve --nip42 both); `user recharge` code path",
            f"{measured}; device balance {balance}",
            "granted",
            answered >= PRICE and balance >= PRICE,
            time.monotonic() - started,
        )
    )
    assert row.ok, f"{row.measured}\n{device.logs()}"
