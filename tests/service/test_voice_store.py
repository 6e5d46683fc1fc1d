"""The SQLite voice store: exact codes, unique names, atomic writes, reopening."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from app.service.cloning import VoiceReference
from app.service.voice_store import ID_PREFIX, VoiceNameTaken, VoiceStore


def reference(frames: int = 5, text: str = "Hello there.", seed: int = 0) -> VoiceReference:
    codes = np.random.default_rng(seed).integers(0, 4096, size=(frames, 7))
    return VoiceReference(text=text, frames=codes)


@pytest.fixture
def store(tmp_path: Path) -> VoiceStore:
    s = VoiceStore(tmp_path / "data" / "voices.sqlite3")
    yield s  # type: ignore[misc]
    s.close()


def test_nothing_is_written_until_a_voice_is_saved(store: VoiceStore) -> None:
    assert store.list() == [] and store.get("voice_x") is None and store.find("x") is None
    assert store.delete("voice_x") is False
    assert not store.path.exists() and not store.path.parent.exists()


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


def test_names_are_unique_case_insensitively(store: VoiceStore) -> None:
    store.create("Narrator", reference())
    with pytest.raises(VoiceNameTaken) as info:
        store.create("nArRaToR", reference())
    assert info.value.status_code == 409 and info.value.param == "name"
    assert len(store.list()) == 1


def test_concurrent_creates_of_one_name_have_one_winner(tmp_path: Path) -> None:
    # Separate store objects: separate connections, as separate processes would have.
    path = tmp_path / "voices.sqlite3"
    VoiceStore(path).create("seed", reference())  # the schema exists before the race
    stores = [VoiceStore(path) for _ in range(8)]
    results: list[str] = []
    barrier = threading.Barrier(len(stores))

    def attempt(s: VoiceStore) -> None:
        barrier.wait()
        try:
            s.create("same", reference())
            results.append("ok")
        except VoiceNameTaken:
            results.append("taken")

    threads = [threading.Thread(target=attempt, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] + ["taken"] * 7
    assert [v.name for v in VoiceStore(path).list()] == ["seed", "same"]


def test_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "voices.sqlite3"
    first = VoiceStore(path)
    ref = reference(11, "Persist me.", seed=5)
    voice = first.create("Keeper", ref, "desc")
    first.close()
    second = VoiceStore(path)
    assert second.get(voice.id) == voice
    np.testing.assert_array_equal(second.reference(voice).frames, ref.frames)
    second.close()


def test_a_failed_write_leaves_nothing(store: VoiceStore) -> None:
    store.create("kept", reference())
    with pytest.raises(ValueError):
        store.create("bad", VoiceReference(text="x", frames=np.zeros((0, 7), dtype=np.int64)))
    # A write that fails inside the transaction is rolled back as a whole.
    with pytest.raises(sqlite3.IntegrityError), store._db(create=True) as conn:
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO voices (id, name, reference_text, frames, codes, created_at) "
                "VALUES ('voice_a', 'half', '', 1, x'00', 0)"
            )
            conn.execute(
                "INSERT INTO voices (id, name, reference_text, frames, codes, created_at) "
                "VALUES ('voice_a', 'dup id', '', 1, x'00', 0)"
            )
        finally:
            conn.execute("ROLLBACK")
    assert [v.name for v in store.list()] == ["kept"]


@settings(max_examples=25, deadline=None)
@given(
    codes=hnp.arrays(
        np.int64, st.tuples(st.integers(1, 40), st.just(7)), elements=st.integers(0, 4095)
    ),
    text=st.text(max_size=200),
)
def test_codes_and_text_round_trip_exactly(codes: np.ndarray, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = VoiceStore(Path(tmp) / "rt.sqlite3")
        try:
            voice = s.create("v", VoiceReference(text=text, frames=codes))
            s.close()  # read back through a fresh connection
            saved = s.get(voice.id)
            assert saved == voice
            back = s.reference(saved)
            np.testing.assert_array_equal(back.frames, codes)
            assert back.text == text
        finally:
            s.close()
