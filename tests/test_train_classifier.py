"""`curate train-classifier` / `curate.train_classifier`: training on fixture data, held-out figures,
quantization, bad input, and the metrics and text preprocessing it shares with the stage."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from curate import ConfigError, train_classifier
from curate.classify import classifier_text, score_texts
from curate.classify.metrics import binary_scores, roc_auc
from curate.classify.model import load_classifier, model_labels
from curate.cli import main
from curate.stages import FasttextClassifier
from tests.conftest import REPO, write_jsonl

FIX = REPO / "tests" / "fixtures" / "classifier"
WORKED = (
    "She has 3 boxes of 12 pens, so 3 * 12 = 36 pens. She gives away 10, so 36 - 10 = 26 pens are left. "
    "The answer is 26."
)
PLAIN = "Dear team, thank you for your hard work this quarter. Please enjoy the long weekend."
TOML = """[pipeline]
name = "cls"
[[sources]]
name = "gsm8k"
path = "{fix}/gsm8k_train.jsonl"
format = "prompt_response"
fields = {{ prompt = "question", response = "answer" }}
[[sources]]
name = "t0"
path = "{fix}/t0_p3.jsonl"
format = "prompt_response"
fields = {{ prompt = "prompt", response = "completion" }}
"""
FAST = {"epoch": 25, "dim": 8, "lr": 0.2, "min_count": 1}


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cfg")
    (folder / "mixture.toml").write_text(TOML.format(fix=FIX))
    return folder / "mixture.toml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mixture):
    """One quantized model: GSM8K (by source name) + FLAN CoT (by path) against Self-Instruct + T0."""
    out = tmp_path_factory.mktemp("model") / "reasoning.bin"
    result = train_classifier(
        ["gsm8k", str(FIX / "flan_cot.jsonl")],
        [str(FIX / "self_instruct.jsonl"), "t0"],
        out,
        label="reasoning",
        negative_label="other",
        config=mixture,
        quantize=True,
        **FAST,
    )
    return result


def test_training_reports_held_out_figures_and_writes_a_quantized_model(trained):
    assert trained.model.suffix == ".ftz" and trained.model.is_file()
    assert trained.size_bytes == trained.model.stat().st_size
    assert trained.sources == {
        "positive:gsm8k": 40,
        f"positive:{FIX / 'flan_cot.jsonl'}": 32,
        f"negative:{FIX / 'self_instruct.jsonl'}": 40,
        "negative:t0": 40,
    }
    held = trained.heldout
    n_pos = trained.train_counts["reasoning"] + held.n_positive  # distinct texts per class
    n_neg = trained.train_counts["other"] + held.n_negative
    assert n_pos == 72 and 60 <= n_neg <= 80  # T0 completions repeat ("Yes", "No")
    assert (held.n_positive, held.n_negative) == (round(n_pos / 10), round(n_neg / 10))
    assert 0.0 <= held.precision <= 1.0 and 0.0 <= held.recall <= 1.0 and 0.5 <= held.auc <= 1.0
    assert trained.heldout_before_quantize is not None
    model = load_classifier(trained.model)
    assert sorted(model_labels(model)) == ["other", "reasoning"]
    worked, plain = score_texts(model, [classifier_text(WORKED), classifier_text(PLAIN)], "reasoning")
    assert worked > 0.5 > plain


def test_training_is_deterministic(tmp_path):
    args = ([str(FIX / "flan_cot.jsonl")], [str(FIX / "self_instruct.jsonl")])
    a = train_classifier(*args, tmp_path / "a.bin", seed=3, **FAST)
    b = train_classifier(*args, tmp_path / "b.bin", seed=3, **FAST)
    assert a.model.read_bytes() == b.model.read_bytes()
    assert a.heldout == b.heldout


def test_texts_in_both_classes_are_left_out(tmp_path):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
    rows = [{"instruction": "q", "output": f"{w} because {w} plus one is more"} for w in words]  # digits all read 0
    write_jsonl(tmp_path / "pos.jsonl", rows)
    write_jsonl(tmp_path / "neg.jsonl", rows[:4] + [{"instruction": "x", "output": f"hello {w}"} for w in "abcdef"])
    result = train_classifier([str(tmp_path / "pos.jsonl")], [str(tmp_path / "neg.jsonl")], tmp_path / "m.bin", **FAST)
    assert result.dropped_conflicts == 4
    assert sum(result.train_counts.values()) + result.heldout.n_positive + result.heldout.n_negative == 8 + 6
    assert result.size_bytes > 0 and result.heldout_before_quantize is None


@pytest.mark.parametrize(
    ("positive", "negative", "out", "kwargs", "fragment"),
    [
        (["nope.jsonl"], ["self_instruct.jsonl"], "m.bin", {}, "not found: 'nope.jsonl'"),
        (
            ["flan_cot.jsonl"],
            ["empty.jsonl"],
            "m.bin",
            {},
            "empty.jsonl: no record with text in field 'response' (0 records read)",
        ),
        (["gsm9k"], ["self_instruct.jsonl"], "m.bin", {"config": True}, "'gsm9k' is neither a source of"),
        (["flan_cot.jsonl"], ["self_instruct.jsonl"], "missing/m.bin", {}, "folder"),
        (["flan_cot.jsonl"], ["flan_cot.jsonl"], "m.bin", {}, "--positive: 0 distinct text(s) left"),
        (["flan_cot.jsonl"], [], "m.bin", {}, "--negative: give at least one source"),
        (["flan_cot.jsonl"], ["self_instruct.jsonl"], "m.bin", {"label": "a b"}, "label: 'a b' must match"),
        (["flan_cot.jsonl"], ["self_instruct.jsonl"], "m.bin", {"label": "negative"}, "must differ"),
    ],
)
def test_bad_input_is_a_config_error_naming_it(
    tmp_path, mixture, monkeypatch, positive, negative, out, kwargs, fragment
):
    monkeypatch.chdir(FIX)
    (tmp_path / "empty.jsonl").write_text("")
    negative = [str(tmp_path / n) if n == "empty.jsonl" else n for n in negative]
    if kwargs.pop("config", False):
        kwargs["config"] = mixture
    with pytest.raises(ConfigError) as info:
        train_classifier(positive, negative, tmp_path / out, **kwargs)
    assert fragment in str(info.value)
    assert not (tmp_path / out).exists()


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_trains_a_quantized_model_that_the_stage_reads(tmp_path, mixture):
    result = run(
        "train-classifier", "-p", "gsm8k", "-p", str(FIX / "flan_cot.jsonl"), "-n", "t0",
        "-n", str(FIX / "self_instruct.jsonl"), "--config", str(mixture), "--out", str(tmp_path / "m.bin"),
        "--quantize", "--label", "cot", "--negative-label", "plain", "--epoch", "25", "--dim", "8", "--wordNgrams", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "held out:" in result.output and "ROC AUC" in result.output and "precision" in result.output
    assert f"wrote {tmp_path / 'm.ftz'}" in result.output
    assert not (tmp_path / "m.bin").exists()
    stage = FasttextClassifier(model=str(tmp_path / "m.ftz"), label="cot")
    assert stage.problems("s") == []
    rows = [
        {"id": "a", "source": "s", "kind": "pretrain", "text": WORKED, "messages": None, "n_tokens": None},
        {"id": "b", "source": "s", "kind": "pretrain", "text": PLAIN, "messages": None, "n_tokens": None},
    ]
    import polars as pl

    df = pl.DataFrame(
        rows, schema_overrides={"messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String}))}
    )
    scores = stage.process(df)["fasttext_cot"].to_list()
    assert scores[0] > scores[1]


def test_cli_errors_have_exit_codes_and_no_traceback(tmp_path, mixture):
    result = run("train-classifier", "-p", "nope.jsonl", "-n", str(FIX / "t0_p3.jsonl"), "-o", str(tmp_path / "m.bin"))
    assert result.exit_code == 2 and "not found: 'nope.jsonl'" in result.output and "Traceback" not in result.output
    result = run("train-classifier", "-p", "gsm8k", "-n", "t1", "-c", str(mixture), "-o", str(tmp_path / "m.bin"))
    assert result.exit_code == 2 and "'t1' is neither a source of" in result.output and "gsm8k, t0" in result.output
    result = run("train-classifier", "-p", "x.jsonl", "-o", str(tmp_path / "m.bin"))
    assert result.exit_code == 2 and "--negative" in result.output  # click: missing option
    result = run(
        "train-classifier", "-p", "gsm8k", "-n", "t0", "-c", str(mixture), "-o", str(tmp_path / "m.bin"), "--lr", "1e9"
    )
    assert result.exit_code == 1 and "fastText training failed" in result.output and "Traceback" not in result.output


def test_help_has_an_example():
    result = run("train-classifier", "--help")
    assert (
        result.exit_code == 0 and "Example: curate train-classifier" in result.output and "--quantize" in result.output
    )


# ---------------------------------------------------------------------------------------- metrics and text


def test_binary_scores_by_hand():
    s = binary_scores(np.array([1, 1, 1, 0, 0, 0], bool), np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1]))
    assert (s.precision, s.recall) == (2 / 3, 2 / 3)
    assert s.auc == pytest.approx(8 / 9)  # of 9 positive/negative pairs, only (0.3, 0.6) is out of order
    assert roc_auc(np.array([1, 0], bool), np.array([0.5, 0.5])) == 0.5
    assert np.isnan(roc_auc(np.array([1, 1], bool), np.array([0.1, 0.2])))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=30))
def test_roc_auc_is_the_share_of_ordered_pairs(pairs):
    labels = np.array([p for p, _ in pairs], bool)
    scores = np.array([s for _, s in pairs], float)
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        assert np.isnan(roc_auc(labels, scores))
        return
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg])
    assert roc_auc(labels, scores) == pytest.approx(expected)


def test_classifier_text_rules():
    assert (
        classifier_text("Step 1: 48/2 = 24.\nSo the\tANSWER is $24!")
        == "step 0 : 00 / 0 = 00 . so the answer is $ 00 !"
    )
    assert classifier_text("首先，3+4=7。所以答案是7") == "首先 ， 0 + 0 = 0 。 所以答案是0"
    assert classifier_text("abcdef", max_chars=3) == "abc"
    assert classifier_text(None) == "" and classifier_text(" \n ") == ""


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_classifier_text_is_one_line_and_stable(text):
    once = classifier_text(text, max_chars=10_000)
    assert "\n" not in once and "\r" not in once and once == once.strip()
    assert classifier_text(once, max_chars=10_000) == once


def test_fixture_licenses_are_stated():
    licenses = (FIX / "LICENSES.md").read_text()
    for f in FIX.glob("*.jsonl"):
        assert f.name in licenses
        assert all(json.loads(line) for line in f.read_text().splitlines())
