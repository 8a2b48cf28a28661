"""The backend measured against llama.cpp itself, and the cold start of a question.

`python -m benchmarks backend`: prompt-eval and generation tokens/s of the same prompt and settings
through `LocalModel.chat` and through llama-cpp-python's `Llama.create_completion` called directly
(timed the same way from outside). Repetitions alternate the two, each on a prompt whose first
token differs, so neither reuses the other's evaluated prefix.

`python -m benchmarks coldstart`: a new process per sample, timed from before the root model is
created to its first token on the engine's first root turn, with the prefix cache off, cold
(nothing stored yet) and warm.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rlm_local.config import load_settings
from rlm_local.engine import prompts
from rlm_local.models import ModelStore, ResolvedModel
from rlm_local.models.backend import BackendOptions, LocalModel
from rlm_local.models.contract import Sampling

GENERATED_TOKENS = 64
WRAPPER, DIRECT = "rlm-local LocalModel", "llama-cpp-python"
STORY = "Write a long story about a lighthouse keeper and a storm. Do not stop early."


def first_root_turn(variant: int = 0) -> list[dict[str, str]]:
    """The messages of the engine's first root turn on a small text."""
    description = prompts.describe_context("log start\nthe launch code is 7-alpha-12\nlog end\n")
    lead = f"Run {variant}.\n" if variant else ""
    return [
        {"role": "system", "content": lead + prompts.root_system()},
        {"role": "user", "content": prompts.first_turn("What is the launch code?", description)},
    ]


def story_turn(variant: int) -> list[dict[str, str]]:
    turn = first_root_turn(variant)
    return [turn[0], {"role": "user", "content": STORY}]


def _through_wrapper(model: LocalModel, messages: list[dict[str, str]]) -> dict[str, float]:
    llama = model._llama
    _reset_counters(llama)
    started = time.perf_counter()
    reply = model.chat(messages, Sampling(max_tokens=GENERATED_TOKENS))
    wall = time.perf_counter() - started
    return {"wall_s": wall, **_counters(llama), "reported_prompt_s": reply.prompt_eval_seconds}


def _through_llama(llama: Any, formatter: Any, messages: list[dict[str, str]]) -> dict[str, float]:
    """Rendering included, as in the wrapper."""
    _reset_counters(llama)
    started = time.perf_counter()
    rendered = formatter(messages=messages)
    llama.create_completion(
        rendered.prompt, max_tokens=GENERATED_TOKENS, temperature=0.0, stop=rendered.stop
    )
    return {"wall_s": time.perf_counter() - started, **_counters(llama)}


def _reset_counters(llama: Any) -> None:
    import llama_cpp

    llama_cpp.llama_perf_context_reset(llama.ctx)


def _counters(llama: Any) -> dict[str, float]:
    """llama.cpp's own split: batched decodes are prompt work, single-token decodes generation."""
    import llama_cpp

    perf = llama_cpp.llama_perf_context(llama.ctx)
    return {
        "prompt_tokens": perf.n_p_eval,
        "prompt_s": perf.t_p_eval_ms / 1000,
        "generated_tokens": perf.n_eval,
        "generation_s": perf.t_eval_ms / 1000,
    }


def measure_backend(model: ResolvedModel, repetitions: int, threads: int) -> list[dict[str, Any]]:
    """Rows of tokens/s per path; the direct Llama gets exactly the wrapper's settings."""
    from llama_cpp import Llama

    wrapper = LocalModel(model, BackendOptions(n_threads=threads))
    # Loads, and warms both code paths' caches:
    wrapper.chat(story_turn(999), Sampling(max_tokens=1))
    direct = Llama(
        model_path=str(model.path),
        n_ctx=wrapper.n_ctx,
        n_batch=model.n_batch,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=model.flash_attn,
        verbose=False,
    )
    samples: dict[str, list[dict[str, float]]] = {WRAPPER: [], DIRECT: []}
    for rep in range(1, repetitions + 1):
        paths = [
            (WRAPPER, lambda m: _through_wrapper(wrapper, m)),
            (DIRECT, lambda m: _through_llama(direct, wrapper._formatter, m)),
        ]
        for name, path in paths if rep % 2 else reversed(paths):
            samples[name].append(path(story_turn(rep)))
    wrapper.close()
    direct.close()
    return [_speed_row(model.name, name, runs) for name, runs in samples.items()]


def _speed_row(model: str, path: str, runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "model": model,
        "path": path,
        "n": len(runs),
        "wall_s": round(statistics.median(r["wall_s"] for r in runs), 2),
        "prompt_tokens": statistics.median(r["prompt_tokens"] for r in runs),
        "prompt_tok_s": statistics.median(r["prompt_tokens"] / r["prompt_s"] for r in runs),
        "generated_tokens": statistics.median(r["generated_tokens"] for r in runs),
        "generation_tok_s": statistics.median(
            r["generated_tokens"] / r["generation_s"] for r in runs
        ),
        # the prompt seconds the wrapper itself reports, beside llama.cpp's count
        "reported_prompt_s": _median_of(runs, "reported_prompt_s"),
        "counted_prompt_s": _median_of(runs, "prompt_s"),
    }


