"""Chat bearer tokens: what the device accepts and every way it refuses."""

from __future__ import annotations

import pytest
from solders.keypair import Keypair

from device.chat.auth import AuthError, TokenVerifier, issue_token

MACHINE = "ab" * 32
OTHER = "cd" * 32
NOW = 1_700_000_000.0


def verifier(max_ttl: int = 3600) -> TokenVerifier:
    return TokenVerifier(MACHINE, max_ttl_seconds=max_ttl, clock=lambda: NOW)


def test_a_fresh_token_proves_the_signing_user() -> None:
    user = Keypair()
    claims = verifier().verify(issue_token(user, MACHINE, ttl_seconds=600, now=NOW))
    assert (claims.user, claims.machine, claims.expires) == (str(user.pubkey()), MACHINE, int(NOW) + 600)


def test_bearer_header_is_accepted() -> None:
    token = issue_token(Keypair(), MACHINE, ttl_seconds=600, now=NOW)
    assert verifier().verify_header(f"Bearer {token}").machine == MACHINE


def test_token_claiming_another_users_key_is_refused() -> None:
    token = issue_token(Keypair(), MACHINE, ttl_seconds=600, now=NOW)
    forged = token.replace(token.split(".")[1], str(Keypair().pubkey()))
    with pytest.raises(AuthError, match="signature does not verify"):
        verifier().verify(forged)


def test_token_with_a_changed_expiry_is_refused() -> None:
    token = issue_token(Keypair(), MACHINE, ttl_seconds=600, now=NOW)
    parts = token.split(".")
    parts[3] = str(int(parts[3]) + 1)
    with pytest.raises(AuthError, match="signature does not verify"):
        verifier().verify(".".join(parts))


def test_token_for_another_machine_is_refused() -> None:
    with pytest.raises(AuthError, match="another machine"):
        verifier().verify(issue_token(Keypair(), OTHER, ttl_seconds=600, now=NOW))


def test_expired_token_is_refused() -> None:
    with pytest.raises(AuthError, match="expired"):
        verifier().verify(issue_token(Keypair(), MACHINE, ttl_seconds=600, now=NOW - 601))


def test_token_living_longer_than_the_configured_maximum_is_refused() -> None:
    with pytest.raises(AuthError, match="token_max_ttl_seconds"):
        verifier(max_ttl=3600).verify(issue_token(Keypair(), MACHINE, ttl_seconds=7200, now=NOW))


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic abc", "Bearer ", "Bearer xct1.a.b.c.d", "Bearer sk-12345", "Bearer " + "x" * 600],
)
def test_missing_or_malformed_credentials_are_unauthorized(header: str | None) -> None:
    with pytest.raises(AuthError) as info:
        verifier().verify_header(header)
    assert info.value.code == "unauthorized"
