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
from rlm_local.engine import RunOptions, prompts
from rlm_local.engine import labels as labeling
from rlm_local.models.backend import LocalModel
from rlm_local.report import render_html
from rlm_local.trace import load_run, read_trace

LABELS = ["positive", "negative"]


def _labeller(label_for: dict[str, str]):
    """A sub-model that labels numbered items by a lookup, as the grammar makes it reply."""

    def answer(prompt: str) -> str:
        items = re.findall(r"^(\d+)\. (.+)$", prompt.split("Items:")[1], re.MULTILINE)
        return "\n".join(f"{n}: {label_for.get(text, 'negative')}" for n, text in items)

    return answer


def test_grammar_allows_one_line_per_item_and_escapes_labels() -> None:
    grammar = labeling.grammar(3, ['say "hi"', "back\\slash"])
    assert grammar.startswith('root ::= "1: " label "\\n" "2: " label "\\n" "3: " label "\\n"\n')
    assert '"say \\"hi\\""' in grammar and '"back\\\\slash"' in grammar


def test_parse_is_loose_about_case_punctuation_and_prose() -> None:
    reply = "Here you go:\n1: Positive.\n2) the label is negative\n3: maybe\n9: positive"
    assert labeling.parse(reply, 3, LABELS) == ["positive", "negative", None]


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
        labeling.check_request(items, labels, None)


def test_record_field_finds_the_free_text_of_records() -> None:
    lines = [f"Date: Jan {d:02d} || User: {d * 7} || Text: item {d % 3}" for d in range(1, 29)]
    assert labeling.record_field(lines) == "Text:"
    assert labeling.record_field(["plain text", "more: text"]) is None


def _run(tmp_home: Path, cells: list[str], sub: ScriptedModel, **opts):
    root = ScriptedModel(cells)
    rlm = RLM(load_settings(), RunOptions(mode="rlm", **opts), root=root, sub=sub, labeller=sub)
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
    assert sub.calls[0][-1]["content"].startswith("Labels:\n- positive\n- negative\n")
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

    voted = labeling.vote(texts, label_groups)
    assert [len(groups) for groups in passes] == [3, 3, 1]  # the third: only the 8 disputed
    assert passes[0][0] == texts[:20] and passes[1][0] != texts[:20]  # another order
    assert sorted(passes[2][0], key=lambda t: int(t[1:])) == [f"t{n}" for n in range(8)]
    # t0-t2 and t5-t7 are outvoted back to the truth; t3, t4 split three ways: the first pass's
    assert {t for t in texts if voted[t] != truth[t]} == {"t3", "t4"}
    assert voted["t3"] == "x"
    passes.clear()
    assert labeling.vote(texts, label_groups, voting=False)["t0"] == "x"
    assert len(passes) == 1
    assert labeling.max_vote_calls(50) == 9 and labeling.max_vote_calls(50, voting=False) == 3

    def out_of_time_after_one_pass(groups: list[list[str]]) -> list[list[str | None]]:
        if passes:
            raise RuntimeError("the time budget is used up")
        passes.append(groups)
        return [[truth[text] for text in group] for group in groups]

    passes.clear()
    assert labeling.vote(texts, out_of_time_after_one_pass) == truth  # the first pass is kept


def test_the_vote_is_skipped_when_only_one_pass_fits_the_budget(tmp_home: Path) -> None:
    sub = ScriptedModel(answer=_labeller({}))
    cells = [f"print(classify([str(n) for n in range(45)], {LABELS!r}).count('negative'))"]
    _, root = _run(tmp_home, cells + ["FINAL('x')"], sub, max_sub_calls=5)
    assert "\n45\n" in "\n" + root.calls[1][-1]["content"] + "\n"
    assert len(sub.calls) == 3


def test_records_are_labelled_by_their_text_field(tmp_home: Path) -> None:
    sub = ScriptedModel(answer=_labeller({"great stuff": "positive"}))
    cells = [
        "labels = classify(context.splitlines(), ['positive', 'negative'])\n"
        "print(labels.count('positive'))",
        "FINAL('done')",
    ]
    result, root = _run(tmp_home, cells, sub)
    feedback = root.calls[1][-1]["content"]
    assert "the text after 'Text:' of each was labelled: 2 different texts in 60 records" in (
        feedback
    )
    assert "\n40\n" in feedback  # 2 of every 3 lines say "great stuff"
    assert len(sub.calls) == 2 and result.stats.sub_calls == 2  # one batch, in two orders
    assert "Items:\n1. awful\n2. great stuff\n\n" in sub.calls[0][-1]["content"]


