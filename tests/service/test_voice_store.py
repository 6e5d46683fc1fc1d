"""Both voice stores (SQLite and a real PostgreSQL server): exact codes, unique names,
atomic writes, one winner among concurrent writers, migrations, reopening."""

from __future__ import annotations

import secrets
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from app.service.cloning import VoiceReference
from app.service.postgres_voices import _MIGRATIONS as _POSTGRES_MIGRATIONS
from app.service.postgres_voices import PostgresVoiceStore
from app.service.sqlite_voices import SCHEMA_VERSION, SqliteVoiceStore
from app.service.voice_store import (
    ID_PREFIX,
    VoiceAccess,
    VoiceNameTaken,
    VoiceQuotaExceeded,
    VoiceStore,
    VoiceStoreUnavailable,
    name_key,
    open_voice_store,
    sqlite_path,
)
from tests.support.postgres import PostgresServer
from tests.support.vllm_server import unused_port_url

StoreFactory = Callable[[], VoiceStore]
S = TypeVar("S")


def reference(frames: int = 5, text: str = "Hello there.", seed: int = 0) -> VoiceReference:
    codes = np.random.default_rng(seed).integers(0, 4096, size=(frames, 7))
    return VoiceReference(text=text, frames=codes)


def at_once(stores: Sequence[S], attempt: Callable[[int, S], None]) -> None:
    """`attempt(index, store)` for every store, each in a thread of its own, all released
    together (as racing processes or replicas would be); returns when all are done."""
    barrier = threading.Barrier(len(stores))

    def run(index: int, store: S) -> None:
        barrier.wait()
        attempt(index, store)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores on one database: separate objects, separate connections, as
    separate processes or replicas would have."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'voices.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened: list[VoiceStore] = []

    def factory() -> VoiceStore:
        store = open_voice_store(url, tmp_path)
        store.migrate()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: StoreFactory) -> VoiceStore:
    return open_store()


def test_create_get_find_list_delete(store: VoiceStore) -> None:
    ref = reference(7, "Words.")
    voice = store.create("Alice", ref, "warm")
    assert voice.id.startswith(ID_PREFIX) and voice.frames == 7 and voice.audio_tokens == 49
    assert store.get(voice.id) == voice
    assert store.find(voice.id) == voice
    assert store.find("alice") == voice and store.find(" ALICE ") == voice
    back = store.reference(voice)
    np.testing.assert_array_equal(back.frames, ref.frames)
    assert back.text == "Words." and back.token_ids == ref.token_ids
    other = store.create("Bob", reference(3, seed=1))
    assert [v.name for v in store.list()] == ["Alice", "Bob"]
    assert store.delete(voice.id) is True
    assert store.delete(voice.id) is False
    assert store.get(voice.id) is None and store.find("Alice") is None
    assert store.list() == [other]
    with pytest.raises(LookupError):
        store.reference(voice)


@pytest.mark.parametrize(("first", "second"), [("Narrator", "nArRaToR"), ("Émile", "éMILE")])
def test_names_are_unique_case_insensitively(store: VoiceStore, first: str, second: str) -> None:
    voice = store.create(first, reference())
    with pytest.raises(VoiceNameTaken) as info:
        store.create(second, reference())
    assert info.value.status_code == 409 and info.value.param == "name"
    assert store.list() == [voice]
    assert store.find(second) == voice


def test_concurrent_creates_of_one_name_have_one_winner(open_store: StoreFactory) -> None:
    open_store().create("seed", reference())  # the schema exists before the race
    stores = [open_store() for _ in range(8)]
    results: list[str] = []

    def attempt(index: int, s: VoiceStore) -> None:
        try:
            s.create("same" if index % 2 else "SAME", reference(seed=index))
            results.append("ok")
        except VoiceNameTaken:
            results.append("taken")

    at_once(stores, attempt)
    assert sorted(results) == ["ok"] + ["taken"] * 7
    assert [v.name.lower() for v in open_store().list()] == ["seed", "same"]


def test_a_save_on_one_store_is_seen_by_another(open_store: StoreFactory) -> None:
    first, second = open_store(), open_store()
    ref = reference(11, "Persist me.", seed=5)
    voice = first.create("Keeper", ref, "desc")
    assert second.find("keeper") == voice
    np.testing.assert_array_equal(second.reference(voice).frames, ref.frames)
    assert second.delete(voice.id) and first.get(voice.id) is None


