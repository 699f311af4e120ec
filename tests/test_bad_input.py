"""Bad input, through `curate.build`: each case of the issue's "Bad input" list.

A record-level problem goes to `quarantine/<source>.jsonl` with file, line and reason, is counted in the
manifest and the ledger, and the build goes on with the good records; `strict=True` (`--strict`) makes
it fatal and writes nothing. Inputs are written into `tmp_path` by each test.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import zstandard
from click.testing import CliRunner

import curate
from curate.build import BuildResult
from curate.cli import main

SOURCE = "s"


def jl(*rows: Any) -> bytes:
    """JSON Lines bytes; a `bytes` row is written as is (a broken line)."""
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def docs(*names: str) -> list[dict[str, str]]:
    return [{"text": f"good document {n}"} for n in names]


def alpaca(n: str) -> dict[str, str]:
    return {"instruction": f"question {n}", "input": "", "output": f"good answer {n}"}


def write(tmp_path: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def config(path: str, stages: list[dict] | None = None, **source: Any) -> dict[str, Any]:
    return {
        "pipeline": {"name": "t"},
        "sources": [{"name": SOURCE, "path": path, **source}],
        "stages": stages or [],
    }


def run_build(tmp_path: Path, cfg: dict[str, Any], strict: bool = False) -> BuildResult:
    return curate.build(cfg, output=tmp_path / "out", base_dir=tmp_path, strict=strict)


def quarantine_rows(out: Path, source: str = SOURCE) -> list[dict[str, Any]]:
    path = out / "quarantine" / f"{source}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def kept_contents(out: Path) -> list[str]:
    """The training content of every output record: `text`, or the final assistant message."""
    shards = sorted((out / "shards").glob("*.parquet"))
    if not shards:
        return []
    rows = pl.concat([pl.read_parquet(p) for p in shards]).to_dicts()
    return sorted(r["text"] if r["kind"] == "pretrain" else r["messages"][-1]["content"] for r in rows)


def truncated_zst(good: list[dict], cut: list[dict]) -> tuple[bytes, int]:
    """A two-frame .zst whose second frame is cut short; returns it and its number of whole lines."""
    cctx = zstandard.ZstdCompressor()
    second = cctx.compress(jl(*cut))
    data = cctx.compress(jl(*good)) + second[: len(second) // 2]
    recovered = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data, recovered.count(b"\n")


def truncated_gz(rows: list[dict]) -> tuple[bytes, int]:
    """A .gz cut inside its last record; returns it and the number of lines a stream decoder recovers."""
    content = jl(*rows)
    compressed = gzip.compress(content)
    data = compressed[: len(compressed) - 14]  # drops the 8-byte trailer and the end of the deflate data
    recovered = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    return data, recovered.count(b"\n")


@dataclass
class Case:
    """One bad-input case: files, the source's settings, what is kept and what is quarantined."""

    files: dict[str, bytes]
    path: str
    kept: list[str]
    bad: list[tuple[str, int, str]]  # (file, line, reason code)
    source: dict[str, Any] = field(default_factory=dict)
    stages: list[dict] = field(default_factory=list)
    stage: str = "ingest"
    raw: dict[int, str] = field(default_factory=dict)  # line -> raw input kept in quarantine


def _zst_case() -> Case:
    data, whole_lines = truncated_zst(docs("1", "2", "3"), docs("4", "5", "6"))
    assert whole_lines == 3  # the cut frame yields nothing; the first frame is intact
    return Case({"in.jsonl.zst": data}, "in.jsonl.zst", ["good document 1", "good document 2", "good document 3"],
                [("in.jsonl.zst", 4, "truncated_file")])  # fmt: skip