def _median_of(runs: list[dict[str, float]], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return round(statistics.median(values), 2) if values else None


COLD_PROCESS = """
import json, sys, time
started = time.perf_counter()
from pathlib import Path
from benchmarks.backend import first_root_turn
from rlm_local.api import RLM
from rlm_local.config import load_settings
from rlm_local.models.contract import Sampling
home, use_prefixes = Path(sys.argv[1]), sys.argv[2] == "on"
settings = load_settings(home=home, use_cache=False, use_prefix_cache=use_prefixes)
imported = time.perf_counter()
root = RLM(settings).root
reply = root.chat(first_root_turn(), Sampling(max_tokens=1))
done = time.perf_counter()
print(json.dumps({
    "imports_s": imported - started,
    "first_token_s": done - imported,
    "load_s": reply.load_seconds,
    "prompt_eval_s": reply.prompt_eval_seconds,
    "evaluated_tokens": reply.evaluated_tokens,
    "restored_tokens": reply.restored_tokens,
}))
"""


def measure_cold_start(samples: int) -> list[dict[str, Any]]:
    """Prefix cache off, then on with an empty store (the first process stores), then warm."""
    settings = load_settings()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rlm-coldstart-") as scratch:
        home = Path(scratch)
        (home / "models").symlink_to(settings.models_dir, target_is_directory=True)
        for state in ("off", "cold", "warm"):
            count = 1 if state == "cold" else samples
            runs = [_cold_process(home, state != "off") for _ in range(count)]
            rows.append(_cold_row(settings.root, state, runs))
    return rows


def _cold_process(home: Path, use_prefixes: bool) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", COLD_PROCESS, str(home), "on" if use_prefixes else "off"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    run = json.loads(done.stdout.strip().splitlines()[-1])
    run["process_s"] = time.perf_counter() - started
    return run


def _cold_row(model: str, state: str, runs: list[dict[str, float]]) -> dict[str, Any]:
    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 2)

    return {
        "model": model,
        "prefix_cache": state,
        "n": len(runs),
        "first_token_s": median("first_token_s"),
        "load_s": median("load_s"),
        "prompt_eval_s": median("prompt_eval_s"),
        "evaluated_tokens": median("evaluated_tokens"),
        "restored_tokens": median("restored_tokens"),
        "imports_s": median("imports_s"),
        "process_s": median("process_s"),
    }


def add_commands(commands: Any) -> None:
    """The `backend` and `coldstart` subcommands of `python -m benchmarks`."""
    speed = commands.add_parser(
        "backend", help="LocalModel vs llama-cpp-python called directly (results/backend.*)"
    )
    speed.add_argument("--models", default="root,sub", help="roles to measure: root,sub")
    speed.add_argument("--n", type=int, default=4, help="repetitions per path")
    cold = commands.add_parser(
        "coldstart", help="a new process's first root token, prefix cache off/cold/warm"
    )
    cold.add_argument("--n", type=int, default=3, help="processes per state (cold: 1)")
    for parser in (speed, cold):
        parser.add_argument("--out", default=str(Path(__file__).parent / "results"))


def run_command(args: Any, about: dict[str, Any]) -> Path:
    """Runs `backend` or `coldstart`, appends rows stamped with `about` (machine, commit)."""
    if args.command == "backend":
        settings = load_settings()
        store = ModelStore(settings.registry, settings.models_dir)
        roles = {"root": settings.root, "sub": settings.sub}
        rows = []
        for role in args.models.split(","):
            if role not in roles:
                raise SystemExit(f"error: --models takes root and/or sub, not {role!r}.")
            rows += measure_backend(store.resolve(roles[role]), args.n, settings.n_threads)
    else:
        rows = measure_cold_start(args.n)
    raw = Path(args.out) / f"{args.command}.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    with raw.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({**row, **about}) + "\n")
    table = raw.with_suffix(".md")
    table.write_text(render(raw), encoding="utf-8")
    return table


def render(raw: Path) -> str:
    """The markdown table of a backend.jsonl or coldstart.jsonl file, every row."""
    rows = [json.loads(line) for line in raw.read_text(encoding="utf-8").splitlines() if line]
    columns = [k for k in rows[0] if k not in ("machine", "commit", "time")] if rows else []
    lines = [
        f"# {raw.stem}",
        "",
        f"Rows of `python -m benchmarks {raw.stem}`; medians over n. See benchmarks/README.md.",
        "",
        "| " + " | ".join([*columns, "commit", "machine"]) + " |",
        "|" + " --- |" * (len(columns) + 2),
    ]
    for row in rows:
        cells = [_cell(row.get(c)) for c in columns]
        where = row.get("machine", {})
        machine = f"{where.get('cpu', '?')}, {where.get('cores', '?')} cores"
        lines.append("| " + " | ".join([*cells, str(row.get("commit")), machine]) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return "–" if value is None else str(value)