def test_migrations_are_idempotent(open_store: StoreFactory) -> None:
    store = open_store()
    voice = store.create("Kept", reference())
    store.migrate()
    again = open_store()  # migrates on open
    again.migrate()
    assert again.list() == [voice]


def test_consent_is_kept_with_the_voice(open_store: StoreFactory) -> None:
    writer, reader = open_store(), open_store()
    with_consent = writer.create("Consented", reference(), "", consent="cons_1234")
    without = writer.create("Plain", reference(seed=1))
    assert with_consent.consent == "cons_1234" and without.consent == ""
    assert reader.get(with_consent.id) == with_consent
    assert reader.find("plain") == without
    assert [v.consent for v in reader.list()] == ["cons_1234", ""]


@pytest.fixture
def store_pair(open_store: StoreFactory) -> tuple[VoiceStore, VoiceStore]:
    return open_store(), open_store()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    codes=hnp.arrays(
        np.int64, st.tuples(st.integers(1, 40), st.just(7)), elements=st.integers(0, 4095)
    ),
    text=st.text(max_size=200).filter(lambda t: "\x00" not in t),
)
def test_codes_and_text_round_trip_exactly(
    store_pair: tuple[VoiceStore, VoiceStore], codes: np.ndarray, text: str
) -> None:
    writer, reader = store_pair
    voice = writer.create(secrets.token_hex(8), VoiceReference(text=text, frames=codes))
    saved = reader.get(voice.id)
    assert saved == voice
    back = reader.reference(saved)
    np.testing.assert_array_equal(back.frames, codes)
    assert back.text == text


# --- owners, namespaces, quotas, pages ---------------------------------------------------
ALICE = VoiceAccess(owner="key:alice")
BOB = VoiceAccess(owner="key:bob")
ROOT = VoiceAccess(owner="key:root", admin=True)


def test_a_voice_is_seen_by_its_owner_admins_or_everyone_when_shared(store: VoiceStore) -> None:
    mine = store.create("Mine", reference(), owner=ALICE.owner, shared=False)
    shared = store.create("Ours", reference(seed=1), owner=ROOT.owner, shared=True)
    legacy = store.create("Old", reference(seed=2))  # an open gateway's: nobody's, shared
    assert (legacy.owner, legacy.shared) == (None, True)
    assert store.get(mine.id, ALICE) == mine and store.get(mine.id, BOB) is None
    assert store.get(mine.id, ROOT) == mine and store.get(mine.id) == mine
    assert store.find("mine", BOB) is None and store.find(mine.id, BOB) is None
    assert store.find("ours", BOB) == shared and store.find("old", BOB) == legacy
    assert store.list(BOB) == [shared, legacy]
    assert store.list(ALICE) == [mine, shared, legacy] == store.list(ROOT) == store.list()
    assert mine.deletable_by(ALICE) and not mine.deletable_by(BOB) and mine.deletable_by(ROOT)
    assert not shared.deletable_by(ALICE) and not legacy.deletable_by(ALICE)


def test_names_are_unique_per_namespace(store: VoiceStore) -> None:
    alices = store.create("Narrator", reference(), owner=ALICE.owner, shared=False)
    bobs = store.create("narrator", reference(seed=1), owner=BOB.owner, shared=False)
    shared = store.create("NARRATOR", reference(seed=2), owner=ROOT.owner, shared=True)
    with pytest.raises(VoiceNameTaken):
        store.create("nArRaToR", reference(), owner=ALICE.owner, shared=False)
    with pytest.raises(VoiceNameTaken):
        store.create("Narrator", reference(), owner=None)  # the shared namespace's
    # Each caller's own name first, then the shared one.
    assert store.find("narrator", ALICE) == alices and store.find("narrator", BOB) == bobs
    assert store.find("narrator", VoiceAccess(owner="key:carol")) == shared
    assert store.find("narrator") == shared


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("ΣΑΣ", "σας"),
        ("Émile", "E\u0301MILE"),
        ("ﬁle", "FILE"),
        ("Ｔａｌｅ", "tale"),
        ("Straße", "STRASSE"),
    ],
)
def test_names_fold_as_unicode_compatibility_caseless_matching(
    store: VoiceStore, first: str, second: str
) -> None:
    assert name_key(first) == name_key(second)
    voice = store.create(first, reference())
    with pytest.raises(VoiceNameTaken):
        store.create(second, reference())
    assert store.find(second) == voice


