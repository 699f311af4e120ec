"""Config validation: every problem at once, each with its location, before any data is read."""

from pathlib import Path

import pytest

import curate
from curate.config import load_config
from curate.errors import ConfigError


def problems_of(config, base: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(config, base)
    return info.value.problems


def base_config(**extra):
    cfg = {"pipeline": {"name": "t"}, "sources": [{"name": "a", "path": "a.jsonl"}]}
    cfg.update(extra)
    return cfg


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "b.jsonl").write_text('{"text": "world"}\n')
    return tmp_path


def test_valid_config_loads(folder):
    cfg = load_config(base_config(stages=[{"use": "normalize"}]), folder)
    assert cfg.sources[0].files == [folder / "a.jsonl"]
    assert cfg.output_dir == folder / "out" / "t"


def test_all_problems_reported_at_once_with_locations(folder):
    cfg = {
        "pipeline": {"name": "t", "output": ["not", "a", "string"]},
        "sources": [
            {"name": "a", "path": "a.jsonl"},
            {"name": "b", "path": "data/x*.jsonl"},
            {"name": "a", "path": "b.jsonl", "fromat": "alpaca"},
        ],
        "stages": [{"use": "filter_length", "min_tokens": 5, "max_tokens": 2}, {"use": "exact_dedupe"}],
        "mixture": {"weights": {"a": 0.5, "b": 0.4}},
    }
    found = problems_of(cfg, folder)
    expected = [
        "pipeline.output: must be a string, got a list",
        "sources[1].path: no file matches 'data/x*.jsonl'",
        "sources[2].fromat: unknown key, did you mean 'format'",
        "sources[2].name: 'a' is used by an earlier source",
        "stages[0].max_tokens: 2 is below min_tokens = 5",
        "stages[1].use: unknown stage 'exact_dedupe', did you mean 'exact_dedup'",
        "mixture.weights: sum is 0.9, must be 1",
    ]
    for fragment in expected:
        assert any(fragment in p for p in found), (fragment, found)


def test_unknown_stage_parameter_suggests_the_right_one(folder):
    found = problems_of(base_config(stages=[{"use": "language", "min_scroe": 0.5}]), folder)
    assert found == ["stages[0].min_scroe: unknown key, did you mean 'min_score'"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"pipeline": {"name": "t", "seed": "zero"}}, "pipeline.seed: must be an integer, got a string"),
        ({"pipeline": {"name": "t", "tokenizer": "cl100k"}}, "pipeline.tokenizer: unknown tiktoken encoding"),
        ({"output": {"formats": ["jsonl.zst", "csv"]}}, "output.formats[1]: must be one of"),
        ({"output": {"shard_max_records": 0}}, "output.shard_max_records: must be >= 1"),
        ({"stages": [{"use": "normalize", "form": "NFX"}]}, "stages[0].form: must be one of"),
        ({"stages": [{"use": "exact_dedup", "scope": 3}]}, "stages[0].scope: must be one of"),
        ({"stages": [{"min_tokens": 3}]}, "stages[0].use: required key"),
        ({"mixture": {"weights": {"a": 1.0}, "max_epochs": {"a": 0}}}, "mixture.max_epochs.a: must be >= 1"),
        ({"mixture": {"weights": {"z": 1.0}}}, "mixture.weights.z: no source named 'z'"),
        ({"mixture": {"weights": {"a": 1.0}, "total_tokens": -5}}, "mixture.total_tokens: must be > 0"),
        ({"stages": [{"use": "filter_length"}]}, "stages[0]: set at least one of"),
        ({"piepline": {}}, "piepline: unknown section, did you mean 'pipeline'"),
    ],
)
def test_single_problem_messages(folder, table, message):
    cfg = base_config()
    cfg.update(table)
    if "pipeline" in table:
        cfg["pipeline"] = table["pipeline"]
    found = problems_of(cfg, folder)
    assert any(message in p for p in found), found


