"""Every model keeps rlm_local.models.contract.ChatModel: the llama.cpp model (real sub-model,
`models` marker), a served model (behind a stdlib fake of the OpenAI chat endpoint on 127.0.0.1),
the tests' scripted model and the benchmarks' smoke-run models."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from scripted import ScriptedModel

from benchmarks.scripted import scripted_models
from rlm_local.cache import CallCache, cached_chat
from rlm_local.config import ModelSpec, ServerSpec
from rlm_local.errors import ContextOverflowError
from rlm_local.models import ResolvedModel
from rlm_local.models.backend import BackendOptions, LocalModel
from rlm_local.models.contract import ChatModel, Completion, Sampling
from rlm_local.models.remote import OpenAIModel

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name one colour."},
]
FAKE_REPLY = "```python\nprint('red')"


def _keeps_the_contract(model: ChatModel, tmp_path: Path) -> None:
    assert isinstance(model, ChatModel)
    assert isinstance(model.identity, str) and model.identity
    assert model.n_ctx > 0 and model.parallelism >= 1
    assert model.count_tokens("The lighthouse keeper counted the ships.") > 0
    body = sum(model.count_tokens(m["content"]) for m in MESSAGES)
    assert model.count_message_tokens(MESSAGES) > body  # the template's markers count too

    reply = model.chat(MESSAGES, Sampling(max_tokens=8))
    assert isinstance(reply, Completion) and isinstance(reply.text, str)
    assert 0 <= reply.completion_tokens <= 8 and reply.finish_reason in ("stop", "length")

    cache = CallCache(tmp_path / "cache")
    first = cached_chat(model, cache, MESSAGES, Sampling(max_tokens=8, stop=("\n",)))
    as_list = Sampling(max_tokens=8, stop=["\n"])  # type: ignore[arg-type]
    again = cached_chat(model, cache, MESSAGES, as_list)
    assert (first.cached, again.cached) == (False, True)
    assert again.completion == first.completion

    too_long = [{"role": "user", "content": "ship " * model.n_ctx}]
    with pytest.raises(ContextOverflowError):
        model.chat(too_long, Sampling(max_tokens=8))
    model.close()
    model.close()  # closing twice is harmless


def test_the_scripted_model_keeps_the_contract(tmp_path: Path) -> None:
    _keeps_the_contract(ScriptedModel(answer=lambda prompt: "red", n_ctx=512), tmp_path)


@pytest.mark.parametrize("role", [0, 1])
def test_the_benchmarks_smoke_models_keep_the_contract(role: int, tmp_path: Path) -> None:
    model = scripted_models()[role]
    model.n_ctx = 512  # a window a test can overflow cheaply
    _keeps_the_contract(model, tmp_path)


class _FakeChatEndpoint(BaseHTTPRequestHandler):
    """POST /v1/chat/completions as OpenAI-compatible servers answer it; records each body."""

    bodies: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append(body)
        reply = {
            "choices": [{"message": {"content": FAKE_REPLY}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 5},
        }
        data = json.dumps(reply).encode()
        self.send_response(200 if self.path == "/v1/chat/completions" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def fake_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []
    handler = type("Handler", (_FakeChatEndpoint,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _served(url: str) -> OpenAIModel:
    server = ServerSpec(base_urls=(url,), model="fake", concurrency=3)
    return OpenAIModel(ModelSpec(name="served", server=server, n_ctx=512))


def test_a_served_model_keeps_the_contract(
    fake_server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, bodies = fake_server
    model = _served(url)
    _keeps_the_contract(model, tmp_path)
    assert model.parallelism == 3
    assert len(bodies) == 2  # the plain call and the cache's miss; the hit and overflow sent none


def test_a_served_model_sends_the_sampling_and_strips_the_prefix(
    fake_server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, bodies = fake_server
    sampling = Sampling(
        max_tokens=16,
        temperature=0.7,
        stop=("```",),
        grammar='root ::= "a"',
        seed=3,
        assistant_prefix="```python\n",
    )
    reply = _served(url).chat(MESSAGES, sampling)
    assert reply.text == "print('red')"
    assert bodies[-1] == {
        "model": "fake",
        "messages": MESSAGES,
        "max_tokens": 16,
        "temperature": 0.7,
        "stop": ["```"],
        "seed": 3,
        "grammar": 'root ::= "a"',
    }
    _served(url).chat(MESSAGES, Sampling(max_tokens=4))
    assert bodies[-1] == {"model": "fake", "messages": MESSAGES, "max_tokens": 4, "temperature": 0}


@pytest.mark.models
def test_the_llama_cpp_model_keeps_the_contract(
    sub_model_file: ResolvedModel, tmp_path: Path
) -> None:
    """An instance of its own (the session's is not closed under other tests), in a window a
    test can overflow cheaply."""
    model = LocalModel(sub_model_file, BackendOptions(n_ctx=512, n_threads=2))
    _keeps_the_contract(model, tmp_path)
    assert model.parallelism == 1 and not model.loaded


def test_a_sampling_is_frozen_and_keys_as_it_always_did() -> None:
    sampling = Sampling(max_tokens=8, stop=["a"])  # type: ignore[arg-type]
    assert sampling.stop == ("a",) and hash(sampling) == hash(Sampling(8, stop=("a",)))
    with pytest.raises(AttributeError):
        sampling.max_tokens = 9  # type: ignore[misc]
    assert sampling.params() == {
        "max_tokens": 8,
        "temperature": 0.0,
        "stop": ["a"],
        "grammar": None,
        "seed": None,
    }
    assert Sampling(8, assistant_prefix="x").params()["assistant_prefix"] == "x"
    assert asdict(Sampling(8, temperature=0.5, seed=1))["seed"] == 1
    assert Sampling(8, temperature=0.5, seed=1).deterministic
    assert not Sampling(8, temperature=0.5).deterministic
