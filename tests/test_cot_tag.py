"""`cot_tag`: each cot_v1 rule on real examples (tests/fixtures/reasoning, permissive sources) and on
hand-written hard negatives; parameter validation through the config loader."""

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.config import load_config
from curate.errors import ConfigError
from curate.reasoning.cot import COLUMNS, STYLES, count_steps, tag_cot
from curate.stages import STAGES, CotTag

FIXTURES = Path(__file__).parent / "fixtures" / "reasoning" / "cot_examples.jsonl"
EXAMPLES = [json.loads(line) for line in FIXTURES.read_text(encoding="utf-8").splitlines()]


def chats(*pairs: tuple[str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"c{i}" for i in range(len(pairs))],
            "source": ["s"] * len(pairs),
            "kind": ["instruction"] * len(pairs),
            "text": [None] * len(pairs),
            "messages": [[{"role": "user", "content": u}, {"role": "assistant", "content": a}] for u, a in pairs],
            "n_tokens": [None] * len(pairs),
        },
        schema_overrides={"text": pl.String, "n_tokens": pl.Int64},
    )


def tag(*answers: str) -> list[dict]:
    """cot_tag on answers to a neutral question; one dict of the four output columns per answer."""
    out = CotTag().process(chats(*[("Question?", a) for a in answers]))
    return out.select(COLUMNS).to_dicts()


def one(answer: str) -> dict:
    return tag(answer)[0]


# ------------------------------------------------------------------------------------ real examples


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e['source']}-{i}" for i, e in enumerate(EXAMPLES)])
def test_real_examples(example):
    got = tag(example["answer"])[0]
    assert got["cot"] is example["expect_cot"], example["note"] or example["answer"][:200]
    if example["expect_style"]:
        assert example["expect_style"] in got["cot_style"]
    if example["final_answer"]:
        assert got["final_answer"] == example["final_answer"]


def test_real_examples_cover_every_style_and_both_labels():
    styles = {e["expect_style"] for e in EXAMPLES if e["expect_style"]}
    assert styles == {"think_block", "step_list", "equation_chain", "explain_then_answer"}
    assert sum(e["expect_cot"] for e in EXAMPLES) >= 25
    assert sum(not e["expect_cot"] for e in EXAMPLES) >= 25


def test_gsm8k_step_counts_follow_the_solution_lines():
    gsm = [e for e in EXAMPLES if e["source"] == "gsm8k"]
    counts = count_steps([e["answer"] for e in gsm]).to_list()
    assert all(abs(c - e["gsm8k_steps"]) <= 1 for c, e in zip(counts, gsm, strict=True))
    assert sum(c == e["gsm8k_steps"] for c, e in zip(counts, gsm, strict=True)) >= len(gsm) - 2


# ------------------------------------------------------------------------------------ think_block


@pytest.mark.parametrize(
    "answer",
    [
        "<think>The user wants 17 * 3. 17 * 3 is 51.</think>The result is 51.",
        "<thinking>\nThey asked for a capital; France's is Paris.\n</thinking>\nParis.",
        "<reasoning>Two cases: odd or even.</reasoning> It is even.",
        "<|begin_of_thought|>Check both options.<|end_of_thought|> Option B.",
    ],
)
def test_think_block(answer):
    assert one(answer)["cot_style"] == ["think_block"]


@pytest.mark.parametrize(
    "answer",
    [
        "<think></think>Paris.",  # empty block
        "<think>never closed, the model was cut off",
        "I think that Paris is the capital of France.",
        "Use the <thought> element for speech bubbles.",
    ],
)
def test_think_block_hard_negatives(answer):
    assert "think_block" not in one(answer)["cot_style"]


# ------------------------------------------------------------------------------------ lets_think


