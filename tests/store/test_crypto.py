from pathlib import Path

import pytest

from ringfence.store.crypto import (
    CorruptCiphertext,
    LocalMasterKey,
    MasterKeyError,
    Secret,
    create_key_file,
    new_data_key,
    read_key_file,
    seal,
    unseal,
)


def test_seal_and_unseal_round_trip_with_associated_data() -> None:
    key = new_data_key()
    nonce, ciphertext = seal(key, b"the prompt", b"ses_1\x00prompt\x001")
    assert b"the prompt" not in ciphertext
    assert unseal(key, nonce, ciphertext, b"ses_1\x00prompt\x001", "item") == b"the prompt"


@pytest.mark.parametrize("tamper", ["flip", "aad", "key", "truncate"])
def test_any_change_fails_authentication_with_a_clear_error(tamper: str) -> None:
    key = new_data_key()
    aad = b"ses_1\x00prompt\x001"
    nonce, ciphertext = seal(key, b"the prompt", aad)
    if tamper == "flip":
        ciphertext = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    elif tamper == "aad":
        aad = b"ses_2\x00prompt\x001"  # moving a ciphertext to another session is detected
    elif tamper == "key":
        key = new_data_key()
    else:
        ciphertext = ciphertext[:-1]
    with pytest.raises(CorruptCiphertext, match="content item 7 failed authentication"):
        unseal(key, nonce, ciphertext, aad, "content item 7")


def test_wrapping_is_bound_to_its_context_and_key() -> None:
    master = LocalMasterKey(b"k" * 32)
    wrapped = master.wrap(b"d" * 32, b"ses_1")
    assert master.unwrap(wrapped, b"ses_1") == b"d" * 32
    with pytest.raises(MasterKeyError, match="could not be unwrapped"):
        master.unwrap(wrapped, b"ses_2")
    with pytest.raises(MasterKeyError, match="could not be unwrapped"):
        LocalMasterKey(b"x" * 32).unwrap(wrapped, b"ses_1")


def test_key_file_is_created_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    created = create_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_key_file(path).key_id == created.key_id
    with pytest.raises(MasterKeyError, match="refusing to overwrite"):
        create_key_file(path)
    assert read_key_file(path).key_id == created.key_id


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        (None, 0o644, "accessible to other users"),
        ("hello\n", 0o600, "bad header"),
        ("ringfence-master-key-v1:!!!\n", 0o600, "bad base64"),
        ("ringfence-master-key-v1:AAAA\n", 0o600, "must be 32 bytes"),
    ],
)
def test_bad_key_files_are_refused(tmp_path: Path, content: str | None, mode: int, message: str) -> None:
    path = tmp_path / "master.key"
    create_key_file(path)
    if content is not None:
        path.write_text(content)
    path.chmod(mode)
    with pytest.raises(MasterKeyError, match=message):
        read_key_file(path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="does not exist"):
        read_key_file(tmp_path / "absent.key")


def test_secrets_are_redacted_everywhere_but_reveal() -> None:
    secret = Secret("rf_0123_supersecret")
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret]), repr({"t": secret})):
        assert "supersecret" not in shown
    assert secret.reveal() == "rf_0123_supersecret"
    assert secret == Secret("rf_0123_supersecret") and secret != Secret("other")


def test_key_ids_do_not_reveal_the_key() -> None:
    key = b"\x01" * 32
    master = LocalMasterKey(key)
    assert key.hex()[:16] not in master.key_id and "LocalMasterKey(id=" in repr(master)
