"""Key files: created once with mode 0600, never replaced, refused when readable by others."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from nostr_sdk import Keys
from solders.keypair import Keypair

from device.keys import KeyFileError, KeyStore, create_keypair_file, load_keypair, write_secret_file


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_both_key_files_with_mode_0600(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "state")
    _, created = store.init()
    assert created == [store.nostr_path, store.bot_path]
    assert file_mode(store.nostr_path) == 0o600
    assert file_mode(store.bot_path) == 0o600


def test_init_twice_keeps_the_existing_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    first, _ = store.init()
    second, created = store.init()
    assert created == []
    assert second.nostr_pubkey_hex == first.nostr_pubkey_hex
    assert second.bot_pubkey == first.bot_pubkey


def test_nostr_key_file_holds_64_hex_characters(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    keys, _ = store.init()
    text = store.nostr_path.read_text().strip()
    assert len(text) == 64 and int(text, 16) >= 0
    assert Keys.parse(text).public_key().to_hex() == keys.nostr_pubkey_hex


def test_bot_key_file_is_a_solana_cli_keypair(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    keys, _ = store.init()
    raw = json.loads(store.bot_path.read_text())
    assert len(raw) == 64
    assert Keypair.from_bytes(bytes(raw)).pubkey() == keys.bot_pubkey


def test_nsec_is_accepted_in_the_nostr_key_file(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.init()
    other = Keys.generate()
    store.nostr_path.write_text(other.secret_key().to_bech32())
    assert store.load().nostr_pubkey_hex == other.public_key().to_hex()


def test_npub_and_hex_name_the_same_key(tmp_path: Path) -> None:
    keys, _ = KeyStore(tmp_path).init()
    assert keys.npub.startswith("npub1")
    assert Keys.parse(KeyStore(tmp_path).nostr_path.read_text().strip()).public_key().to_bech32() == keys.npub


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    store = KeyStore(tmp_path)
    store.init()
    store.bot_path.chmod(mode)
    with pytest.raises(KeyFileError) as err:
        store.load()
    assert err.value.code == "key_permissions"
    assert str(store.bot_path) in str(err.value)


def test_missing_key_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as err:
        KeyStore(tmp_path).load()
    assert err.value.code == "key_missing"
    assert "keys init" in str(err.value)


def test_malformed_bot_keypair_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.init()
    store.bot_path.write_text(json.dumps([1] * 63))
    with pytest.raises(KeyFileError) as err:
        store.load()
    assert err.value.code == "key_invalid"


def test_malformed_nostr_key_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.init()
    store.nostr_path.write_text("not a key")
    with pytest.raises(KeyFileError) as err:
        store.load()
    assert err.value.code == "key_invalid"


def test_secret_file_is_written_whole_with_mode_0600_and_no_leftovers(tmp_path: Path) -> None:
    write_secret_file(tmp_path / "secret", b"s3cret\n")
    assert (tmp_path / "secret").read_bytes() == b"s3cret\n"
    assert file_mode(tmp_path / "secret") == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_secret_file_never_replaces_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"first")
    with pytest.raises(FileExistsError):
        write_secret_file(tmp_path / "secret", b"second")
    assert (tmp_path / "secret").read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_user_keypair_file_round_trips_and_is_never_overwritten(tmp_path: Path) -> None:
    keypair = Keypair()
    path = create_keypair_file(tmp_path / "wallet" / "id.json", keypair)
    assert load_keypair(path) == keypair
    assert file_mode(path) == 0o600
    with pytest.raises(KeyFileError) as err:
        create_keypair_file(path, Keypair())
    assert err.value.code == "keypair_exists"
    assert load_keypair(path) == keypair