def test_over_budget_without_records_is_a_clear_error(tmp_home: Path) -> None:
    sub = ScriptedModel(answer=_labeller({}))
    cells = [
        f"print(classify([str(n) for n in range(80)], {LABELS!r}))",
        "FINAL('x')",
    ]
    _, root = _run(tmp_home, cells, sub, max_sub_calls=3)
    feedback = root.calls[1][-1]["content"]
    assert "labelling 80 different items takes 4 sub-calls (20 items each) but 3 are left" in (
        feedback
    )
    assert not sub.calls


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
    label_request = labeling.check_request(texts, labels, None)
    call = cached_chat(
        model,
        None,
        labeling.messages(texts, label_request),
        max_tokens=labeling.max_tokens(3, labels),
        grammar=labeling.grammar(3, labels),
    )
    lines = call.completion.text.strip().splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == ["1", "2", "3"]
    found = labeling.parse(call.completion.text, 3, labels)
    assert None not in found
    assert found[0] == "praise"


def test_the_classify_example_is_shown_for_records_only(tmp_home: Path) -> None:
    for context, shown in ((CONTEXT, True), ("Plain prose. Note: nothing here.\n" * 50, False)):
        root = ScriptedModel(["FINAL('x')"])
        RLM(load_settings(), RunOptions(mode="rlm"), root=root, sub=ScriptedModel()).ask(
            "q?", context
        )
        system = root.calls[0][0]["content"]
        assert ("labels = classify(context.splitlines()" in system) is shown
        assert system.endswith('FINAL("42")\n```')  # the same ending: one stable prompt per kind


def test_the_first_turn_shows_lines_and_names_the_fields_of_records(tmp_home: Path) -> None:
    root = ScriptedModel(["FINAL('x')"])
    RLM(load_settings(), RunOptions(mode="rlm"), root=root, sub=ScriptedModel()).ask("q?", CONTEXT)
    first = root.calls[0][1]["content"]
    lines = CONTEXT.splitlines()
    fields = "Each line is a record with the fields Date, User, Text."
    assert f"in {len(lines):,} lines. {fields}" in first
    assert f"It starts:\n{lines[0]}\n{lines[1]}\n" in first  # as lines, not one run-on string
    prose = "Plain prose. Note: nothing here. " * 40
    described = prompts.describe_context(prose, labeling.context_record_keys(prose))
    assert "in one line. It starts:\nPlain prose." in described and "record" not in described
    assert described.endswith("...\n...") and len(described) < 450  # a long line is cut


