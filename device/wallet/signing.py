"""Signing one payment authorization: a ``recover_info`` bound to a machine and an amount.

The ``extra_data`` of the signed message holds a device binding (machine pubkey and amount, see
:func:`device.solana.authorization.encode_binding`), so the authorization is worthless to any other
machine and cannot be charged for more than the amount.  The result is wrapped in a Request payload
exactly as the XePHY dApp writes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from solders.keypair import Keypair

from device.config import Config
from device.protocol import (
    Payload,
    RecoverInfo,
    RecoverInfoFieldName,
    encode_payload,
    encode_recover_info,
)
from device.solana.authorization import encode_binding, sign_authorization
from device.solana.program import ProgramVersion

#: How long a signed authorization stays valid by default (its on-chain ``deadline`` is now + this).
AUTHORIZATION_VALIDITY_SECONDS: Final = 1800


@dataclass(frozen=True, slots=True)
class SignedPayload:
    """A Request payload with its recover_info, and what was signed."""

    text: str
    recover_info: str
    nonce: int
    deadline: int


def sign_payload(
    keypair: Keypair,
    config: Config,
    *,
    machine: bytes,
    amount: int,
    ttl: int,
    nonce: int,
    namespace_name: str | None,
) -> SignedPayload:
    """Sign a recover_info bound to ``machine`` and ``amount`` (valid ``ttl`` s) in a Request payload."""
    version = config.solana.program
    namespace_id = config.solana.namespace_id
    deadline = int(time.time()) + ttl
    auth = sign_authorization(
        keypair,
        version,
        nonce=nonce,
        deadline=deadline,
        extra_data=encode_binding(machine, amount),
        namespace_id=namespace_id if version is ProgramVersion.V2 else 0,
        namespace_name=namespace_name if version is ProgramVersion.V2 else None,
    )
    field_name: RecoverInfoFieldName = "extra_data" if version is ProgramVersion.V2 else "payload"
    text = encode_recover_info(RecoverInfo(auth.signature, auth.extra_data, auth.deadline, field_name))
    payload = Payload(
        user=str(keypair.pubkey()),
        nonce=nonce,
        recover_info=text,
        namespace_id=namespace_id if version is ProgramVersion.V2 else None,
    )
    return SignedPayload(encode_payload(payload), text, nonce, deadline)
