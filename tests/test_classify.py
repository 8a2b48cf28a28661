"""classify(items, labels): prompt, grammar and parsing; the loop with scripted models; the real
sub-model under the real grammar."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from scripted import ScriptedModel

from rlm_local.api import RLM
from rlm_local.cache import cached_chat
from rlm_local.config import load_settings
from rlm_local.engine import RunOptions
from rlm_local.engine import labels as labelling
from rlm_local.models.backend import LocalModel
from rlm_local.models.contract import Sampling
from rlm_local.trace import read_trace

LABELS = ["positive", "negative"]


def _labeller(label_for: dict[str, str]):
    """A sub-model that labels numbered items by a lookup, as the grammar makes it reply."""

    def answer(prompt: str) -> str:
        items = re.findall(r"^(\d+)\. (.+)$", prompt.split("Items:")[1], re.MULTILINE)
        return "\n".join(f"{n}: {label_for.get(text, 'negative')}" for n, text in items)

    return answer


def test_grammar_allows_one_line_per_item_and_escapes_labels() -> None:
    grammar = labelling.grammar(3, ['say "hi"', "back\\slash"])
    assert grammar.startswith('root ::= "1: " label "\\n" "2: " label "\\n" "3: " label "\\n"\n')
    assert '"say \\"hi\\""' in grammar and '"back\\\\slash"' in grammar


def test_parse_is_loose_about_case_punctuation_and_prose() -> None:
    reply = "Here you go:\n1: Positive.\n2) the label is negative\n3: maybe\n9: positive"
    assert labelling.parse(reply, 3, LABELS) == ["positive", "negative", None]


@pytest.mark.parametrize(
    ("items", "labels", "message"),
    [
        ("one line", LABELS, "items must be a list"),
        (["a"], "positive", "labels must be a list"),
        (["a"], ["only"], "2 to 50 different"),
        (["a"], ["same", "same"], "2 to 50 different"),
        (["a"], ["ok", "x" * 101], "1 to 100 characters"),
    ],
)
def test_bad_arguments_say_how_to_call_it(items: object, labels: object, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        labelling.check_request(items, labels, None)


def _run(tmp_home: Path, cells: list[str], sub: ScriptedModel, **opts):
    root = ScriptedModel(cells)
    options = RunOptions(mode="rlm", skip_checks=("unfounded",), **opts)  # typed-in answers
    rlm = RLM(load_settings(), options, root=root, sub=sub, labeller=sub)
    return rlm.ask("How many are positive?", CONTEXT), root


CONTEXT = "\n".join(
    f"Date: Mar {n % 28 + 1:02d} || User: {10000 + n} || Text: "
    + ("great stuff" if n % 3 else "awful")
    for n in range(60)
)


def test_classify_labels_distinct_items_in_batches_under_a_grammar(tmp_home: Path) -> None:
    sub = ScriptedModel(answer=_labeller({"great stuff": "positive"}))
    texts = [f"review {n % 45}" for n in range(100)]  # 45 different texts
    cells = [
        f"texts = {texts!r}\nlabels = classify(texts, {LABELS!r})\nprint(len(labels), labels[:2])",
        "again = classify(texts, ['positive', 'negative'])\nFINAL(str(again == labels))",
    ]
    result, root = _run(tmp_home, cells, sub)
    assert result.answer == "True"
    assert "100 ['negative', 'negative']" in root.calls[1][-1]["content"]
    # 45 different texts, 20 a call, twice (the vote's second order; the passes agree, so no
    # third); the second cell cost nothing
    assert len(sub.calls) == 6
    assert all(p["grammar"].startswith('root ::= "1: " label') for p in sub.params)
    # The labels first, the same in every batch (a prefix they share), the items after them.
    (head,) = {c[-1]["content"].split("review")[0] for c in sub.calls}
    assert all(label in head for label in LABELS)
    events = [e for e in read_trace(Path(result.trace_path)) if e["type"] == "classify"]
    assert [(e["items"], e["distinct"], e["sub_calls"]) for e in events] == [
        (100, 45, 6),
        (100, 45, 0),
    ]


def test_vote_keeps_the_majority_of_three_orders() -> None:
    texts = [f"t{n}" for n in range(50)]
    truth = {text: "even" if int(text[1:]) % 2 == 0 else "odd" for text in texts}
    wrong = [{f"t{n}": "x" for n in range(5)}, {f"t{n}": "y" for n in range(3, 8)}, {}]
    passes: list[list[list[str]]] = []

    def label_groups(groups: list[list[str]]) -> list[list[str | None]]:
        errors = wrong[len(passes)]
        passes.append(groups)
        return [[errors.get(text, truth[text]) for text in group] for group in groups]

    voted = labelling.vote(texts, label_groups)
    assert [len(groups) for groups in passes] == [3, 3, 1]  # the third: only the 8 disputed
    assert passes[0][0] == texts[:20] and passes[1][0] != texts[:20]  # another order
    assert sorted(passes[2][0], key=lambda t: int(t[1:])) == [f"t{n}" for n in range(8)]
    # t0-t2 and t5-t7 are outvoted back to the truth; t3, t4 split three ways: the first pass's
    assert {t for t in texts if voted[t] != truth[t]} == {"t3", "t4"}
    assert voted["t3"] == "x"
    passes.clear()
    assert labelling.vote(texts, label_groups, voting=False)["t0"] == "x"
    assert len(passes) == 1
    assert labelling.max_vote_calls(50) == 9 and labelling.max_vote_calls(50, voting=False) == 3

    def out_of_time_after_one_pass(groups: list[list[str]]) -> list[list[str | None]]:
        if passes:
            raise RuntimeError("the time budget is used up")
        passes.append(groups)
        return [[truth[text] for text in group] for group in groups]

    passes.clear()
    assert labelling.vote(texts, out_of_time_after_one_pass) == truth  # the first pass is kept


def test_the_vote_is_skipped_when_only_one_pass_fits_the_budget(tmp_home: Path) -> None:
    sub = ScriptedModel(answer=_labeller({}))
    cells = [f"print(classify([str(n) for n in range(45)], {LABELS!r}).count('negative'))"]
    _, root = _run(tmp_home, cells + ["FINAL('x')"], sub, max_sub_calls=5)
    assert "\n45\n" in "\n" + root.calls[1][-1]["content"] + "\n"
    assert len(sub.calls) == 3


def test_over_budget_without_records_is_a_clear_error(tmp_home: Path) -> None:
    sub = ScriptedModel(answer=_labeller({}))
    cells = [
        f"print(classify([str(n) for n in range(80)], {LABELS!r}))",
        "FINAL('x')",
    ]
    _, root = _run(tmp_home, cells, sub, max_sub_calls=3)
    feedback = root.calls[1][-1]["content"]
    # the items, the sub-calls they take, the items a call holds, the sub-calls left
    assert re.findall(r"\d+", feedback)[:4] == ["80", "4", "20", "3"]
    assert not sub.calls


@pytest.mark.models  # its model fixture is asked for by name: not marked by conftest
@pytest.mark.parametrize("role", ["sub_model", "root_model"])
def test_real_models_label_under_the_grammar(role: str, request: pytest.FixtureRequest) -> None:
    """The real llama.cpp grammar: every line parses to one of the labels, quotes included."""
    model: LocalModel = request.getfixturevalue(role)
    labels = ["praise", 'complaint about "delivery"', "question"]
    texts = [
        "I love this kettle, it is wonderful and works perfectly!",
        "The parcel arrived two weeks late and the box was crushed.",
        "Does this kettle also work with 110 volt sockets?",
    ]
    label_request = labelling.check_request(texts, labels, None)
    call = cached_chat(
        model,
        None,
        labelling.messages(texts, label_request),
        Sampling(max_tokens=labelling.max_tokens(3, labels), grammar=labelling.grammar(3, labels)),
    )
    lines = call.completion.text.strip().splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == ["1", "2", "3"]
    found = labelling.parse(call.completion.text, 3, labels)
    assert None not in found
    assert found[0] == "praise"


def _last_user_of(model: ScriptedModel) -> str:
    return model.calls[-1][-1]["content"]


def test_classify_uses_the_labeller_and_llm_query_the_sub_model(tmp_home: Path) -> None:
    sub = ScriptedModel(answer=lambda prompt: "a sub-model answer")
    labeller = ScriptedModel(answer=_labeller({"great stuff": "positive"}))
    cells = [
        "labels = classify(['great stuff', 'awful'], ['positive', 'negative'])\n"
        "FINAL(str(labels) + ' / ' + llm_query('hello'))"
    ]
    root = ScriptedModel(cells)
    options = RunOptions(mode="rlm")
    result = RLM(load_settings(), options, root=root, sub=sub, labeller=labeller).ask("q?", CONTEXT)
    assert result.answer == "['positive', 'negative'] / a sub-model answer"
    assert len(labeller.calls) == 2 and "grammar" in labeller.params[0]  # in two orders
    assert len(sub.calls) == 1 and sub.params[0].get("grammar") is None
    models = [e["model"] for e in read_trace(Path(result.trace_path)) if e["type"] == "sub_call"]
    assert models == ["labeller", "labeller", "sub"]


def test_the_labeller_is_the_root_model_unless_set(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, sub = ScriptedModel(), ScriptedModel()
    settings = load_settings()
    assert settings.labeller_model == settings.root
    assert RLM(settings, root=root, sub=sub).labeller is root
    by_argument = load_settings(labeller=settings.sub)
    assert RLM(by_argument, root=root, sub=sub).labeller is sub
    assert by_argument.models_in_use() == [settings.root, settings.sub]
    monkeypatch.setenv("RLM_LOCAL_LABELLER", "/models/other.gguf")
    by_environment = load_settings()
    assert by_environment.labeller_model == "/models/other.gguf"
    assert by_environment.models_in_use()[-1] == "/models/other.gguf"