CASES: dict[str, Case] = {
    "invalid_json": Case(
        {"in.jsonl": jl(*docs("1"), b'{"text": "unterminated', *docs("2"))},
        "in.jsonl",
        ["good document 1", "good document 2"],
        [("in.jsonl", 2, "invalid_json")],
        raw={2: '{"text": "unterminated'},
    ),
    "invalid_json_in_json_lines_dot_json": Case(
        {"in.json": jl(*docs("1"), b'{"text": oops}', *docs("2"))},
        "in.json",
        ["good document 1", "good document 2"],
        [("in.json", 2, "invalid_json")],
    ),
    "not_an_object": Case(
        {"in.jsonl": jl(*docs("1"), b"[1, 2, 3]", b'"a string"', b"42", b"null", *docs("2"))},
        "in.jsonl",
        ["good document 1", "good document 2"],
        [("in.jsonl", n, "not_an_object") for n in (2, 3, 4, 5)],
        raw={2: "[1, 2, 3]", 3: '"a string"'},
    ),
    "not_an_object_in_json_array": Case(
        {"in.json": json.dumps([*docs("1"), [1, 2], "text", *docs("2")]).encode()},
        "in.json",
        ["good document 1", "good document 2"],
        [("in.json", 2, "not_an_object"), ("in.json", 3, "not_an_object")],
    ),
    "missing_field": Case(
        {
            "in.jsonl": jl(
                alpaca("1"), {"instruction": "no output"}, {"instruction": "null output", "output": None}, alpaca("2")
            )
        },
        "in.jsonl",
        ["good answer 1", "good answer 2"],
        [("in.jsonl", 2, "missing_field"), ("in.jsonl", 3, "missing_field")],
    ),
    "missing_text_field": Case(
        {"in.jsonl": jl(*docs("1"), {"body": "no text key"}, *docs("2"))},
        "in.jsonl",
        ["good document 1", "good document 2"],
        [("in.jsonl", 2, "missing_field")],
        source={"format": "text"},
    ),
    "missing_id_field": Case(
        {
            "in.jsonl": jl(
                {"uid": "a", "text": "good document 1"}, {"text": "no id"}, {"uid": 2, "text": "good document 2"}
            )
        },
        "in.jsonl",
        ["good document 1", "good document 2"],
        [("in.jsonl", 2, "missing_field")],
        source={"id_field": "uid"},
    ),
    "missing_field_in_first_record": Case(
        {"in.jsonl": jl({"instruction": "no output"}, alpaca("1"), alpaca("2"))},
        "in.jsonl",
        ["good answer 1", "good answer 2"],
        [("in.jsonl", 1, "missing_field")],
    ),
    "wrong_type": Case(
        {
            "in.jsonl": jl(
                alpaca("1"),
                {"instruction": "list output", "input": "", "output": ["a", "b"]},
                {"instruction": 7, "input": "", "output": "number instruction"},
                alpaca("2"),
            )
        },
        "in.jsonl",
        ["good answer 1", "good answer 2"],
        [("in.jsonl", 2, "wrong_type"), ("in.jsonl", 3, "wrong_type")],
    ),
    "empty_after_normalize": Case(
        {"in.jsonl": jl(*docs("1"), {"text": "\u200b \t"}, *docs("2"))},
        "in.jsonl",
        ["good document 1", "good document 2"],
        [("in.jsonl", 2, "empty_after_normalize")],
        stages=[{"use": "normalize"}],
        stage="normalize",
    ),
    "empty_after_normalize_chat": Case(
        {"in.jsonl": jl(alpaca("1"), {"instruction": "q", "input": "", "output": "\u200b\u00a0"}, alpaca("2"))},
        "in.jsonl",
        ["good answer 1", "good answer 2"],
        [("in.jsonl", 2, "empty_after_normalize")],
        stages=[{"use": "normalize"}],
        stage="normalize",
    ),
    "invalid_utf8": Case(
        {"in.jsonl": jl(*docs("1"), b'{"text": "bad \xff byte"}', *docs("2"))},
        "in.jsonl",
        ["good document 1", "good document 2"],
        [("in.jsonl", 2, "invalid_utf8")],
    ),
    "invalid_utf8_txt": Case(
        {"in.txt": b"good document 1\n\nbad \xfe block\n\ngood document 2\n"},
        "in.txt",
        ["good document 1", "good document 2"],
        [("in.txt", 3, "invalid_utf8")],
    ),
    "invalid_utf8_csv": Case(
        {"in.csv": b"text,url\ngood document 1,u1\nbad \xff row,u2\ngood document 2,u3\n"},
        "in.csv",
        ["good document 1", "good document 2"],
        [("in.csv", 3, "invalid_utf8")],
    ),
    "truncated_zst": _zst_case(),
    "ragged_row": Case(
        {"in.csv": b"text,url\ngood document 1,u1\ntoo,many,fields\ngood document 2,u2\nonly one field\n"},
        "in.csv",
        ["good document 1", "good document 2"],
        [("in.csv", 3, "ragged_row"), ("in.csv", 5, "ragged_row")],
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_record_is_quarantined_and_the_build_goes_on(tmp_path, case: Case):
    write(tmp_path, case.files)
    result = run_build(tmp_path, config(case.path, case.stages, **case.source))
    out = tmp_path / "out"

    # the good records are kept
    assert kept_contents(out) == sorted(case.kept)

    # every bad record is in quarantine/<source>.jsonl with file, line and reason (and the raw input)
    rows = quarantine_rows(out)
    assert [(r["file"], r["line"]) for r in rows] == [(f, n) for f, n, _ in case.bad]
    for row, (_, _, code) in zip(rows, case.bad, strict=True):
        assert row["reason"].startswith(code), row
        assert row["stage"] == case.stage
        assert isinstance(row["raw"], str)
    for row in rows:
        if row["line"] in case.raw:
            assert row["raw"] == case.raw[row["line"]]

    # counted in the manifest ...
    n_bad, n_in = len(case.bad), len(case.bad) + len(case.kept)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == result.manifest
    src = manifest["sources"][SOURCE]
    assert src["records_quarantined"] == n_bad
    assert manifest["totals"]["records_quarantined"] == n_bad
    assert src["records_in"] == manifest["totals"]["records_in"] == n_in
    assert src["records_kept"] == len(case.kept)
    assert src["quarantine_file"] == f"quarantine/{SOURCE}.jsonl"
    code = case.bad[0][2]
    assert src["drop_reasons"][case.stage][code] == n_bad

    # ... and in the ledger: status quarantined, with file, line and reason
    ledger = pl.read_parquet(out / "ledger.parquet")
    assert ledger.equals(result.ledger)
    bad = ledger.filter(pl.col("status") == "quarantined").sort("line")
    assert list(zip(bad["file"], bad["line"], strict=True)) == [(f, n) for f, n, _ in case.bad]
    assert all(r.startswith(c) for r, (_, _, c) in zip(bad["reason"], case.bad, strict=True))
    assert set(bad["stage"]) == {case.stage}
    assert set(bad["times_sampled"]) == {0}
    assert ledger.height == n_in
    assert (ledger["status"] == "kept").sum() == len(case.kept)


def test_truncated_gz_is_quarantined_and_the_build_goes_on(tmp_path):
    data, _ = truncated_gz(docs(*map(str, range(1, 9))))
    write(tmp_path, {"in/a.jsonl": jl(*docs("a1", "a2")), "in/b.jsonl.gz": data})
    result = run_build(tmp_path, config("in"))
    out = tmp_path / "out"

    assert {"good document a1", "good document a2"} <= set(kept_contents(out))
    rows = quarantine_rows(out)
    assert [r["file"] for r in rows] == ["in/b.jsonl.gz"]
    assert rows[0]["reason"].startswith("truncated_file")
    assert rows[0]["line"] >= 1
    src = result.manifest["sources"][SOURCE]
    assert src["records_quarantined"] == result.manifest["totals"]["records_quarantined"] == 1
    bad = result.ledger.filter(pl.col("status") == "quarantined")
    assert bad.select("file", "line").row(0) == ("in/b.jsonl.gz", rows[0]["line"])
    assert bad["reason"][0].startswith("truncated_file")


def test_truncated_gz_keeps_the_records_before_the_cut(tmp_path):
    data, whole_lines = truncated_gz(docs(*map(str, range(1, 9))))
    assert 1 <= whole_lines < 8
    write(tmp_path, {"in.jsonl.gz": data})
    result = run_build(tmp_path, config("in.jsonl.gz"))
    out = tmp_path / "out"

    assert kept_contents(out) == sorted(f"good document {i}" for i in range(1, whole_lines + 1))
    rows = quarantine_rows(out)
    assert [(r["file"], r["line"], r["reason"].split(":")[0]) for r in rows] == [
        ("in.jsonl.gz", whole_lines + 1, "truncated_file")
    ]
    assert result.manifest["sources"][SOURCE]["records_in"] == whole_lines + 1


def test_truncated_csv_gz_keeps_every_row_before_the_cut(tmp_path):
    content = ("text\n" + "".join(f"good document {i}\n" for i in range(1, 9))).encode()
    compressed = gzip.compress(content)
    data = compressed[: len(compressed) - 14]  # cut inside the last row
    whole_rows = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data).count(b"\n") - 1  # less the header
    assert 1 <= whole_rows < 8
    write(tmp_path, {"in.csv.gz": data})
    result = run_build(tmp_path, config("in.csv.gz"))

    assert kept_contents(tmp_path / "out") == sorted(f"good document {i}" for i in range(1, whole_rows + 1))
    assert [r["reason"].split(":")[0] for r in quarantine_rows(tmp_path / "out")] == ["truncated_file"]
    assert result.manifest["sources"][SOURCE]["records_in"] == whole_rows + 1


EMPTY_FILES = {
    "empty.jsonl": b"",
    "empty.json": b"",
    "empty.csv": b"",
    "empty.txt": b"",
    "empty.jsonl.gz": gzip.compress(b""),
    "empty.jsonl.zst": zstandard.ZstdCompressor().compress(b""),
    "blank-lines.jsonl": b"\n  \n\n",
    "header-only.csv": b"text,url\n",
}


@pytest.mark.parametrize("empty", list(EMPTY_FILES))
def test_empty_file_gives_a_warning_and_no_records(tmp_path, empty):
    shown = f"in/{empty}"  # files are shown relative to the config folder
    write(tmp_path, {"in/good.jsonl": jl(*docs("1", "2")), shown: EMPTY_FILES[empty]})
    result = run_build(tmp_path, config("in"))
    out = tmp_path / "out"

    warnings = json.loads((out / "manifest.json").read_text())["warnings"]
    assert len(warnings) == 1
    assert shown in warnings[0] and "empty" in warnings[0]
    assert kept_contents(out) == ["good document 1", "good document 2"]
    assert shown not in set(result.ledger["file"])
    src = result.manifest["sources"][SOURCE]
    assert (src["records_in"], src["records_kept"], src["records_quarantined"]) == (2, 2, 0)
    assert not (out / "quarantine").exists()


def test_empty_parquet_file_gives_a_warning(tmp_path):
    write(tmp_path, {"in/good.jsonl": jl(*docs("1")), "in/empty.parquet": b""})
    result = run_build(tmp_path, config("in"))
    assert any("in/empty.parquet" in w for w in result.manifest["warnings"])
    assert kept_contents(tmp_path / "out") == ["good document 1"]


def test_only_an_empty_file(tmp_path):
    write(tmp_path, {"empty.jsonl": b""})
    result = run_build(tmp_path, config("empty.jsonl"))
    assert result.manifest["totals"]["records_in"] == 0
    assert result.manifest["sources"][SOURCE]["records_in"] == 0
    assert result.ledger.height == 0
    assert any("empty.jsonl" in w for w in result.manifest["warnings"])


# ------------------------------------------------------------------------------------------ strict

STRICT_CASES = list(CASES)


@pytest.mark.parametrize("name", STRICT_CASES)
def test_strict_makes_a_bad_record_fatal_and_writes_nothing(tmp_path, name):
    case = CASES[name]
    write(tmp_path, case.files)
    with pytest.raises(curate.FatalError) as info:
        run_build(tmp_path, config(case.path, case.stages, **case.source), strict=True)
    file, line, code = case.bad[0]
    assert f"{file}:{line}: {code}" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_strict_truncated_gz_is_fatal(tmp_path):
    data, _ = truncated_gz(docs(*map(str, range(1, 9))))
    write(tmp_path, {"in.jsonl.gz": data})
    with pytest.raises(curate.FatalError, match="truncated_file"):
        run_build(tmp_path, config("in.jsonl.gz"), strict=True)
    assert not (tmp_path / "out").exists()


def test_strict_empty_file_is_fatal(tmp_path):
    write(tmp_path, {"in/good.jsonl": jl(*docs("1")), "in/empty.jsonl": b""})
    with pytest.raises(curate.FatalError, match="empty"):
        run_build(tmp_path, config("in"), strict=True)
    assert not (tmp_path / "out").exists()


def test_cli_strict_exits_1_and_writes_nothing(tmp_path):
    write(tmp_path, {"in.jsonl": jl(*docs("1"), b"{not json", *docs("2"))})
    toml = tmp_path / "mixture.toml"
    toml.write_text('[pipeline]\nname = "t"\n\n[[sources]]\nname = "s"\npath = "in.jsonl"\n')
    runner = CliRunner()

    strict = runner.invoke(main, ["build", str(toml), "--strict", "--output", str(tmp_path / "strict")])
    assert strict.exit_code == 1, strict.output
    assert isinstance(strict.exception, SystemExit)  # a message, not a traceback
    assert "Traceback" not in strict.output
    assert "in.jsonl:2: invalid_json" in strict.output
    assert not (tmp_path / "strict").exists()

    lenient = runner.invoke(main, ["build", str(toml), "--output", str(tmp_path / "lenient")])
    assert lenient.exit_code == 0, lenient.output
    assert quarantine_rows(tmp_path / "lenient")[0]["line"] == 2


# ------------------------------------------------------------------------------- ledger accounting


def test_ledger_accounting_per_source(tmp_path):
    """Per source: input records = kept + dropped + quarantined, with each status where it belongs."""
    write(
        tmp_path,
        {
            "docs.jsonl": jl(
                {"text": "alpha document with enough words to pass the length filter"},  # 1 kept
                {"text": "alpha document with enough words to pass the length filter"},  # 2 duplicate
                b'{"text": broken',  # 3 invalid json
                {"text": "\u200b"},  # 4 empty after normalize
                {"text": "tiny"},  # 5 too few tokens
                b"",  # blank line: not a record
                {"text": "beta document, also long enough to be kept by the filter"},  # 7 kept
            ),
            "chat.csv": (
                b"instruction,input,output\n"
                b"Write a haiku about rain,,Soft rain on the roof and quiet streets below\n"  # 2 kept
                b"Write a haiku about rain,,Soft rain on the roof and quiet streets below\n"  # 3 duplicate
                b"ragged,row,with,too many fields\n"  # 4 quarantined
                b"Hi,,Yo\n"  # 5 too few tokens
            ),
        },
    )
    cfg = {
        "pipeline": {"name": "t"},
        "sources": [{"name": "docs", "path": "docs.jsonl"}, {"name": "chat", "path": "chat.csv"}],
        "stages": [{"use": "normalize"}, {"use": "filter_length", "min_tokens": 5}, {"use": "exact_dedup"}],
    }
    result = curate.build(cfg, output=tmp_path / "out", base_dir=tmp_path)
    ledger = result.ledger
    expected = {
        "docs": {"in": 6, "kept": 2, "dropped": 2, "quarantined": 2, "lines": [1, 2, 3, 4, 5, 7]},
        "chat": {"in": 4, "kept": 1, "dropped": 2, "quarantined": 1, "lines": [2, 3, 4, 5]},
    }
    for name, want in expected.items():
        rows = ledger.filter(pl.col("source") == name)
        counts = {status: int((rows["status"] == status).sum()) for status in ("kept", "dropped", "quarantined")}
        assert rows.height == counts["kept"] + counts["dropped"] + counts["quarantined"]
        assert rows.height == want["in"]
        assert counts == {k: want[k] for k in ("kept", "dropped", "quarantined")}
        assert sorted(rows["line"].to_list()) == want["lines"]
        src = result.manifest["sources"][name]
        assert src["records_in"] == want["in"]
        assert src["records_in"] == src["records_kept"] + src["records_dropped"] + src["records_quarantined"]
        assert (src["records_kept"], src["records_dropped"], src["records_quarantined"]) == (
            want["kept"],
            want["dropped"],
            want["quarantined"],
        )
    totals = result.manifest["totals"]
    assert totals["records_in"] == ledger.height == 10
    assert totals["records_quarantined"] == 3

    by_line = {(r["source"], r["line"]): r for r in ledger.to_dicts()}
    assert by_line[("docs", 2)]["reason"].startswith("exact_duplicate_of:")
    assert by_line[("docs", 3)]["reason"].startswith("invalid_json")
    assert by_line[("docs", 4)]["reason"] == "empty_after_normalize"
    assert by_line[("docs", 5)]["reason"] == "too_few_tokens"
    assert by_line[("chat", 4)]["reason"].startswith("ragged_row")
    assert by_line[("chat", 5)]["reason"] == "too_few_tokens"
    assert all(r["times_sampled"] == 1 for r in ledger.to_dicts() if r["status"] == "kept")


def test_quarantined_record_keeps_its_id_in_the_ledger(tmp_path):
    """With `id_field`, a record that fails conversion is still named by its id in the ledger."""
    rows = [
        {"id": "ok-1", "instruction": "Add 2 and 3.", "input": "", "output": "5"},
        {"id": "empty-answer", "instruction": "Say something.", "input": "", "output": ""},
    ]
    (tmp_path / "a.jsonl").write_bytes(jl(*rows) + b"{not json\n")
    cfg = {
        "pipeline": {"name": "t", "output": "out"},
        "sources": [{"name": "a", "path": "a.jsonl", "format": "alpaca", "id_field": "id"}],
    }
    ledger = curate.build(cfg, base_dir=tmp_path).ledger.sort("line")
    assert ledger["status"].to_list() == ["kept", "quarantined", "quarantined"]
    assert ledger["id"].to_list() == ["ok-1", "empty-answer", None]  # the unreadable line has no id to give