def test_a_quota_holds_under_concurrent_saves(open_store: StoreFactory) -> None:
    open_store().create("seed", reference(), owner=ALICE.owner)  # the schema exists first
    stores = [open_store() for _ in range(6)]
    results: list[str] = []

    def attempt(index: int, s: VoiceStore) -> None:
        try:
            s.create(f"v{index}", reference(seed=index), owner=ALICE.owner, quota=3)
            results.append("ok")
        except VoiceQuotaExceeded:
            results.append("over")

    at_once(stores, attempt)
    assert sorted(results) == ["ok", "ok"] + ["over"] * 4  # 1 + 2 = the quota of 3
    store = stores[0]
    assert store.count(ALICE.owner) == 3 and store.count(BOB.owner) == 0
    store.create("b", reference(), owner=BOB.owner, quota=3)  # per owner
    with pytest.raises(VoiceQuotaExceeded) as info:
        store.create("over", reference(), owner=ALICE.owner, quota=3)
    assert info.value.status_code == 403


def test_pages_are_oldest_first_and_seamless(store: VoiceStore) -> None:
    made = [store.create(f"p{n}", reference(seed=n), owner=ALICE.owner) for n in range(7)]
    store.create("hidden", reference(), owner=BOB.owner, shared=False)
    pages: list[list[str]] = []
    after = None
    while page := store.list(ALICE, after=after, limit=3):
        pages.append([v.name for v in page])
        after = page[-1]
    assert pages == [["p0", "p1", "p2"], ["p3", "p4", "p5"], ["p6"]]
    assert store.list(ALICE, after=made[-1]) == []


# --- SQLite specifics ---------------------------------------------------------------------
@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteVoiceStore]:
    s = SqliteVoiceStore(tmp_path / "data" / "voices.sqlite3")
    yield s
    s.close()


def test_sqlite_writes_nothing_until_a_voice_is_saved(sqlite_store: SqliteVoiceStore) -> None:
    sqlite_store.migrate()
    s = sqlite_store
    assert s.list() == [] and s.get("voice_x") is None and s.find("x") is None
    assert s.delete("voice_x") is False
    assert not s.path.exists() and not s.path.parent.exists()


def test_sqlite_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "voices.sqlite3"
    first = SqliteVoiceStore(path)
    ref = reference(11, "Persist me.", seed=5)
    voice = first.create("Keeper", ref, "desc")
    first.close()
    second = SqliteVoiceStore(path)
    assert second.get(voice.id) == voice
    np.testing.assert_array_equal(second.reference(voice).frames, ref.frames)
    second.close()


def test_a_failed_sqlite_write_leaves_nothing(sqlite_store: SqliteVoiceStore) -> None:
    store = sqlite_store
    store.create("kept", reference())
    with pytest.raises(ValueError):
        store.create("bad", VoiceReference(text="x", frames=np.zeros((0, 7), dtype=np.int64)))
    # A write that fails inside the transaction is rolled back as a whole.
    with pytest.raises(sqlite3.IntegrityError), store._db(create=True) as conn:
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            for name in ("half", "dup id"):
                conn.execute(
                    "INSERT INTO voices (id, name, name_key, reference_text, frames, codes, "
                    "created_at) VALUES ('voice_a', ?, ?, '', 1, x'00', 0)",
                    (name, name),
                )
        finally:
            conn.execute("ROLLBACK")
    assert [v.name for v in store.list()] == ["kept"]


def _started(path: Path) -> SqliteVoiceStore:
    """A store on `path`, migrated as the gateway does at start-up."""
    store = SqliteVoiceStore(path)
    store.migrate()
    return store


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


@contextmanager
def _old_file(path: Path, version: int) -> Iterator[sqlite3.Connection]:
    """A connection to the voices file at `path`, left at schema `version` when done."""
    conn = sqlite3.connect(path)
    try:
        yield conn
        conn.execute(f"PRAGMA user_version={version}")
        conn.commit()
    finally:
        conn.close()


