"""Opening a store: the master key is created once (0600), and a missing or wrong key refuses to open without
touching anything stored."""

from pathlib import Path

import pytest
from sqlalchemy import func, select

from ringfence.store import content
from ringfence.store.crypto import MasterKeyError
from ringfence.store.db import open_store
from ringfence.store.models import ContentItem
from tests.conftest import T0
from tests.store.helpers import consumer


def url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'ringfence.db'}"


def test_first_open_creates_a_private_key_file_and_a_private_directory(data_dir: Path) -> None:
    store = open_store(url(data_dir), data_dir / "master.key")
    assert (data_dir / "master.key").stat().st_mode & 0o777 == 0o600
    assert data_dir.stat().st_mode & 0o077 == 0
    store.engine.dispose()
    reopened = open_store(url(data_dir), data_dir / "master.key")
    assert reopened.master.key_id == store.master.key_id


def _store_with_content(data_dir: Path) -> str:
    store = open_store(url(data_dir), data_dir / "master.key")
    user = consumer(store, training=True)
    session = content.start_session(store, user.id, T0, repository_id=None)
    content.put_content(store, session.id, "prompt", "keep me", T0, turn=1)
    store.engine.dispose()
    return session.id


def _count(data_dir: Path) -> int:
    from sqlalchemy import create_engine

    engine = create_engine(url(data_dir))
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(ContentItem)) or 0)


def test_a_missing_key_file_is_an_error_not_a_new_key(data_dir: Path) -> None:
    _store_with_content(data_dir)
    (data_dir / "master.key").rename(data_dir / "elsewhere.key")
    with pytest.raises(MasterKeyError, match="is missing, but this store's data keys were wrapped by master key"):
        open_store(url(data_dir), data_dir / "master.key")
    assert not (data_dir / "master.key").exists()
    assert _count(data_dir) == 1


def test_a_wrong_key_file_is_refused_and_nothing_is_lost(data_dir: Path, tmp_path: Path) -> None:
    session_id = _store_with_content(data_dir)
    other = tmp_path / "other"
    open_store(url(other), other / "master.key").engine.dispose()
    with pytest.raises(MasterKeyError, match="wrong master key: this store was written with master key"):
        open_store(url(data_dir), other / "master.key")
    store = open_store(url(data_dir), data_dir / "master.key")
    assert [r.text for r in content.read_content(store, session_id)] == ["keep me"]


def test_no_create_means_no_new_key(data_dir: Path) -> None:
    with pytest.raises(MasterKeyError, match="does not exist"):
        open_store(url(data_dir), data_dir / "master.key", create=False)
