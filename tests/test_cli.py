"""The CLI is a thin shell: help everywhere, clean errors, exit codes 0 / 1 / 2."""

import json

import pytest
from click.testing import CliRunner

from curate.cli import main
from tests.conftest import REPO, write_jsonl

COMMANDS = sorted(main.commands)


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_command_list():
    assert COMMANDS == ["build", "inspect", "plan", "report", "stages", "train-classifier", "validate", "verify"]


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
def test_every_command_has_help_with_an_example(command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Example: curate" in result.output
    assert len(result.output.splitlines()) > 4


def test_build_prints_the_mixture_table(tmp_path):
    result = run(
        "build",
        str(REPO / "pipelines" / "quickstart.toml"),
        "-o",
        str(tmp_path / "out"),
        "--work-dir",
        str(tmp_path / "work"),
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    for word in ("source", "alpaca", "gsm8k", "web", "wiki", "target", "realized", "epochs"):
        assert word in result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["totals"]["records_out"] > 0


def test_config_error_exit_code_2_without_traceback(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text(
        '[pipeline]\nname = "x"\nseed = "zero"\n[[sources]]\nname = "a"\npath = "nope/*.jsonl"\n'
        '[[stages]]\nuse = "exact_dedup"\ntreshold = 0.8\n'
    )
    result = CliRunner().invoke(main, ["build", str(toml)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    for fragment in (
        "pipeline.seed: must be an integer",
        "sources[0].path: no file matches 'nope/*.jsonl'",
        "stages[0].treshold: unknown key",
    ):
        assert fragment in result.output
    assert "3 configuration problems" in result.output
    assert not (tmp_path / "out").exists()


def test_missing_config_file_is_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "none.toml")])
    assert result.exit_code == 2 and "config file not found" in result.output


def test_build_failure_is_exit_1(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "a short document"}])
    toml = tmp_path / "m.toml"
    toml.write_text(
        '[pipeline]\nname = "x"\n[[sources]]\nname = "a"\npath = "a.jsonl"\n'
        "[mixture]\nweights = { a = 1.0 }\ntotal_tokens = 1000\n"
    )
    result = CliRunner().invoke(main, ["build", str(toml), "--no-progress"])
    assert result.exit_code == 1
    assert "infeasible mixture" in result.output and "Traceback" not in result.output


def test_usage_error_is_exit_2():
    assert CliRunner().invoke(main, ["build"]).exit_code == 2
    assert CliRunner().invoke(main, ["build", "x.toml", "--workers", "0"]).exit_code == 2


def test_validate_prints_the_plan():
    result = run("validate", str(REPO / "pipelines" / "quickstart.toml"))
    assert result.exit_code == 0
    assert "config OK" in result.output and "prompt_response" in result.output
    assert "normalize → filter_length → exact_dedup → language" in result.output


def test_stages_lists_every_stage_and_parameters():
    result = run("stages")
    for name in ("normalize", "filter_length", "exact_dedup", "language"):
        assert name in result.output
    assert "min_tokens" in result.output and "scope" in result.output
    detail = run("stages", "exact_dedup")
    assert "exact_duplicate_of" in detail.output
    assert CliRunner().invoke(main, ["stages", "nope"]).exit_code == 2


def test_messages_with_brackets_are_printed_verbatim(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n')
    toml = tmp_path / "m.toml"
    toml.write_text('[pipeline]\nname = "x"\n[[sources]]\nname = "A b"\npath = "[bold]a.jsonl"\n')
    result = CliRunner().invoke(main, ["validate", str(toml)])
    assert result.exit_code == 2
    assert "must match [a-z0-9_-]+" in result.output
    assert "'[bold]a.jsonl'" in result.output


def test_ctrl_c_is_exit_130_and_says_the_build_resumes(tmp_path, monkeypatch):
    import curate.cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(curate.cli.api, "build", interrupted)
    result = CliRunner().invoke(main, ["build", str(REPO / "pipelines" / "quickstart.toml")])
    assert result.exit_code == 130
    assert "stopped (Ctrl-C); run the same command again to resume" in result.output
    assert "Aborted" not in result.output and "Traceback" not in result.output