def _version_1_file(path: Path) -> None:
    """A voices file as version 1 of the gateway wrote it (names unique by ASCII NOCASE)."""
    with _old_file(path, 1) as conn:
        conn.execute(
            "CREATE TABLE voices (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, "
            "description TEXT NOT NULL DEFAULT '', reference_text TEXT NOT NULL, "
            "frames INTEGER NOT NULL, codes BLOB NOT NULL, created_at REAL NOT NULL)"
        )
        codes = reference(2).frames.astype("<u2").tobytes()
        rows = [("voice_1", "Émile", 1.0), ("voice_2", "éMILE", 2.0), ("voice_3", "Old", 3.0)]
        for voice_id, name, created in rows:
            conn.execute(
                "INSERT INTO voices VALUES (?, ?, '', 'Text.', 2, ?, ?)",
                (voice_id, name, codes, created),
            )


def test_a_version_1_sqlite_file_is_migrated_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "voices.sqlite3"
    _version_1_file(path)
    store = _started(path)
    assert _user_version(path) == SCHEMA_VERSION
    # Names that only Unicode folding makes equal: the older keeps the name, both stay.
    assert [v.id for v in store.list()] == ["voice_1", "voice_2", "voice_3"]
    assert store.find("ÉMILE").id == "voice_1"  # type: ignore[union-attr]
    assert store.find("voice_2").name == "éMILE"  # type: ignore[union-attr]
    assert store.find("old").id == "voice_3"  # type: ignore[union-attr]
    with pytest.raises(VoiceNameTaken):
        store.create("OLD", reference())
    np.testing.assert_array_equal(store.reference(store.list()[2]).frames, reference(2).frames)
    # Voices from before owners existed are shared by everyone, deletable by admins only.
    assert all(v.shared and v.owner is None for v in store.list())
    assert store.find("old", VoiceAccess(owner="key:someone")).id == "voice_3"  # type: ignore[union-attr]
    store.create("Old", reference(), owner="key:someone", shared=False)  # a namespace of its own
    store.close()


def _version_3_file(path: Path) -> None:
    """What the version 3 gateway left: unique folded names, consent, no owners."""
    _version_1_file(path)
    with _old_file(path, 3) as conn:
        conn.execute("ALTER TABLE voices ADD COLUMN name_key TEXT")
        conn.execute("UPDATE voices SET name_key = id")
        conn.execute("CREATE UNIQUE INDEX voices_name_key ON voices (name_key)")
        conn.execute("ALTER TABLE voices ADD COLUMN consent TEXT NOT NULL DEFAULT ''")
        conn.execute("UPDATE voices SET consent = 'cons_' || id")


def test_a_version_3_sqlite_file_keeps_consent_and_gains_owners(tmp_path: Path) -> None:
    path = tmp_path / "voices.sqlite3"
    _version_3_file(path)
    store = _started(path)
    voices = store.list()
    assert [v.consent for v in voices] == ["cons_voice_1", "cons_voice_2", "cons_voice_3"]
    assert all(v.shared and v.owner is None for v in voices)
    np.testing.assert_array_equal(store.reference(voices[2]).frames, reference(2).frames)
    new = store.create("New", reference(), consent="cons_9", owner="key:a", shared=False)
    assert (new.consent, new.owner, new.shared) == ("cons_9", "key:a", False)
    assert store.find("new", VoiceAccess(owner="key:a")) == new
    assert store.find("new", VoiceAccess(owner="key:b")) is None
    assert _user_version(path) == SCHEMA_VERSION == 4
    store.close()


def test_a_newer_sqlite_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "voices.sqlite3"
    SqliteVoiceStore(path).create("x", reference())
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="upgrade the gateway"):
        SqliteVoiceStore(path).migrate()


# --- PostgreSQL specifics -----------------------------------------------------------------
def test_replicas_starting_together_migrate_once(postgres_server: PostgresServer) -> None:
    url = postgres_server.fresh_database()
    stores = [PostgresVoiceStore(url) for _ in range(4)]
    errors: list[BaseException] = []

    def start(_: int, s: PostgresVoiceStore) -> None:
        try:
            s.migrate()
        except BaseException as exc:
            errors.append(exc)

    at_once(stores, start)
    try:
        assert errors == []
        voice = stores[0].create("Shared", reference())
        assert [s.find("shared") for s in stores] == [voice] * 4
    finally:
        for s in stores:
            s.close()


