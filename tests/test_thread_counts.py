"""Outputs must not depend on how many threads the libraries use (polars, BLAS): machines with other
core counts and pinned runs give those libraries other thread counts, and must write the same bytes.
(Worker counts and Ray are covered by tests/test_build.py and tests/test_ray.py.)

Each bundled pipeline, and one with `diverse_select` (which no bundled pipeline uses), is built in
two processes: one with every library limited to 1 thread, one with 4. Float kernels that sum in
thread-dependent order (as `reasoning_depth`'s once did) make these differ in the last bit.
"""

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

PIPELINES = sorted((REPO / "pipelines").glob("*.toml"))
THREAD_VARIABLES = ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
BUILD = "import curate, json, sys; curate.build(json.load(open(sys.argv[1])), base_dir=sys.argv[2], output=sys.argv[3])"


def with_diverse_select() -> dict:
    config = tomllib.loads((REPO / "pipelines" / "style-sft.toml").read_text())
    config["stages"].append({"use": "diverse_select", "max_similarity": 0.6, "rank_by": "diversity"})
    return config


CONFIGS = [(p.stem, tomllib.loads(p.read_text())) for p in PIPELINES] + [("diverse_select", with_diverse_select())]


def build_with_threads(config: dict, threads: int, folder: Path) -> dict[str, str]:
    """sha256 of every output file (run.json aside) of a build in a process with `threads` threads."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, str(threads))}
    command = [sys.executable, "-c", BUILD, str(folder / "config.json"), str(REPO / "pipelines"), str(folder / "out")]
    done = subprocess.run(command, env=env, capture_output=True, cwd=folder)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    out = folder / "out"
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "run.json"
    }


@pytest.mark.parametrize(("name", "config"), CONFIGS, ids=[name for name, _ in CONFIGS])
def test_output_bytes_do_not_depend_on_library_threads(name, config, tmp_path):
    one = build_with_threads(config, 1, tmp_path / "one")
    four = build_with_threads(config, 4, tmp_path / "four")
    assert len(one) > 3
    assert one == four, [path for path in one if one[path] != four.get(path)]


CORES = "from curate.build import token_threads; print(token_threads('local', 1), token_threads('local', 2))"


def token_threads_in_process(limit: str | None = None, cpus: set[int] | None = None) -> str:
    """`token_threads('local', 1)` and `('local', 2)` as a fresh process prints them, with
    POLARS_MAX_THREADS = `limit` (unset: None) and pinned to `cpus` before polars is imported."""
    env = {k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"}
    env.update({"POLARS_MAX_THREADS": limit} if limit else {})
    pin = f"import os; os.sched_setaffinity(0, {cpus!r}); " if cpus else ""
    done = subprocess.run([sys.executable, "-c", pin + CORES], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to pin to one"
)
def test_thread_counts_follow_the_cores_the_process_may_use():
    """A build pinned to one CPU (taskset, a container's cpuset) tokenizes on one thread, not on one per
    core of the host; POLARS_MAX_THREADS, polars' own limit, counts too."""
    env = {k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"}
    polars_cores = [sys.executable, "-c", "import polars; print(polars.thread_pool_size())"]
    cores = int(subprocess.run(polars_cores, env=env, capture_output=True, text=True, check=True).stdout)
    assert cores <= len(os.sched_getaffinity(0))  # a CPU quota (a container's) may lower it further
    assert token_threads_in_process() == f"{cores} {max(1, cores // 2)}"
    assert token_threads_in_process(cpus={min(os.sched_getaffinity(0))}) == "1 1"
    assert token_threads_in_process(limit="6") == "6 3"
