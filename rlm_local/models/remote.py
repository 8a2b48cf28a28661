"""A model behind OpenAI-compatible HTTP servers (llama-server, vLLM, Ollama) on the user's network.

Several endpoints serve the same model: calls go to the least busy healthy one, at most
`concurrency` in flight per endpoint; a connection error marks the endpoint down for a while and
the call is retried on another, with backoff. Thread-safe, so the engine can fan a batch out.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from rlm_local.config import ModelSpec, ServerSpec
from rlm_local.errors import ConfigError, ContextOverflowError, RlmLocalError
from rlm_local.models.backend import TEMPLATE_TOKENS_FIXED, TEMPLATE_TOKENS_PER_MESSAGE
from rlm_local.models.contract import Completion, Sampling

CHARS_PER_TOKEN_ESTIMATE = 3.5  # no portable tokenize endpoint: a cautious estimate
DOWN_SECONDS = 5.0
OVERFLOW_MARKERS = ("context", "too long", "exceed", "maximum")


class ServerError(RlmLocalError):
    """No endpoint could answer a call; the sentence names what was tried."""


@dataclass
class _Endpoint:
    url: str
    slots: threading.Semaphore
    in_flight: int = 0
    down_until: float = 0.0
    calls: int = 0
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class OpenAIModel:
    """Chat completions over HTTP; the same `chat` as LocalModel, usable as root or sub-model."""

    def __init__(self, spec: ModelSpec, retries: int = 4) -> None:
        if spec.server is None:
            raise ConfigError(f"Model '{spec.name}' has no server entry.")
        server: ServerSpec = spec.server
        self.name = spec.name
        self.server = server
        self.n_ctx = spec.n_ctx
        self.retries = retries
        self.endpoints = [
            _Endpoint(url, threading.BoundedSemaphore(server.concurrency))
            for url in server.base_urls
        ]
        self.parallelism = server.concurrency * len(self.endpoints)  # calls that may run at once
        self._pick_lock = threading.Lock()
        self._api_key = None
        if server.api_key_env:
            self._api_key = os.environ.get(server.api_key_env)
            if not self._api_key:
                raise ConfigError(
                    f"Model '{spec.name}' reads its API key from ${server.api_key_env}, "
                    "which is not set."
                )

    @property
    def identity(self) -> str:
        """The cache key's model part: the declared weights, else the served name and revision."""
        if self.server.sha256:
            return self.server.sha256
        label = f"openai:{self.server.model}@{self.server.revision or 'unpinned'}"
        return hashlib.sha256(label.encode()).hexdigest()

    def count_tokens(self, text: str) -> int:
        return int(len(text) / CHARS_PER_TOKEN_ESTIMATE) + 1

    def count_message_tokens(self, messages: list[dict[str, str]]) -> int:
        body = sum(self.count_tokens(m["content"]) for m in messages)
        return body + TEMPLATE_TOKENS_PER_MESSAGE * len(messages) + TEMPLATE_TOKENS_FIXED

    def _pick(self) -> _Endpoint | None:
        """The least busy endpoint that is not marked down (None: all are down)."""
        now = time.monotonic()
        with self._pick_lock:
            healthy = [e for e in self.endpoints if e.down_until <= now]
            if not healthy:
                return None
            return min(healthy, key=lambda e: (e.in_flight, e.calls))

    def _post(self, endpoint: _Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            endpoint.url + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}),
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.server.timeout) as response:
            return json.loads(response.read())

    def chat(self, messages: list[dict[str, str]], sampling: Sampling) -> Completion:
        """`assistant_prefix` cannot be forced over this API: it is asked for, and stripped.

        The whole round trip counts as generation time (no load, prompt evaluation or evaluated
        tokens are reported): the server's split of it is not visible over this API.
        """
        prompt_tokens = self.count_message_tokens(messages)
        limit = self.n_ctx - sampling.max_tokens
        if prompt_tokens > limit:
            raise ContextOverflowError(
                f"The prompt has about {prompt_tokens} tokens but {self.name} has room for "
                f"{limit}; split the input into smaller pieces.",
                prompt_tokens=prompt_tokens,
                limit=limit,
            )
        started = time.perf_counter()
        data = self._send(self._body(messages, sampling))
        choice = data["choices"][0]
        text = choice.get("message", {}).get("content") or ""
        prefix = sampling.assistant_prefix.strip()
        if sampling.assistant_prefix and text.lstrip().startswith(prefix):
            text = text.lstrip()[len(prefix) :].lstrip("\n")
        usage = data.get("usage") or {}
        seconds = time.perf_counter() - started
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", prompt_tokens)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=seconds,
            finish_reason=choice.get("finish_reason") or "stop",
            generation_seconds=seconds,  # the server's own split is not ours to see
        )

    def _body(self, messages: list[dict[str, str]], sampling: Sampling) -> dict[str, Any]:
        """The request: the assistant prefix is not sent (see `chat`)."""
        body: dict[str, Any] = {
            "model": self.server.model,
            "messages": messages,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.grammar is not None:
            body["grammar"] = sampling.grammar  # llama.cpp servers honour it; others ignore it
        return body

    def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        errors: list[str] = []
        for attempt in range(self.retries + 1):
            endpoint = self._pick()
            if endpoint is None:
                time.sleep(min(DOWN_SECONDS, 0.5 * 2**attempt))
                continue
            with endpoint.slots:
                with endpoint.lock:
                    endpoint.in_flight += 1
                    endpoint.calls += 1
                try:
                    return self._post(endpoint, body)
                except urllib.error.HTTPError as exc:
                    detail = exc.read().decode(errors="replace")[:300]
                    if exc.code == 400 and any(m in detail.lower() for m in OVERFLOW_MARKERS):
                        raise ContextOverflowError(
                            f"{self.name} refused the prompt as too long; split the input.",
                            prompt_tokens=self.count_message_tokens(body["messages"]),
                            limit=self.n_ctx,
                        ) from None
                    if exc.code < 500 and exc.code != 429:
                        raise ServerError(
                            f"{endpoint.url} refused the request ({exc.code}): {detail}"
                        ) from None
                    errors.append(f"{endpoint.url}: HTTP {exc.code}")
                except (OSError, ValueError) as exc:  # refused, reset, timed out, bad JSON
                    errors.append(f"{endpoint.url}: {exc}")
                    with endpoint.lock:
                        endpoint.failures += 1
                        endpoint.down_until = time.monotonic() + DOWN_SECONDS
                finally:
                    with endpoint.lock:
                        endpoint.in_flight -= 1
            time.sleep(min(2.0, 0.1 * 2**attempt))
        raise ServerError(
            f"No server of {self.name} answered after {self.retries + 1} tries "
            f"({'; '.join(errors[-3:]) or 'all endpoints down'}); check that they are running."
        )

    def close(self) -> None:
        return None
