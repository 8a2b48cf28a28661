"""Served models: the default sub-model behind two real llama-cpp-python OpenAI-compatible servers
on 127.0.0.1, fan-out of batched sub-calls, and a server killed mid-batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scripted import ScriptedModel

from benchmarks.servers import SERVED_NAME, free_port, start_server, wait_ready
from rlm_local.api import RLM
from rlm_local.cache import CallCache
from rlm_local.config import ModelSpec, ServerSpec, load_settings
from rlm_local.engine import RunOptions
from rlm_local.errors import ConfigError
from rlm_local.models import ResolvedModel
from rlm_local.models.contract import Sampling
from rlm_local.models.remote import OpenAIModel, ServerError


def _start_server(model: ResolvedModel, port: int, log: Path) -> subprocess.Popen[bytes]:
    return start_server(model, port, log, threads=1, n_ctx=2048)


@pytest.fixture(scope="module")
def servers(
    sub_model_file: ResolvedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    logs = tmp_path_factory.mktemp("server-logs")
    started = []
    for i in range(2):
        port = free_port()
        proc = _start_server(sub_model_file, port, logs / f"server{i}.log")
        started.append((f"http://127.0.0.1:{port}/v1", proc))
    try:
        for url, proc in started:
            wait_ready(url, proc)
        yield started
    finally:
        for _, proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _spec(urls: list[str], **server: object) -> ModelSpec:
    return ModelSpec(
        name="served-sub",
        server=ServerSpec(base_urls=tuple(urls), model=SERVED_NAME, **server),  # type: ignore[arg-type]
        n_ctx=2048,
    )


PROMPTS = [f"Reply with the number {i} and nothing else." for i in range(6)]


def test_batch_fans_out_over_two_servers_in_order(
    tmp_home: Path, servers: list[tuple[str, subprocess.Popen[bytes]]]
) -> None:
    sub = OpenAIModel(_spec([url for url, _ in servers], concurrency=1))
    code = f"import json\nr = llm_query_batched({PROMPTS + PROMPTS[:1]!r})\nFINAL(json.dumps(r))"
    rlm = RLM(load_settings(), RunOptions(mode="rlm"), root=ScriptedModel([code]), sub=sub)
    result = rlm.ask("q?", "some text " * 100)
    answers = json.loads(result.answer)
    assert len(answers) == 7
    for i, answer in enumerate(answers[:6]):
        assert str(i) in answer, (i, answer)
    assert answers[6] == answers[0]  # the duplicate was asked once
    assert result.stats.sub_calls == 6
    assert all(e.calls >= 1 for e in sub.endpoints)  # both servers served part of the batch

    again = RLM(load_settings(), RunOptions(mode="rlm"), root=ScriptedModel([code]), sub=sub)
    cached = again.ask("q?", "some text " * 100)
    assert json.loads(cached.answer) == answers
    # The served model's calls are memoized too: only the (new) scripted root turn is a miss.
    assert (cached.stats.cache_hits, cached.stats.cache_misses) == (6, 1)


def test_a_server_killed_mid_batch_loses_no_completed_call(
    tmp_home: Path,
    sub_model_file: ResolvedModel,
    servers: list[tuple[str, subprocess.Popen[bytes]]],
    tmp_path: Path,
) -> None:
    # A third server of our own, so killing it leaves the module's two untouched.
    port = free_port()
    victim = _start_server(sub_model_file, port, tmp_path / "victim.log")
    victim_url = f"http://127.0.0.1:{port}/v1"
    wait_ready(victim_url, victim)
    survivor_url = servers[0][0]
    sub = OpenAIModel(_spec([victim_url, survivor_url], concurrency=1))
    prompts = [
        f"Write the word {w} in capitals." for w in ("tree", "lake", "road", "bird", "moon", "sand")
    ]
    code = f"import json\nFINAL(json.dumps(llm_query_batched({prompts!r})))"
    rlm = RLM(load_settings(), RunOptions(mode="rlm"), root=ScriptedModel([code]), sub=sub)
    cache_dir = load_settings().cache_dir

    def kill_after_first_completion() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if cache_dir.exists() and CallCache(cache_dir).stats().entries >= 2:
                break
            time.sleep(0.1)
        os.killpg(victim.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_after_first_completion)
    killer.start()
    try:
        result = rlm.ask("q?", "text " * 100)
    finally:
        killer.join()
        victim.wait()
    answers = json.loads(result.answer)
    assert victim.returncode is not None  # it really died mid-run
    assert len(answers) == 6
    assert all(not a.startswith("[llm_query error") for a in answers), answers
    assert sub.endpoints[0].failures >= 1  # the dead one was noticed ...
    assert CallCache(cache_dir).stats().entries >= 6  # ... and every call was kept


def test_served_identity_names_model_and_revision() -> None:
    a = OpenAIModel(_spec(["http://127.0.0.1:1/v1"]))
    b = OpenAIModel(_spec(["http://127.0.0.1:1/v1"], revision="abc"))
    c = OpenAIModel(_spec(["http://127.0.0.1:1/v1"], sha256="e" * 64))
    assert len({a.identity, b.identity, c.identity}) == 3
    assert c.identity == "e" * 64


def test_unreachable_servers_fail_in_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens there
    model = OpenAIModel(_spec([f"http://127.0.0.1:{port}/v1"]), retries=1)
    monkeypatch.setattr("rlm_local.models.remote.DOWN_SECONDS", 0.1)
    with pytest.raises(ServerError, match="No server of served-sub answered"):
        model.chat([{"role": "user", "content": "hi"}], Sampling(max_tokens=4))
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"\$NOPE_KEY"):
        OpenAIModel(_spec(["http://127.0.0.1:1/v1"], api_key_env="NOPE_KEY"))
