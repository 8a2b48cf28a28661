"""The store of evaluated prompt prefixes: what it keeps, what it refuses, what it evicts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rlm_local.models.prefixes import PrefixStore, prefix_key

VALIDITY = {"model_sha256": "ab" * 32, "context": {"n_ctx": 4096}}


def _key(tokens: list[int], **validity: object) -> str:
    return prefix_key({**VALIDITY, **validity}, tokens)


def test_a_saved_state_comes_back_byte_for_byte(tmp_path: Path) -> None:
    store = PrefixStore(tmp_path / "prefixes")
    key = _key([1, 2, 3])
    store.save(key, b"\x00\x01state", 3, {"model": "m"})
    assert store.load(key) == b"\x00\x01state"
    assert store.stats().entries == 1
    assert store.stats().size_bytes == len(b"\x00\x01state")


def test_the_key_changes_with_tokens_and_with_every_validity_field() -> None:
    base = _key([1, 2, 3])
    assert _key([1, 2, 4]) != base
    assert _key([1, 2]) != base
    assert _key([1, 2, 3], context={"n_ctx": 8192}) != base
    assert _key([1, 2, 3], model_sha256="cd" * 32) != base
    assert _key([1, 2, 3]) == base


@pytest.mark.parametrize(
    "damage",
    [
        lambda state, record: state.write_bytes(state.read_bytes()[:-3]),  # truncated
        lambda state, record: state.write_bytes(b"X" + state.read_bytes()[1:]),  # a flipped byte
        lambda state, record: record.write_text("{not json"),
        lambda state, record: record.write_text(json.dumps({"format": 99})),
        lambda state, record: state.unlink(),
        lambda state, record: record.unlink(),
    ],
    ids=["truncated", "flipped", "bad-record", "other-format", "no-state", "no-record"],
)
def test_a_damaged_entry_is_a_miss_and_is_deleted(tmp_path: Path, damage) -> None:
    store = PrefixStore(tmp_path)
    key = _key([7, 8, 9])
    store.save(key, b"0123456789" * 10, 3, {})
    damage(tmp_path / f"{key}.state", tmp_path / f"{key}.json")
    assert store.load(key) is None
    assert not (tmp_path / f"{key}.state").exists()
    assert not (tmp_path / f"{key}.json").exists()


def test_a_record_moved_to_another_key_is_refused(tmp_path: Path) -> None:
    store = PrefixStore(tmp_path)
    first, second = _key([1]), _key([2])
    store.save(first, b"first-state", 1, {})
    for suffix in (".state", ".json"):
        os.replace(tmp_path / f"{first}{suffix}", tmp_path / f"{second}{suffix}")
    assert store.load(second) is None


def test_the_least_recently_used_entries_go_when_the_store_outgrows_its_limit(
    tmp_path: Path,
) -> None:
    store = PrefixStore(tmp_path, size_limit_mb=1)
    a_third = b"s" * (300 << 10)
    keys = [_key([n]) for n in range(4)]
    for age, key in enumerate(keys[:3]):
        store.save(key, a_third, 1, {})
        stamp = 1_000_000 + age
        for suffix in (".state", ".json"):
            os.utime(tmp_path / f"{key}{suffix}", (stamp, stamp))
    assert store.load(keys[0]) is not None  # used now: the newest
    store.save(keys[3], a_third, 1, {})  # 4 x 300 KiB > 1 MiB: one must go
    assert store.load(keys[1]) is None  # the oldest unused
    assert all(store.load(k) is not None for k in (keys[0], keys[2], keys[3]))
    assert store.stats().size_bytes <= 1 << 20


def test_a_state_larger_than_the_whole_store_is_not_kept(tmp_path: Path) -> None:
    store = PrefixStore(tmp_path, size_limit_mb=1)
    store.save(_key([1]), b"x" * ((1 << 20) + 1), 1, {})
    assert store.stats().entries == 0


def test_clear_removes_one_models_entries_or_all_and_leftover_writes(tmp_path: Path) -> None:
    store = PrefixStore(tmp_path)
    store.save(_key([1]), b"one", 1, {"model_sha256": "a" * 64})
    store.save(_key([2]), b"two", 1, {"model_sha256": "b" * 64})
    (tmp_path / ".tmp-abc.state").write_bytes(b"left by a killed process")
    assert store.stats().entries == 2  # the leftover is not an entry
    assert store.clear("a" * 64) == 1
    assert store.load(_key([2])) == b"two"
    assert store.clear() == 1
    assert list(tmp_path.iterdir()) == []


def test_keys_that_are_not_digests_never_reach_the_file_system(tmp_path: Path) -> None:
    store = PrefixStore(tmp_path)
    with pytest.raises(ValueError):
        store.load("../../etc/passwd")
    with pytest.raises(ValueError):
        store.save("A" * 64, b"x", 1, {})


def test_an_unwritable_directory_costs_a_miss_not_a_crash(tmp_path: Path) -> None:
    blocker = tmp_path / "prefixes"
    blocker.write_text("a file where the directory should be")
    store = PrefixStore(blocker)
    store.save(_key([1]), b"x", 1, {})
    assert store.load(_key([1])) is None
    assert store.stats().entries == 0