def test_a_question_listing_labels_on_records_starts_with_every_line_labelled(
    tmp_home: Path,
) -> None:
    question = (
        "Each line has one hidden label, one of: positive, negative. How many lines of user "
        "10003 are labelled 'positive'? Answer with a number."
    )
    assert labeling.question_labels(question) == ["positive", "negative"]
    count = "print(sum(1 for row in rows if row['User'] == 10003 and row['label'] == 'positive'))"
    root = ScriptedModel([count, "FINAL('0')"])
    labeller = ScriptedModel(answer=_labeller({"great stuff": "positive"}))
    options = RunOptions(mode="rlm")
    result = RLM(load_settings(), options, root=root, sub=ScriptedModel(), labeller=labeller).ask(
        question, CONTEXT
    )
    assert result.answer == "0"
    first = root.calls[0][1]["content"]
    assert (
        "A first step printed the first row, labelled every line for you and printed the counts, "
        "and the counts among the rows the question names (User 10003):\n{'Date': 'Mar 01', "
        "'User': 10000, 'Text': 'awful'}\nCounter, most common first:\n" in first
    )
    assert "classify(" not in first  # described, not shown: shown, the model ran it again
    assert "'label'" not in first.split("Counter")[0]  # the row shown had no label yet
    assert "'positive': 40  (most common)\n  'negative': 20  (least common)" in first  # output
    assert "1 rows with User 10003; their labels:\n  'positive': 0\n  'negative': 1\n" in first
    assert "its label in row['label']), labels, picked (those rows). A count of one label: " in (
        first
    )
    assert "Counter(row['label'] for row in picked)['positive']" in first  # the label asked for
    assert "labels = classify(context" not in root.calls[0][0]["content"]  # nor its example
    assert _last_user_of(root).startswith("Output:\n0\n")  # line 10003 is "awful": negative
    assert len(labeller.calls) == 2  # 2 different texts, one batch, in two orders
    record = load_run(Path(result.trace_path))
    assert [turn.number for turn in record.turns] == [0, 1, 2]
    step = record.turns[0]
    assert step.code.startswith("rows = records()") and step.prompt_tokens is None
    assert len(step.work.sub_calls) == 2  # the labelling calls belong to the first step
    assert "First step, run by the engine" in render_html(record)
    # The first step's output is not the model's own: a 0 from its first cell is still checked.
    blind = "picked = [row for row in rows if row['User'] == '10003']\nFINAL(len(picked))"
    root = ScriptedModel([blind, "FINAL('1')"])
    RLM(load_settings(), options, root=root, sub=ScriptedModel(), labeller=labeller).ask(
        question, CONTEXT
    )
    assert "picked = list of 0 items (empty)" in _last_user_of(root)
    plain = ScriptedModel(["FINAL('x')"])  # no label list in the question: no labelling
    RLM(load_settings(), options, root=plain, sub=ScriptedModel()).ask("How many lines?", CONTEXT)
    assert "A first step" not in plain.calls[0][1]["content"]


def test_the_rows_a_question_names_by_a_field_value_are_found() -> None:
    keys = labeling.context_record_keys(CONTEXT)
    users = labeling.question_rows("How many from users 10004, 10007 or 99999?", CONTEXT, keys)
    assert users == labeling.RowFilter("row['User'] in (10004, 10007)", "User 10004 or 10007")
    march = labeling.question_rows("How many lines were written in March?", CONTEXT, keys)
    assert march is None  # every line is from March: it names no subset
    days = "\n".join(f"Date: {m} 0{d} || User: {d} || Text: t" for m in ("Jan", "May") for d in "1")
    may = labeling.question_rows("How many were written in May?", days, ["Date", "User", "Text"])
    assert may is not None and may.description == "Date mentioning May"
    january = labeling.question_rows("How many in January?", days, ["Date", "User", "Text"])
    assert january is not None and january.description == "Date mentioning Jan"
    rows = labeling.records(days)
    picked = [row["Date"] for row in rows if eval(january.condition, {"re": re, "row": row})]
    assert picked == ["Jan 01"]
    # Free text names anything: it is never a filter; nor are words no field holds.
    assert labeling.question_rows("Which texts say t?", days, ["Date", "User", "Text"]) is None
    assert labeling.question_rows("Which label is the most common?", CONTEXT, keys) is None


def test_the_label_a_question_names_is_found() -> None:
    labels = ["description and abstract concept", "entity", "location"]
    named = labeling.question_label
    assert named("Are questions labelled 'entity' more common than 'location'?", labels) == "entity"
    assert named('How many are "location"?', labels) == "location"
    assert named("Which label is the most common?", labels) is None
    assert named("Which of 'x' is the most common?", labels) is None  # not a label
    # Without a named label the step suggests no label (the model answered with the suggested one)
    assert "A count of one label" not in prompts.labelling_done("counts", None, None)
    assert prompts.labelling_done("counts", None, "entity").endswith("Counter(labels)['entity']")


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


def test_labels_the_question_lists_as_one_are_joined_again(tmp_home: Path) -> None:
    assert labeling.rejoin_labels(
        ["crash", "data loss", "praise"], "one of: crash and data loss, praise."
    ) == [
        "crash and data loss",
        "praise",
    ]
    assert labeling.rejoin_labels(["cats", "dogs"], "Count cats and dogs separately.") == [
        "cats",
        "dogs",
    ]
    sub = ScriptedModel(answer=_labeller({"great stuff": "great and good", "awful": "bad"}))
    cells = [
        "labels = classify(['great stuff', 'awful'], ['great', 'good', 'bad'])\nprint(labels)",
        "FINAL('done')",
    ]
    root = ScriptedModel(cells)
    rlm = RLM(load_settings(), RunOptions(mode="rlm"), root=root, sub=sub, labeller=sub)
    rlm.ask("Label each: one of: great and good, bad. How many?", CONTEXT)
    feedback = root.calls[1][-1]["content"]
    assert "the question lists 'great and good' as one label, so it was used as one." in feedback
    assert "['great and good', 'bad']" in feedback
    assert sub.calls[0][-1]["content"].startswith("Labels:\n- great and good\n- bad\n")