@pytest.mark.parametrize(
    "answer",
    [
        "Let's think step by step. The train leaves at 3.",
        "Let’s work this out step by step: there are two boxes.",
        "Let us reason step by step about the options.",
        "Here is a step-by-step solution: the base is 4.",
        "让我们一步一步地思考。小明有5个苹果。",
        "我们一步步来分析这个问题。",
    ],
)
def test_lets_think(answer):
    assert "lets_think" in one(answer)["cot_style"]


@pytest.mark.parametrize(
    "answer",
    [
        "You can better learn if you go step by step.",  # FLAN sensemaking rationale
        "Here is a step-by-step guide to planting tomatoes.",
        "Let's think about what to cook tonight.",
        "那身影也一步步靠近。",  # alpaca_zh story: a figure comes closer step by step
    ],
)
def test_lets_think_hard_negatives(answer):
    assert "lets_think" not in one(answer)["cot_style"]


# ------------------------------------------------------------------------------------ equation_chain


@pytest.mark.parametrize(
    "answer",
    [
        "48/2 = 24 apples. 24+48 = 72.",
        "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute. She earned 0.2 x 50 = $<<0.2*50=10>>10.",
        "3 times 4 = 12, and 12 plus 2 = 14 in all.",
        "48 divided by 2 is 24 clips in May, and 48 plus 24 equals 72 clips in all.",
        "x + 4 - 4 = 10 - 4, so x = 6 and 2x = 2 * 6 = 12.",
        "首先，5+3=8，然后8×2=16。",
    ],
)
def test_equation_chain(answer):
    assert "equation_chain" in one(answer)["cot_style"]


@pytest.mark.parametrize(
    "answer",
    [
        "( 76.0 - 25.0 ) = 51.0",  # SVAMP: one equation is not a chain
        "91-33=58",
        "Mix 1/2 cup of sugar with 3/4 cup of flour and 2 eggs.",
        "Call 1-800-222-1222 or 911 in an emergency.",
        "x = 5\ny = x + 2\nprint(y)",  # code assignments
    ],
)
def test_equation_chain_hard_negatives(answer):
    assert not one(answer)["cot"]


# ------------------------------------------------------------------------------------ step_list


@pytest.mark.parametrize(
    "answer",
    [
        "Step 1: Tom has 3 bags of 4 apples, so 3 x 4 = 12 apples.\nStep 2: He eats 2, therefore 10 are left.",
        "First, the train covers 60 km in one hour. Then it has 120 km left, which means it needs two more"
        " hours. Finally, the trip takes 3 hours in total.",
        "首先，甲有5本书，乙比甲多3本。然后，乙有8本书，因此两人一共有13本。最后，所以答案是13本。",
    ],
)
def test_step_list_with_reasoning(answer):
    assert "step_list" in one(answer)["cot_style"]


@pytest.mark.parametrize(
    "answer",
    [
        "Here are three tips: 1. Eat well 2. Sleep 3. Exercise",
        "Here are three tips:\n1. Eat well.\n2. Sleep eight hours.\n3. Exercise daily.",
        "First, preheat the oven. Second, mix the flour and sugar. Then add the eggs. Finally, bake for 20 minutes.",
        "Ingredients:\n- 2 cups flour\n- 1/2 cup sugar\n- 3/4 cup milk\n- 1 1/2 teaspoons salt",
        # headed items that carry a "therefore" each are parallel reasons, not steps
        "1. Demand: web developers are needed everywhere, therefore jobs are easy to find.\n"
        "2. Flexibility: remote work is common, thus you can choose where to live.\n"
        "3. Growth: the field changes fast, hence you keep learning.",
        "1. 高需求：网页开发需求量极高，因此就业前景广阔。\n2. 灵活：可以远程工作，从而自由安排时间。\n"
        "3. 学习：技术更新快，所以需要不断学习。",
    ],
)
def test_structure_lists_are_not_cot(answer):
    got = one(answer)
    assert not got["cot"], got


# ------------------------------------------------------------------------------------ explain_then_answer


