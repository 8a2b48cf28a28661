"""Run by test_cache.py in separate processes: real sub-model calls through the real cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rlm_local.cache import CallCache, cached_chat
from rlm_local.models.backend import BackendOptions, LocalModel
from rlm_local.models.contract import Completion, Sampling
from rlm_local.models.store import ResolvedModel


class CountingModel(LocalModel):
    """The real model; each real computation is appended to a log, so tests can count them."""

    log: Path

    def chat(self, messages: list[dict[str, str]], sampling: Sampling) -> Completion:
        with self.log.open("a") as fh:
            fh.write(messages[-1]["content"] + "\n")
        return super().chat(messages, sampling)


def main() -> None:
    model_path, sha, cache_dir, log, *prompts = sys.argv[1:]
    model = CountingModel(
        ResolvedModel(name="sub", path=Path(model_path), sha256=sha, n_ctx=2048),
        BackendOptions(n_threads=1),
    )
    model.log = Path(log)
    cache = CallCache(Path(cache_dir))
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        result = cached_chat(model, cache, messages, Sampling(max_tokens=8))
        print(json.dumps({"prompt": prompt, "cached": result.cached}), flush=True)
    print(json.dumps({"loaded": model.loaded}), flush=True)


if __name__ == "__main__":
    main()
