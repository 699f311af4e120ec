"""`curate plan`: the plan without building (no output written), the same targets as the build, the
work-dir cache shared with `build`, infeasible mixtures named with exit code 1."""

import json

from click.testing import CliRunner

import curate
from curate.cli import main
from tests.mixture_helpers import real_pipeline

WEIGHTS = {"gsm8k": 0.5, "svamp": 0.25, "docs": 0.25}


def write_toml(folder, mixture: str) -> str:
    real_pipeline(folder)  # writes the data files
    path = folder / "m.toml"
    path.write_text(
        '[pipeline]\nname = "p"\noutput = "out"\n'
        '[[sources]]\nname = "gsm8k"\npath = "gsm8k.jsonl"\nformat = "prompt_response"\n'
        'fields = { prompt = "question", response = "answer" }\n'
        '[[sources]]\nname = "svamp"\npath = "svamp.jsonl"\nformat = "prompt_response"\n'
        'fields = { prompt = "Question", response = "Equation" }\n'
        '[[sources]]\nname = "docs"\npath = "docs.jsonl"\n'
        '[[stages]]\nuse = "cot_tag"\n' + mixture
    )
    return str(path)


def test_plan_writes_nothing_and_matches_the_build(tmp_path):
    cfg = real_pipeline(tmp_path, weights=WEIGHTS, max_epochs={"svamp": 2}, validation=0.05)
    planned = curate.plan(cfg, base_dir=tmp_path)
    assert planned.problem is None
    assert not (tmp_path / "out").exists()
    data = planned.to_dict()
    assert data["feasible"] and data["validation_tokens"] > 0
    svamp = next(s for s in data["sources"] if s["source"] == "svamp")
    assert svamp["sampling_rate"] == round(svamp["target_tokens"] / svamp["available_tokens"], 6)
    built = curate.build(cfg, base_dir=tmp_path)
    assert built.run["cached_passes"]  # the build reused the stages plan ran
    mixture = built.manifest["mixture"]
    assert [s["target_tokens"] for s in mixture["sources"]] == [s["target_tokens"] for s in data["sources"]]
    assert mixture["total_tokens"] == data["total_tokens"]
    assert mixture["validation"]["tokens"] == data["validation_tokens"]


def test_plan_reports_an_infeasible_mixture(tmp_path):
    cfg = real_pipeline(tmp_path, weights=WEIGHTS, total_tokens=10_000_000)
    planned = curate.plan(cfg, base_dir=tmp_path)
    assert planned.problem is not None and "largest feasible total_tokens" in planned.problem
    assert planned.plan.max_feasible_tokens < 10_000_000
    assert planned.to_dict()["feasible"] is False


def test_cli_plan_table_json_and_exit_codes(tmp_path):
    groups = (
        "[mixture.groups.cot]\nwhere = \"cot and kind == 'instruction'\"\nweight = 0.4\n"
        "[mixture.groups.rest]\nrest = true\nweight = 0.6\ntemperature = 2.0\n"
    )
    path = write_toml(tmp_path, groups)
    result = CliRunner().invoke(main, ["plan", path, "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for word in ("sampling rate", "cot", "rest", "rest/svamp", "largest feasible", "bound by"):
        assert word in result.output
    assert not (tmp_path / "out").exists()
    as_json = CliRunner().invoke(main, ["plan", path, "--json", "--no-progress"], catch_exceptions=False)
    data = json.loads(as_json.output)
    assert {g["group"] for g in data["groups"]} == {"cot", "rest"}
    assert abs(sum(c["share"] for c in data["cells"]) - 1) < 1e-9
    big = write_toml(
        tmp_path, "[mixture]\nweights = { gsm8k = 0.5, svamp = 0.25, docs = 0.25 }\ntotal_tokens = 9999999\n"
    )
    failed = CliRunner().invoke(main, ["plan", big, "--no-progress"])
    assert failed.exit_code == 1 and "infeasible mixture" in failed.output and "Traceback" not in failed.output