@pytest.mark.parametrize(
    ("answer", "final"),
    [
        ("Bloody mess is covered or stained with blood. So the answer is bloody mess.", "bloody mess"),
        (
            "Ice melts in the sun because it is warm. Therefore, among A through E, the answer is B, melted.",
            "B, melted",
        ),
        (
            "The sum of the angles is 180 degrees, so the missing one is $\\boxed{\\frac{1}{2}\\pi}$.",
            "\\frac{1}{2}\\pi",
        ),
        ("He had 30 cards and gave away 8 of them to Sam. Therefore, the answer (arabic numerals) is 22.", "22"),
        ("小明一共有五个苹果，吃掉了两个苹果。所以答案是3。", "3"),
    ],
)
def test_explain_then_answer(answer, final):
    got = one(answer)
    assert "explain_then_answer" in got["cot_style"]
    assert got["final_answer"] == final


@pytest.mark.parametrize(
    "answer",
    [
        "The answer is bloody mess.",  # FLAN without its rationale
        "What is the tallest mountain in Europe?\n\nAnswer: Mount Elbrus.",  # a quiz item
        "Which is not a nutrient?\nA. Fiber\nB. Protein\nC. Carbs\nD. Magnesium\nAnswer: Magnesium.",
        "It is uncertain what the answer is.",
        "She searched every book until she stumbled upon the answer: a new crop rotation.",
        "#### Ingredients:\n- 1 cup flour\nMix everything well and bake it for an hour.",  # Markdown heading
        "以下是句子分类的详细答案：这部电影很好看。",  # 答案 inside a phrase is not a marker
    ],
)
def test_explain_then_answer_hard_negatives(answer):
    assert "explain_then_answer" not in one(answer)["cot_style"]


def test_final_answer_takes_the_last_marker_and_is_found_without_cot():
    assert one("The answer is 4.")["final_answer"] == "4"
    assert not one("The answer is 4.")["cot"]
    got = one("Earlier I thought the answer is 3. Checking again, 2 + 2 = 4, so the final answer is 4.")
    assert got["final_answer"] == "4"
    assert one("He had 3 + 4 = 7 apples and 7 * 2 = 14 pears.\n#### 14\n")["final_answer"] == "14"
    assert one("No marker in this answer at all.")["final_answer"] is None


# ------------------------------------------------------------------------------------ decision, length


PLAIN = [
    "The Eiffel Tower was completed in 1889 for the World's Fair.",
    "Autumn leaves drift slowly over the quiet village square.",
    "Our product is easy to use and comes in three colours.",
    "Once upon a time, a fox lived at the edge of a dark forest.",
    "Good sleep and a balanced diet help you stay healthy.",
]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(PLAIN), min_size=0, max_size=60))
def test_length_is_not_the_tell(filler):
    text = " ".join(filler)
    worked = "48/2 = 24 apples. 24+48 = 72. #### 72"
    plain, padded = tag(text or "Paris.", f"{text}\n{worked}")
    assert plain["cot"] is False
    assert padded["cot"] is True


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=200), min_size=1, max_size=8))
def test_invariants_on_any_text(answers):
    df = chats(*[("q", a) for a in answers])
    out = CotTag().apply_with_reasons(df)
    assert out.height == df.height
    if "_drop" in out.columns:
        assert out["_drop"].is_null().all()
    for row in out.select(COLUMNS).to_dicts():
        assert row["cot"] is (len(row["cot_style"]) > 0)
        assert row["cot_style"] == [s for s in STYLES if s in row["cot_style"]]
        assert row["cot_steps"] >= 0


# ------------------------------------------------------------------------------------ the stage


def test_stage_is_registered_adds_columns_and_keeps_rows():
    assert STAGES["cot_tag"] is CotTag
    assert CotTag.drops_rows is False
    df = chats(("q", "Paris."), ("q", "48/2 = 24. 24+48 = 72. #### 72"), ("q", ""))
    out = CotTag().process(df)
    assert out.height == 3
    assert out["cot"].to_list() == [False, True, False]
    assert out.schema["cot_style"] == pl.List(pl.String)
    assert out.schema["cot_steps"] == pl.Int32


