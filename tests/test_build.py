"""End-to-end builds: output layout, ledger accounting, determinism, caching, resume, locks, atomicity."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

import curate
from curate.config import load_config
from curate.errors import FatalError
from curate.workdir import BuildLock
from tests.conftest import REPO, write_jsonl


def output_bytes(out: Path) -> dict[str, bytes]:
    """Every output file except run.json (which holds timings), by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != "run.json"
    }


def test_output_layout_and_ledger(tmp_path, small_pipeline):
    result = curate.build(small_pipeline, base_dir=tmp_path)
    out = tmp_path / "out"
    assert result.output == out
    assert {p.name for p in out.iterdir()} == {"manifest.json", "ledger.parquet", "report.html", "run.json", "shards"}
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["train-00000.jsonl.zst", "train-00000.parquet"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == result.manifest
    assert manifest["sources"]["inst"]["records_in"] == 4
    assert manifest["sources"]["inst"]["records_dropped"] == 1
    assert manifest["sources"]["inst"]["drop_reasons"] == {"exact_dedup": {"exact_duplicate_of": 1}}
    assert manifest["totals"]["records_out"] == 9
    ledger = pl.read_parquet(out / "ledger.parquet")
    assert ledger.columns == ["id", "source", "file", "line", "status", "stage", "reason", "times_sampled", "split"]
    assert set(ledger.filter(pl.col("status") == "kept")["split"]) == {"train"}
    assert (
        ledger.filter(pl.col("status") != "kept")["split"].null_count()
        == ledger.filter(pl.col("status") != "kept").height
    )
    dup = ledger.filter(pl.col("status") == "dropped").row(0, named=True)
    first = ledger.filter((pl.col("source") == "inst") & (pl.col("line") == 1)).row(0, named=True)
    assert (dup["file"], dup["line"], dup["stage"]) == ("inst.jsonl", 3, "exact_dedup")
    assert dup["reason"] == f"exact_duplicate_of:{first['id']}"
    assert ledger["id"].n_unique() == ledger.height  # identical records get distinct ids (~2 suffix)
    shard = pl.read_parquet(out / "shards" / "train-00000.parquet")
    assert shard.columns[:7] == ["id", "source", "kind", "text", "messages", "n_tokens", "meta"]
    assert not any(c.startswith("_") for c in shard.columns)
    assert shard.filter(pl.col("kind") == "instruction")["text"].null_count() == 3


def test_ledger_accounts_for_every_record(tmp_path, small_pipeline):
    result = curate.build(small_pipeline, base_dir=tmp_path)
    for name, s in result.manifest["sources"].items():
        rows = result.ledger.filter(pl.col("source") == name)
        assert rows.height == s["records_in"] == s["records_kept"] + s["records_dropped"] + s["records_quarantined"]
        assert (rows["status"] == "dropped").sum() == s["records_dropped"]
        assert rows.filter(pl.col("status") != "kept")["reason"].null_count() == 0


def test_same_config_gives_byte_identical_output(tmp_path, small_pipeline):
    small_pipeline["mixture"] = {"weights": {"inst": 0.5, "docs": 0.5}, "max_epochs": {"inst": 3}}
    a = curate.build(small_pipeline, base_dir=tmp_path, output=tmp_path / "a", work_dir=tmp_path / "wa")
    b = curate.build(small_pipeline, base_dir=tmp_path, output=tmp_path / "b", work_dir=tmp_path / "wb")
    assert output_bytes(a.output) == output_bytes(b.output)
    assert "seconds" in json.loads((a.output / "run.json").read_text())
    assert "seconds" not in json.dumps(a.manifest)


def test_worker_count_does_not_change_output(tmp_path, small_pipeline):
    small_pipeline["pipeline"]["batch_size"] = 2
    one = curate.build(small_pipeline, base_dir=tmp_path, output=tmp_path / "w1", work_dir=tmp_path / "k1")
    two = curate.build(small_pipeline, base_dir=tmp_path, output=tmp_path / "w2", work_dir=tmp_path / "k2", workers=2)
    assert output_bytes(one.output) == output_bytes(two.output)


def test_unchanged_rerun_uses_the_cache_and_edits_rerun(tmp_path, small_pipeline):
    first = curate.build(small_pipeline, base_dir=tmp_path)
    assert first.run["cached_passes"] == []
    again = curate.build(small_pipeline, base_dir=tmp_path)
    assert len(again.run["cached_passes"]) == 1  # one streaming pass; the dedup barrier applies at the end
    assert output_bytes(first.output) == output_bytes(again.output)
    # editing an input invalidates every pass
    path = tmp_path / "docs.jsonl"
    path.write_text(path.read_text() + '{"text": "A brand new document appears here."}\n')
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    edited = curate.build(small_pipeline, base_dir=tmp_path)
    assert edited.run["cached_passes"] == []
    assert edited.manifest["sources"]["docs"]["records_in"] == 7
    # changing only the mixture reuses every stage pass
    small_pipeline["mixture"] = {"weights": {"inst": 0.5, "docs": 0.5}}
    mixed = curate.build(small_pipeline, base_dir=tmp_path)
    assert len(mixed.run["cached_passes"]) == 1


def test_infeasible_mixture_is_refused_before_writing(tmp_path, small_pipeline):
    small_pipeline["mixture"] = {"weights": {"inst": 0.5, "docs": 0.5}, "total_tokens": 10_000}
    with pytest.raises(FatalError) as info:
        curate.build(small_pipeline, base_dir=tmp_path)
    message = str(info.value)
    assert "infeasible mixture" in message and "largest feasible total_tokens" in message
    assert "bound by source 'inst'" in message
    assert not (tmp_path / "out").exists()


def test_failed_build_leaves_previous_output_intact(tmp_path, small_pipeline):
    curate.build(small_pipeline, base_dir=tmp_path)
    before = output_bytes(tmp_path / "out")
    small_pipeline["mixture"] = {"weights": {"inst": 0.5, "docs": 0.5}, "total_tokens": 10_000}
    with pytest.raises(FatalError):
        curate.build(small_pipeline, base_dir=tmp_path)
    assert output_bytes(tmp_path / "out") == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == [".out.lock"]


def test_second_build_is_refused_while_one_holds_the_lock(tmp_path, small_pipeline):
    out = tmp_path / "out"
    with BuildLock(out, tmp_path / ".curate"), pytest.raises(FatalError, match="another build is running"):
        curate.build(small_pipeline, base_dir=tmp_path)
    curate.build(small_pipeline, base_dir=tmp_path)  # released: builds fine


def test_lock_held_by_other_process_is_refused(tmp_path, small_pipeline):
    lock = tmp_path / ".out.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('held', flush=True); time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FatalError, match="another build is running"):
            curate.build(small_pipeline, base_dir=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    with open(lock, "a") as f:  # a killed holder leaves no stuck lock
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _write_resume_config(tmp_path: Path, records: int) -> Path:
    write_jsonl(
        tmp_path / "big.jsonl",
        [{"text": f"Record {i} says something about the number {i * 7 % 1000} and more words."} for i in range(records)]
        + [{"text": "Record 5 says something about the number 35 and more words."}] * 50,
    )
    toml = tmp_path / "mix.toml"
    toml.write_text(
        '[pipeline]\nname = "resume"\noutput = "out"\nbatch_size = 200\n'
        '[[sources]]\nname = "big"\npath = "big.jsonl"\n'
        '[[stages]]\nuse = "normalize"\n[[stages]]\nuse = "exact_dedup"\n[[stages]]\nuse = "language"\n'
    )
    return toml


def test_build_killed_with_sigkill_resumes_to_identical_output(tmp_path):
    toml = _write_resume_config(tmp_path, 6000)
    reference = curate.build(toml, output=tmp_path / "ref", work_dir=tmp_path / "ref-work")
    work = tmp_path / ".curate"
    proc = subprocess.Popen(
        [sys.executable, "-m", "curate", "build", str(toml), "--no-progress"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(list(work.glob("pass-*/batch-*.parquet"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in work.glob("pass-*/batch-*.parquet")}
    assert not (tmp_path / "out").exists(), "the build finished before it could be killed: make the input bigger"
    assert len(finished) >= 3
    resumed = curate.build(toml)
    assert output_bytes(resumed.output) == output_bytes(reference.output)
    # the batches finished before the kill were reused, not computed again
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in finished.items())
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_python_api_pipeline_and_read_source(tmp_path, small_pipeline):
    pipeline = curate.Pipeline.from_dict(small_pipeline, base_dir=tmp_path)
    pipeline.stages.append(curate.stages.FilterLength(min_tokens=14))
    result = pipeline.run(output=tmp_path / "api")
    assert result.manifest["stages"][-1] == {"use": "filter_length", "min_tokens": 14}
    assert "filter_length" in result.ledger["stage"].to_list()
    frame = curate.read_source(tmp_path / "inst.jsonl", name="inst")
    assert frame.height == 4 and frame["n_tokens"].min() > 0


def test_largest_first_orders_by_size_then_index(tmp_path):
    from curate.executor import largest_first

    paths = []
    for i, size in enumerate([5, 50, 5, 500, 0]):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(b"x" * size)
    assert largest_first(paths) == [3, 1, 0, 2, 4]


def test_later_passes_run_their_largest_batches_first(tmp_path, small_pipeline, monkeypatch):
    """A pass's tasks start largest batch file first, so that on several workers the last tasks to
    start are the short ones; the output is the same as in batch order (each task writes its own files)."""
    import importlib

    build_module = importlib.import_module("curate.build")
    started: list[tuple[int, int]] = []
    rerun = build_module.rerun_batch

    def recording(task):
        started.append((task[-1], task[0].stat().st_size))
        return rerun(task)

    monkeypatch.setattr(build_module, "rerun_batch", recording)
    small_pipeline["pipeline"]["batch_bytes"] = 60  # a few records per batch
    small_pipeline["stages"] = [{"use": "exact_dedup"}, {"use": "cot_tag"}]  # a barrier: two passes
    result = curate.build(small_pipeline, base_dir=tmp_path, output=tmp_path / "out", work_dir=tmp_path / "k")
    sizes = [size for _, size in started]
    assert len(started) > 3 and sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
    monkeypatch.setattr(build_module, "largest_first", lambda paths: list(range(len(paths))))
    started.clear()
    in_order = curate.build(small_pipeline, base_dir=tmp_path, output=tmp_path / "in_order", work_dir=tmp_path / "k2")
    assert [index for index, _ in started] == sorted(index for index, _ in started)
    assert output_bytes(result.output) == output_bytes(in_order.output)


def test_batch_boundaries_do_not_change_output(tmp_path, small_pipeline):
    whole = curate.build(small_pipeline, base_dir=tmp_path, output=tmp_path / "whole", work_dir=tmp_path / "k1")
    small_pipeline["pipeline"]["batch_bytes"] = 60  # a few records per batch
    cut = curate.build(small_pipeline, base_dir=tmp_path, output=tmp_path / "cut", work_dir=tmp_path / "k2")
    assert len(list((tmp_path / "k2").glob("pass-*/batch-*.parquet"))) > 3
    # every file, the manifest too: batch sizes change how it runs, not what it writes (`RUN_ONLY`)
    assert output_bytes(whole.output) == output_bytes(cut.output)
    small_pipeline["pipeline"]["seed"] += 1
    assert load_config(small_pipeline, tmp_path).sha256 != whole.manifest["config_sha256"]


def _die(task: int) -> int:
    if task == 3:
        os._exit(1)  # a worker killed mid-build (OOM killer, segfault in native code)
    return task


def test_a_dead_worker_fails_the_build_instead_of_hanging():
    from curate.executor import LocalExecutor

    with pytest.raises(FatalError, match="worker process died"), LocalExecutor(2) as executor:
        list(executor.map(_die, iter(range(10))))


def test_output_that_is_not_a_curate_output_is_never_replaced(tmp_path, small_pipeline):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(FatalError, match="is not a curate output"):
        curate.build(small_pipeline, base_dir=tmp_path)
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"
    small_pipeline["pipeline"]["output"] = "."
    with pytest.raises(FatalError, match="would contain input"):
        curate.build(small_pipeline, base_dir=tmp_path)
    assert (tmp_path / "inst.jsonl").exists()


def test_pipeline_edits_are_validated_and_change_the_config_hash(tmp_path, small_pipeline):
    pipeline = curate.Pipeline.from_dict(small_pipeline, base_dir=tmp_path)
    before = pipeline.config.sha256
    pipeline.stages.append(curate.stages.FilterLength())
    with pytest.raises(curate.ConfigError, match="set at least one of"):
        pipeline.run()
    pipeline.stages[-1] = curate.stages.FilterLength(min_chars=3)
    assert pipeline.config.sha256 != before
    assert pipeline.run().manifest["config_sha256"] == pipeline.config.sha256


def test_records_sharing_an_id_get_suffixes_and_one_warning_per_source(tmp_path):
    """Ids shared within a source (kept or removed records alike) are made unique and counted per source."""
    write_jsonl(tmp_path / "a.jsonl", [{"id": "x", "text": f"doc {i}"} for i in range(3)] + [{"id": "y", "text": "y"}])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "x", "text": "other source"}, {"id": "z", "text": ""}])
    config = {
        "pipeline": {"name": "ids"},
        "sources": [
            {"name": "a", "path": "a.jsonl", "id_field": "id"},
            {"name": "b", "path": "b.jsonl", "id_field": "id"},
        ],
        "stages": [{"use": "filter_length", "min_tokens": 3}],
    }
    result = curate.build(config, base_dir=tmp_path, output=tmp_path / "out", work_dir=tmp_path / "work")
    assert [w for w in result.manifest["warnings"] if "share an id" in w] == [
        "a: 2 record(s) share an id with an earlier record of the source; they got ~2, ~3, ... suffixes"
    ]
    ids = result.ledger.filter(pl.col("source") == "a")["id"].to_list()
    assert ids == ["x", "x~2", "x~3", "y"]


def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path):
    """Spawned workers import the calling script again; one that builds at its top level would build
    again in each worker. The worker says why it stops, and the build's error says what to do."""
    script = tmp_path / "build_it.py"
    script.write_text(
        "import curate\n"
        f"curate.build({str(REPO / 'pipelines' / 'quickstart.toml')!r}, workers=2, output={str(tmp_path / 'out')!r})\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode != 0
    assert "curate.build was called while a worker process started" in done.stderr
    assert done.stderr.rstrip().endswith(
        'If the script calls curate.build outside `if __name__ == "__main__":`, put it there (the workers import '
        "the script)"
    )