def test_a_pairs_question_groups_the_field_values_by_the_labels_it_names(tmp_home: Path) -> None:
    lines = [
        f"Date: Mar {n % 28 + 1:02d} || User: {user} || Text: {text}"
        for n, (user, text) in enumerate(
            [(11111, "great stuff"), (22222, "awful"), (11111, "awful"), (33333, "great stuff")]
            + [(22222, "great stuff"), (33333, "great stuff"), (44444, "awful")] * 3
        )
    ]
    context = "\n".join(lines)
    question = (
        "Each line has one hidden label, one of: positive, negative. List every pair of user ids "
        "where both users have a line labelled 'positive' and one labelled 'negative'."
    )
    keys = labeling.context_record_keys(context)
    pairs = labeling.question_pairs(question, LABELS, keys)
    assert pairs == labeling.PairRequest("User", ["positive", "negative"])
    assert labeling.question_pairs(question.replace("pair", "list"), LABELS, keys) is None
    no_field = question.replace("user ids", "ids").replace("users", "people")
    assert labeling.question_pairs(no_field, LABELS, keys) is None
    one_label = "List every pair of users with a line labelled 'positive'."
    assert labeling.question_pairs(one_label, LABELS, keys) is None
    root = ScriptedModel(["FINAL(str(pairs))"])
    labeller = ScriptedModel(answer=_labeller({"great stuff": "positive"}))
    result = RLM(
        load_settings(), RunOptions(mode="rlm"), root=root, sub=ScriptedModel(), labeller=labeller
    ).ask(question, context)
    assert result.answer == "[(11111, 22222)]"  # 33333 only praised, 44444 only complained
    first = root.calls[0][1]["content"]
    assert "the User values that have rows of each label the question names, and their pairs:" in (
        first
    )
    assert "2 User values with rows labelled 'positive' and 'negative', in having\n" in first
    assert "1 pairs of them, in pairs\n" in first and "[(11111, 22222)]" not in first
    assert (
        "labels, having (those values, sorted), pairs (every two of them). To answer with the "
        "pairs: FINAL(pairs)\n"
    ) in first


def test_pairs_typed_into_final_are_sent_back_once_for_the_computed_ones(tmp_home: Path) -> None:
    assert prompts.final_typed_in("FINAL([('11111-22222',)])")
    assert prompts.final_typed_in("pairs = [(1, 2), (3, 4)]\nFINAL(pairs)")
    assert not prompts.final_typed_in("FINAL(pairs)")
    assert not prompts.final_typed_in("FINAL([p for p in pairs])")
    assert not prompts.final_typed_in("FINAL([(1, 2)]")  # a syntax error types in nothing
    lines = [
        f"Date: Mar 0{n % 9 + 1} || User: {user} || Text: {text}"
        for n, (user, text) in enumerate(
            [(11111, "great stuff"), (22222, "awful"), (11111, "awful"), (22222, "great stuff")] * 4
        )
    ]
    question = (
        "Each line has one hidden label, one of: positive, negative. List every pair of user ids "
        "where both users have a line labelled 'positive' and one labelled 'negative'."
    )
    root = ScriptedModel(["pairs = [('11111-33333',)]\nFINAL(pairs)", "FINAL(str(pairs))"])
    labeller = ScriptedModel(answer=_labeller({"great stuff": "positive"}))
    result = RLM(
        load_settings(), RunOptions(mode="rlm"), root=root, sub=ScriptedModel(), labeller=labeller
    ).ask(question, "\n".join(lines))
    feedback = root.calls[1][-1]["content"]
    assert feedback.startswith("FINAL([('11111-33333',)]) gives pairs you typed in;")
    assert "To answer with them: FINAL(pairs)." in feedback
    assert result.answer == "[(11111, 22222)]" and len(root.calls) == 2