def test_a_schema_1_postgres_gains_consent(postgres_server: PostgresServer) -> None:
    url = postgres_server.fresh_database()
    with psycopg.connect(url, autocommit=True) as conn:  # what schema 1 left behind
        conn.execute(_POSTGRES_MIGRATIONS[0])
        conn.execute("CREATE TABLE voice_store_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO voice_store_schema VALUES (1)")
        conn.execute(
            "INSERT INTO voices (id, name, name_key, reference_text, frames, codes, created_at) "
            "VALUES ('voice_old', 'Old', 'old', 'Text.', 2, %s, 1.0)",
            (reference(2).frames.astype("<u2").tobytes(),),
        )
    store = PostgresVoiceStore(url)
    try:
        store.migrate()
        old = store.find("old")
        assert old is not None and old.consent == ""
        np.testing.assert_array_equal(store.reference(old).frames, reference(2).frames)
        assert store.create("New", reference(), consent="cons_9").consent == "cons_9"
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT version FROM voice_store_schema").fetchone()
        assert row == (len(_POSTGRES_MIGRATIONS),)
    finally:
        store.close()


def test_a_version_1_postgres_database_is_migrated(postgres_url: str) -> None:
    codes = reference(2).frames.astype("<u2").tobytes()
    with psycopg.connect(postgres_url) as conn:
        conn.execute(str(_POSTGRES_MIGRATIONS[0]))
        conn.execute("CREATE TABLE voice_store_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO voice_store_schema VALUES (1)")
        rows = [("voice_1", "Ｅmile", 1.0), ("voice_2", "émile", 2.0), ("voice_3", "Old", 3.0)]
        for voice_id, name, created in rows:
            conn.execute(
                "INSERT INTO voices (id, name, name_key, reference_text, frames, codes, "
                "created_at) VALUES (%s, %s, %s, 'Text.', 2, %s, %s)",
                (voice_id, name, name.casefold(), codes, created),
            )
    store = PostgresVoiceStore(postgres_url)
    try:
        store.migrate()
        voices = store.list()
        assert [v.id for v in voices] == ["voice_1", "voice_2", "voice_3"]
        assert all(v.shared and v.owner is None for v in voices)
        # Names that only the new folding makes equal: the older keeps the name.
        assert store.find("EMILE").id == "voice_1"  # type: ignore[union-attr]
        with pytest.raises(VoiceNameTaken):
            store.create("OLD", reference())
        store.create("Old", reference(), owner="key:someone", shared=False)
        np.testing.assert_array_equal(store.reference(voices[2]).frames, reference(2).frames)
    finally:
        store.close()


def test_an_unreachable_postgres_is_a_503_not_a_hang() -> None:
    url = unused_port_url().replace("http://", "postgresql://nobody@") + "/voices"
    store = PostgresVoiceStore(url)
    try:
        with pytest.raises(VoiceStoreUnavailable) as info:
            store.migrate()
        assert info.value.status_code == 503
        assert "nobody" not in info.value.message  # no credentials in messages
    finally:
        store.close()


# --- choosing a store ---------------------------------------------------------------------
def test_voice_store_urls(tmp_path: Path) -> None:
    assert sqlite_path(None, tmp_path) == tmp_path / "voices.sqlite3"
    assert sqlite_path("sqlite:///rel/v.db", tmp_path) == Path("rel/v.db")
    assert sqlite_path("sqlite:////abs/v.db", tmp_path) == Path("/abs/v.db")
    assert sqlite_path("postgresql://h/db", tmp_path) is None
    with tempfile.TemporaryDirectory() as tmp:
        assert isinstance(open_voice_store(None, Path(tmp)), SqliteVoiceStore)
    assert isinstance(open_voice_store("postgres://u:p@h/db", tmp_path), PostgresVoiceStore)
    with pytest.raises(ValueError, match="VOICE_STORE_URL"):
        open_voice_store("mysql://u:secret@h/db", tmp_path)
