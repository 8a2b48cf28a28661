"""The Python API: everything the CLI does, without the CLI.

from rlm_local import RLM
result = RLM().ask("What is the special magic number for X?", open("big.txt").read())
print(result.answer)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rlm_local.cache import CallCache
from rlm_local.config import Settings, load_settings
from rlm_local.documents import Conversion
from rlm_local.engine import Engine, RunOptions, RunResult
from rlm_local.engine.carryover import Carryover
from rlm_local.errors import RunCancelled
from rlm_local.models import ModelStore
from rlm_local.models.backend import BackendOptions, LocalModel
from rlm_local.models.contract import ChatModel
from rlm_local.models.prefixes import PrefixStore
from rlm_local.trace import TraceWriter, new_run_id

if TYPE_CHECKING:
    from rlm_local.session import Session

Listener = Callable[[dict[str, Any]], None]


class RLM:
    """Holds the two models and the cache across questions, so the second question loads nothing."""

    def __init__(
        self,
        settings: Settings | None = None,
        options: RunOptions | None = None,
        *,
        root: ChatModel | None = None,
        sub: ChatModel | None = None,
        labeller: ChatModel | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.options = options or RunOptions()
        self.store = ModelStore(self.settings.registry, self.settings.models_dir)
        self._root = root
        self._sub = sub
        self._labeller = labeller
        self._cache: CallCache | None = None

    def _model(self, name_or_path: str) -> ChatModel:
        spec = self.settings.registry.models.get(name_or_path)
        if spec is not None and spec.server is not None:
            from rlm_local.models.remote import OpenAIModel

            return OpenAIModel(spec)
        resolved = self.store.resolve(name_or_path)
        return LocalModel(
            resolved,
            BackendOptions(
                n_threads=self.settings.n_threads, n_gpu_layers=self.settings.n_gpu_layers
            ),
            self.prefixes,
        )

    @property
    def prefixes(self) -> PrefixStore | None:
        """Evaluated system prompts on disk; off with the call cache (`--no-cache`)."""
        if not self.settings.use_prefix_cache:
            return None
        return PrefixStore(self.settings.prefixes_dir, self.settings.prefix_cache_mb)

    @property
    def root(self) -> ChatModel:
        if self._root is None:
            self._root = self._model(self.settings.root)
        return self._root

    @property
    def sub(self) -> ChatModel:
        if self._sub is None:
            self._sub = self._model(self.settings.sub)
        return self._sub

    @property
    def labeller(self) -> ChatModel:
        """classify's model; the same object as the root or sub model when it names the same."""
        if self._labeller is None:
            name = self.settings.labeller_model
            if name == self.settings.root:
                self._labeller = self.root
            elif name == self.settings.sub:
                self._labeller = self.sub
            else:
                self._labeller = self._model(name)
        return self._labeller

    @property
    def cache(self) -> CallCache | None:
        if self._cache is None and self.settings.use_cache:
            self._cache = CallCache(self.settings.cache_dir, self.settings.cache_size_mb)
        return self._cache

    def ask(
        self,
        question: str,
        context: str | dict[str, str],
        *,
        on_event: Listener | None = None,
        options: RunOptions | None = None,
        documents: list[Conversion] | None = None,
        cancel: threading.Event | None = None,
        record: Mapping[str, Any] | None = None,
        name: str = "-",
    ) -> RunResult:
        """Answer one question; the run's trace is written to runs/<id>.jsonl as it goes.

        The result's `evidence` gives each passage's path: a dict context's keys, else `name`
        (the file a str came from; `-` for standard input, the default).

        Setting `cancel` (from another thread) stops the run at its next step (turn, cell or
        sub-call) with RunCancelled; model calls made so far stay cached. `record` (e.g. the
        input paths) and `documents` (LoadedInput.conversions: which converter read each file)
        are written to the trace after run_start as an "inputs" event.
        """
        if documents:
            record = {**(record or {}), "documents": [asdict(d) for d in documents]}
        return self.run(question, context, on_event, options, cancel, record, Carryover(), name)

    def run(
        self,
        question: str,
        context: str | dict[str, str],
        on_event: Listener | None,
        options: RunOptions | None,
        cancel: threading.Event | None,
        record: Mapping[str, Any] | None,
        carryover: Carryover,
        name: str = "-",
    ) -> RunResult:
        """`ask` with what a session carries over between questions (see rlm_local.session)."""
        # Resolve every model first: a missing model fails before any work.
        root, sub, labeller = self.root, self.sub, self.labeller
        engine = Engine(
            root, sub, self.cache, options or self.options, labeller=labeller, carryover=carryover
        )
        run_id = new_run_id()
        trace = TraceWriter(self.settings.runs_dir, run_id)
        listeners: list[Listener] = [_recording(trace, record)]
        listeners += [on_event] if on_event else []
        listeners += [_stop_when_set(cancel)] if cancel is not None else []
        try:
            if cancel is not None and cancel.is_set():
                raise RunCancelled("The run was cancelled before it started.")
            result = engine.run(question, context, listeners, name)
        except RunCancelled:
            trace({"type": "cancelled"})
            raise
        finally:
            trace.close()
        result.run_id = run_id
        result.trace_path = str(trace.path)
        return result

    def session(self, context: str | dict[str, str], name: str = "-") -> Session:
        """Follow-up questions on one input: one sandbox worker, earlier answers remembered.

        with rlm.session(text) as chat:
            chat.ask("Who wrote it?")
            chat.ask("And when?")
        """
        from rlm_local.session import Session

        return Session(self, context, name)

    def close(self) -> None:
        models = (self._root, self._sub, self._labeller)  # the labeller may be one of the others
        for model in {id(m): m for m in models if m is not None}.values():
            model.close()
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> RLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recording(trace: TraceWriter, record: Mapping[str, Any] | None) -> Listener:
    """The trace listener; `record` goes in as an "inputs" event right after run_start."""

    def listen(event: dict[str, Any]) -> None:
        trace(event)
        if record is not None and event.get("type") == "run_start":
            trace({"type": "inputs", **record})

    return listen


def _stop_when_set(cancel: threading.Event) -> Listener:
    """Raises RunCancelled at the next event once `cancel` is set, except at the run's end: a
    finished answer is kept."""

    def listen(event: dict[str, Any]) -> None:
        if cancel.is_set() and event.get("type") != "run_end":
            raise RunCancelled("The run was cancelled.")

    return listen
