"""The model-call cache on the real diskcache and the real default sub-model."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_local.cache import CallCache, cached_chat, call_key
from rlm_local.models import ResolvedModel
from rlm_local.models.backend import BackendOptions, LocalModel
from rlm_local.models.contract import Completion, Sampling

WORKER = Path(__file__).with_name("cache_worker.py")
MESSAGES = [{"role": "user", "content": "Name one colour."}]


def test_second_identical_call_is_a_hit_without_loading_the_model(
    tmp_path: Path, sub_model: LocalModel, sub_model_file: ResolvedModel
) -> None:
    cache = CallCache(tmp_path / "cache")
    first = cached_chat(sub_model, cache, MESSAGES, Sampling(max_tokens=8))
    assert not first.cached and first.cacheable

    fresh = LocalModel(sub_model_file, BackendOptions(n_threads=2))  # never loaded
    second = cached_chat(fresh, cache, MESSAGES, Sampling(max_tokens=8))
    assert second.cached
    assert second.completion.text == first.completion.text
    assert not fresh.loaded
    assert (cache.hits, cache.misses) == (1, 1)
    stats = cache.stats()
    assert stats.entries == 1 and stats.hits == 1 and stats.misses == 1
    assert oct((tmp_path / "cache").stat().st_mode & 0o777) == "0o700"


def test_any_change_is_a_miss(tmp_path: Path, sub_model: LocalModel) -> None:
    cache = CallCache(tmp_path / "cache")
    cached_chat(sub_model, cache, MESSAGES, Sampling(max_tokens=8))
    base = call_key(sub_model.identity, MESSAGES, {"max_tokens": 8})
    assert base != call_key("0" * 64, MESSAGES, {"max_tokens": 8})  # another model file
    variants = [
        ([{"role": "user", "content": "Name one colour!"}], Sampling(max_tokens=8)),
        (MESSAGES, Sampling(max_tokens=9)),
        (MESSAGES, Sampling(max_tokens=8, stop=("\n",))),
        (MESSAGES, Sampling(max_tokens=8, temperature=0.5, seed=1)),
        (MESSAGES, Sampling(max_tokens=8, grammar='root ::= "red" | "blue"')),
    ]
    for messages, sampling in variants:
        assert not cached_chat(sub_model, cache, messages, sampling).cached, sampling
    assert cache.stats().entries == 1 + len(variants)


def test_random_sampling_without_seed_is_not_cached(tmp_path: Path, sub_model: LocalModel) -> None:
    cache = CallCache(tmp_path / "cache")
    result = cached_chat(sub_model, cache, MESSAGES, Sampling(max_tokens=4, temperature=0.8))
    assert not result.cacheable and not result.cached
    assert cache.stats().entries == 0


KEYED_MESSAGES = [
    {"role": "system", "content": "Réponds."},
    {"role": "user", "content": "Name one colour."},
]


class _Recording:
    """Just enough of a model for cached_chat: what it was called with, and a fixed reply."""

    identity = "e" * 64

    def __init__(self) -> None:
        self.samplings: list[Sampling] = []

    def chat(self, messages: list[dict[str, str]], sampling: Sampling) -> Completion:
        self.samplings.append(sampling)
        return Completion("x", 1, 1, 0.0, "stop")


@pytest.mark.parametrize(
    ("sampling", "key", "cacheable"),
    [
        (
            Sampling(max_tokens=8),
            "1b7f411d7866d1d0892d30946fe944649de903e8a0f6c962bf07b079447b276e",
            True,
        ),
        (
            Sampling(
                max_tokens=64,
                temperature=0.7,
                stop=("```",),
                grammar='root ::= "a"',
                seed=3,
                assistant_prefix="```python\n",
            ),
            "62aac26ef344ff508df53c2af5094caa7ebffdb6326efcf66a5031283127f659",
            True,
        ),
        (
            Sampling(max_tokens=4, temperature=0.8, stop=("\n", "END")),
            "687e45a20170709bc69be800b29287ff1ab3fec1236a5e3bceef45b863029ae2",
            False,
        ),
    ],
)
def test_keys_are_those_of_the_keyword_era(sampling: Sampling, key: str, cacheable: bool) -> None:
    """The hex strings were computed by cached_chat before Sampling existed, when it took the
    sampling as keywords: a cache filled then must still hit (an empty assistant_prefix is left
    out of the key, a list of stops is keyed like the tuple)."""
    model = _Recording()
    result = cached_chat(model, None, KEYED_MESSAGES, sampling)
    assert (result.key, result.cacheable) == (key, cacheable)
    assert model.samplings == [sampling]
    as_list = Sampling(**{**sampling.params(), "stop": list(sampling.stop)})
    assert cached_chat(model, None, KEYED_MESSAGES, as_list).key == key


def _worker(args: list[str], **kwargs) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        **kwargs,
    )


def test_sigkill_keeps_every_completed_call(tmp_path: Path, sub_model_file: ResolvedModel) -> None:
    prompts = [f"Say the number {i}." for i in range(6)]
    common = [
        str(sub_model_file.path),
        sub_model_file.sha256,
        str(tmp_path / "c"),
        str(tmp_path / "log"),
    ]
    proc = _worker(common + prompts)
    assert proc.stdout is not None
    done = [json.loads(proc.stdout.readline()) for _ in range(3)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [d["cached"] for d in done] == [False, False, False]
    entries = CallCache(tmp_path / "c").stats().entries
    assert entries >= 3  # a 4th may have completed between the read and the kill

    rerun = _worker(common + prompts)
    out, _ = rerun.communicate(timeout=300)
    lines = [json.loads(x) for x in out.splitlines()]
    cached = [x["cached"] for x in lines[:-1]]
    assert cached[:entries] == [True] * entries
    assert cached[entries:] == [False] * (len(prompts) - entries)


def test_two_processes_compute_one_key_once(tmp_path: Path, sub_model_file: ResolvedModel) -> None:
    log = tmp_path / "log"
    common = [str(sub_model_file.path), sub_model_file.sha256, str(tmp_path / "c"), str(log)]
    procs = [_worker(common + ["Write one word about the sea."]) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    results = [[json.loads(x) for x in out.splitlines()] for out in outputs]
    assert len(log.read_text().splitlines()) == 1  # one real computation
    assert sorted(r[0]["cached"] for r in results) == [False, True]
    assert sorted(r[1]["loaded"] for r in results) == [False, True]  # the waiter never loaded it


class _Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.path),))


def test_a_tampered_pickled_row_is_refused_not_unpickled(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "cache")
    key = "f" * 64
    cache.put(key, {"text": "honest"}, "model")
    marker = tmp_path / "pwned"
    db = sqlite3.connect(tmp_path / "cache" / "cache.db")
    payload = pickle.dumps(_Exploit(str(marker)))
    db.execute(
        "UPDATE Cache SET mode = 4, value = ? WHERE key = ?",
        (sqlite3.Binary(payload), f"call:{key}"),
    )
    db.commit()
    db.close()
    assert cache.get(key) is None
    assert not marker.exists()
    assert cache.refused == 1
    assert cache.get(key) is None  # the row was dropped


def test_clear_by_model(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "cache")
    cache.put("a" * 64, {"text": "1"}, "model-a")
    cache.put("b" * 64, {"text": "2"}, "model-b")
    assert cache.clear("model-a") == 1
    assert cache.get("a" * 64) is None and cache.get("b" * 64) == {"text": "2"}