def test_field_response_reads_assistant_turns_and_all_reads_everything():
    df = chats(("Let's think step by step about France.", "Paris."))
    assert CotTag().process(df)["cot"].to_list() == [False]
    assert CotTag(field="all").process(df)["cot"].to_list() == [True]


def test_every_assistant_turn_counts_and_pretrain_uses_text():
    df = pl.DataFrame(
        {
            "kind": ["instruction"],
            "text": [None],
            "messages": [
                [
                    {"role": "user", "content": "How many?"},
                    {"role": "assistant", "content": "48/2 = 24 apples."},
                    {"role": "user", "content": "And in total?"},
                    {"role": "assistant", "content": "24+48 = 72 apples."},
                ]
            ],
        },
        schema_overrides={"text": pl.String},
    )
    assert CotTag().process(df)["cot_style"].to_list() == [["equation_chain"]]
    docs = pl.DataFrame({"kind": ["pretrain"], "text": ["Let's think step by step."], "messages": [None]})
    docs = docs.cast({"messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String}))})
    assert CotTag().process(docs)["cot"].to_list() == [True]


def test_tagging_twice_replaces_the_columns():
    once = CotTag().process(chats(("q", "Let's think step by step. It is 4.")))
    twice = CotTag().process(once)
    assert twice.columns == once.columns
    assert twice.equals(once)


def test_parameters_change_the_rules_and_the_fingerprint():
    answer = "3 + 4 = 7. 7 * 2 = 14."
    assert one(answer)["cot"]
    assert not CotTag(min_calculations=3).process(chats(("q", answer)))["cot"][0]
    assert "cot_v1" in CotTag().fingerprint()
    assert CotTag().fingerprint() != CotTag(min_steps=3).fingerprint()


def test_count_steps_takes_lists_series_and_expressions():
    texts = ["48/2 = 24 apples.\n24+48 = 72 apples.\n#### 72", None, "Paris."]
    assert count_steps(texts).to_list() == [2, 0, 0]
    assert count_steps(pl.Series(texts)).to_list() == [2, 0, 0]
    df = pl.DataFrame({"t": texts})
    assert df.select(count_steps(pl.col("t")))["t"].to_list() == [2, 0, 0]


def test_tag_cot_works_on_any_text_column():
    out = tag_cot(pl.DataFrame({"answer": ["So 2 + 2 = 4 and 4 + 4 = 8."]}), pl.col("answer"))
    assert out.columns == ["answer", *COLUMNS]
    assert out["cot_style"].to_list() == [["equation_chain"]]


# ------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"version": "cot_v2"}, "stages[0].version: must be one of 'cot_v1', got 'cot_v2'"),
        ({"field": "answer"}, "stages[0].field: must be one of 'response' | 'all', got 'answer'"),
        ({"min_steps": 1}, "stages[0].min_steps: must be >= 2, got 1"),
        ({"min_calculations": 0}, "stages[0].min_calculations: must be >= 2, got 0"),
        ({"min_steps": "two"}, "stages[0].min_steps: must be an integer"),
    ],
)
def test_bad_parameters_are_config_errors(tmp_path, table, message):
    (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n')
    config = {
        "pipeline": {"name": "t"},
        "sources": [{"name": "a", "path": "a.jsonl"}],
        "stages": [{"use": "cot_tag", **table}],
    }
    with pytest.raises(ConfigError) as info:
        load_config(config, tmp_path)
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


def test_default_parameters_are_valid(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n')
    config = {"pipeline": {"name": "t"}, "sources": [{"name": "a", "path": "a.jsonl"}], "stages": [{"use": "cot_tag"}]}
    assert isinstance(load_config(config, tmp_path).stages[0], CotTag)
