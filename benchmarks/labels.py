"""How well a model labels OOLONG-style instances through classify's own prompt and grammar.

An RLM can only count what its sub-model labels right. This measures that part alone: every
different instance of the seeded records is labelled exactly as `classify` would label it (same
messages, batches and grammar, no cache), then each OOLONG-style task is answered from those labels
with perfect code. The second number is the best score an RLM with this labeller can reach.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any

from benchmarks.machine import machine_name
from benchmarks.tasks import LABELS, oolong_records, oolong_task, score
from rlm_local.cache import cached_chat
from rlm_local.engine import labels as labelling
from rlm_local.models.contract import ChatModel, Sampling


def instance(line: str) -> str:
    return line.split("Instance: ", 1)[1]


def label_texts(
    model: ChatModel, texts: list[str], voting: bool = True
) -> tuple[dict[str, str | None], dict[str, int]]:
    """classify's calls (its batches, grammar and vote), made directly: text -> label, and the
    tokens they cost."""
    request = labelling.check_request(texts, list(LABELS), None)
    usage: Counter[str] = Counter()

    def label_groups(groups: list[list[str]]) -> list[list[str | None]]:
        found = []
        for group in groups:
            call = cached_chat(
                model,
                None,
                labelling.messages(group, request),
                Sampling(
                    max_tokens=labelling.max_tokens(len(group), request.labels),
                    grammar=labelling.grammar(len(group), request.labels),
                ),
            )
            usage["calls"] += 1
            usage["prompt_tokens"] += call.completion.prompt_tokens
            usage["completion_tokens"] += call.completion.completion_tokens
            found.append(labelling.parse(call.completion.text, len(group), LABELS))
        return found

    return labelling.vote(request.distinct, label_groups, voting), dict(usage)


def measure(
    model: ChatModel, size_tokens: int, seeds: list[int], voting: bool = True
) -> dict[str, Any]:
    records = [r for seed in seeds for r in oolong_records(size_tokens, seed)]
    truth = {instance(r.line): r.label for r in records}
    started = time.monotonic()
    predicted, usage = label_texts(model, sorted(truth), voting)
    seconds = time.monotonic() - started
    recall = {
        label: sum(predicted[t] == label for t, true in truth.items() if true == label)
        / max(1, sum(true == label for true in truth.values()))
        for label in LABELS
    }
    ceiling = []
    for seed in seeds:
        task = oolong_task(size_tokens, seed)
        with_model = oolong_task(size_tokens, seed, label_of=lambda r: predicted[instance(r.line)])
        ceiling.append(score(task, with_model.answer))
    return {
        "instances": len(truth),
        "accuracy": sum(predicted[t] == label for t, label in truth.items()) / len(truth),
        "line_accuracy": statistics.mean(predicted[instance(r.line)] == r.label for r in records),
        "recall": recall,
        "predicted": dict(Counter(predicted.values())),
        "ceiling": statistics.mean(ceiling),
        "ceiling_scores": ceiling,
        "seconds": round(seconds, 1),
        "voting": voting,
        **usage,
    }


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# labels",
        "",
        "How often `classify` (its prompt, batches of "
        f"{labelling.ITEMS_PER_CALL} and grammar) gives the true label to the different "
        "OOLONG-style instances, and the mean OOLONG-style score that perfect code reaches with "
        "those labels (the ceiling of an RLM with this labeller). Machine and commit per row.",
        "",
        "| model | size (tokens) | seeds | instances | accuracy | per-line accuracy "
        "| OOLONG ceiling | seconds | calls | machine | commit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        model = f"{r['model']} (vote)" if r.get("voting") else r["model"]
        lines.append(
            f"| {model} | {r['size_tokens']:,} | {r['seeds']} | {r['instances']} "
            f"| {r['accuracy']:.2f} | {r['line_accuracy']:.2f} | {r['ceiling']:.2f} "
            f"| {r['seconds']} | {r['calls']} | {machine_name(r['machine'])} | {r['commit']} |"
        )
    lines += ["", "Recall per true label (share of its instances labelled right):", ""]
    lines.append("| model | commit | " + " | ".join(LABELS) + " |")
    lines.append("| --- | --- | " + " | ".join("---" for _ in LABELS) + " |")
    for r in rows:
        cells = " | ".join(f"{r['recall'][label]:.2f}" for label in LABELS)
        lines.append(f"| {r['model']} | {r['commit']} | {cells} |")
    return "\n".join(lines) + "\n"