def test_missing_sections_and_source_fields(folder):
    found = problems_of({"sources": [{"path": "a.jsonl", "format": "prompt_response"}]}, folder)
    assert "pipeline: required section [pipeline] is missing" in found
    assert any(p.startswith("sources[0].name: required key is missing") for p in found)


def test_prompt_response_needs_fields(folder):
    found = problems_of(base_config(sources=[{"name": "a", "path": "a.jsonl", "format": "prompt_response"}]), folder)
    assert any("sources[0].fields: prompt_response needs fields" in p for p in found)


def test_source_name_pattern(folder):
    found = problems_of(base_config(sources=[{"name": "My Source", "path": "a.jsonl"}]), folder)
    assert any("sources[0].name: 'My Source' must match [a-z0-9_-]+" in p for p in found)


def test_every_source_needs_a_weight(folder):
    cfg = base_config(
        sources=[{"name": "a", "path": "a.jsonl"}, {"name": "b", "path": "b.jsonl"}],
        mixture={"weights": {"a": 1.0}},
    )
    assert any("source 'b' has no weight" in p for p in problems_of(cfg, folder))


def test_toml_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[pipeline\nname = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "not valid TOML" in str(info.value)


def test_relative_paths_resolve_against_the_toml_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jsonl").write_text('{"text": "hi there"}\n')
    toml = tmp_path / "sub" / "mix.toml"
    toml.write_text('[pipeline]\nname = "t"\n[[sources]]\nname = "a"\npath = "a.jsonl"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config("sub/mix.toml")
    assert cfg.output_dir == (tmp_path / "sub" / "out" / "t").resolve()


def test_config_errors_write_nothing(tmp_path):
    cfg = {"pipeline": {"name": "t", "output": "out"}, "sources": [{"name": "a", "path": "missing.jsonl"}]}
    with pytest.raises(ConfigError):
        curate.build(cfg, base_dir=tmp_path)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / ".curate").exists()


def test_undetectable_format_is_a_config_error(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"foo": 1, "bar": 2}\n')
    with pytest.raises(ConfigError) as info:
        curate.build(base_config(), base_dir=tmp_path)
    assert "sources[0].format: cannot detect the record format of a.jsonl line 1 (keys: foo, bar)" in str(info.value)


def test_problems_in_one_section_do_not_hide_others(folder):
    cfg = base_config(
        pipeline={"name": "t", "seed": 1.5, "tokenizer": "cl100k_bas"},
        mixture={"weights": {"a": 0.9}, "max_epochs": {"a": 1.5}},
        output={"formats": ["csv"], "shard_max_records": -1},
    )
    found = problems_of(cfg, folder)
    for fragment in (
        "pipeline.seed: must be an integer",
        "pipeline.tokenizer: unknown tiktoken encoding 'cl100k_bas'",
        "mixture.max_epochs.a: must be an integer",
        "mixture.weights: sum is 0.9, must be 1",
        "output.formats[0]: must be one of",
        "output.shard_max_records: must be >= 1",
    ):
        assert any(fragment in p for p in found), (fragment, found)


def test_negative_seed_is_refused(folder):
    assert any(
        "pipeline.seed: must be >= 0" in p for p in problems_of(base_config(pipeline={"name": "t", "seed": -1}), folder)
    )


def test_a_folder_of_files_curate_does_not_read_says_so(folder):
    for name in ("a.tsv", "b.jsonl.bz2", ".hidden.tsv"):
        (folder / "in" / name).parent.mkdir(exist_ok=True)
        (folder / "in" / name).write_text("x\n")
    for path in ("in", "in/*"):
        config = {"pipeline": {"name": "x"}, "sources": [{"name": "a", "path": path}]}
        assert problems_of(config, folder) == [
            f"sources[0].path: no file curate reads in {path!r} (relative to {folder}): 2 other file(s), such as "
            "'a.tsv', 'b.jsonl.bz2'; it reads .jsonl, .json, .parquet, .csv, .txt (optionally .gz/.zst)"
        ]
