"""The full pipeline at 100k / 300k / 1M records: local --workers 1 and 2, and Ray on 2 CPUs (issue 6).

    .venv/bin/python benchmarks/bench_scale.py --sizes 100000,300000,1000000 [--repeats 3,3,2] [--runs w1,w2,ray]
    .venv/bin/python benchmarks/bench_scale.py --sizes 1000000 --generate-only

Input: `benchmarks/scale_corpus.py` (real sets from ../shared/data scaled to N, cached in
`benchmarks/_data/scale-N/`, with its ground truth and achieved rates). Config: `scale.toml`, written
beside the data (see `write_config`). Each run is a fresh process with a fresh work dir and output:

    python -P -m curate.cli build scale.toml --workers W [--executor ray] --output O --work-dir D --no-progress

`w1`/`w2`: the local executor with 1 / 2 workers; `ray`: `--executor ray --workers 2` (a local Ray with
2 CPUs that the driver starts and shuts down). Runs are interleaved (size by size, run by run, per
repeat) and the tables show medians. Measured: wall time (process start to exit), records/s (input
records / wall), peak summed RSS of the driver's process tree and the largest single process (both
sampled from /proc every 0.1 s, the tree's members and PSS every 1 s, so that sampling takes about 2%
of a core and does not slow the runs that keep every core busy; the driver's own exact peak from
run.json), `run.json` seconds per
pass, `du` of the work dir per pass folder and of the output. Ray's gcs_server, raylet and workers are
spawned by the driver's `ray.init` (workers by the raylet), so they are in the tree; the sampler
records which process names it saw in the tree and any Ray process outside it started during the run.

Before the first run and after the last, `machine_parallelism.py` times two CPU-bound processes at once
against one (a pure-Python loop, a tiktoken loop): the machine's own two-process speedup, which two
workers cannot beat (context for t(w1)/t(w2); 2.0 on two free cores).

Outputs of the three runs of a size are compared file by file (sha256 of everything but run.json).
curate is run from a `git archive` snapshot of HEAD (as in bench_minhash.py; `--worktree` measures the
working tree). Results: benchmarks/out/scale/results.json and benchmarks/BENCH_SCALE.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import bench_build  # noqa: E402  (machine, git and versions helpers)
import bench_minhash  # noqa: E402  (the curate snapshot)
import bench_scale_report as report_md  # noqa: E402  (summary, targets, markdown)
import machine_parallelism  # noqa: E402  (two processes against one: context for w1/w2)
import scale_corpus  # noqa: E402
from bench_scale_measure import Sampler, du  # noqa: E402

VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
RUNS = {"w1": (1, "local"), "w2": (2, "local"), "ray": (2, "ray"), "w1cpu": (1, "local")}
# w1cpu: --workers 1 pinned to one CPU (taskset -c 0). Context for the w1/w2 ratio: a single worker still
# tokenizes and runs polars on every core, so on a 2-core machine w1 is not a one-core run.
PINNED = {"w1cpu": "0"}


# ---------------------------------------------------------------- the config


DEDUP = {
    # What a user tuning on templated instruction data runs (pipelines/sft-with-replay.toml): compare the
    # prompt as template skeletons and keep the 3 most reasoning-rich records of each cluster.
    "template": 'fields = "prompt"\ntemplate = true\nkeep_per_cluster = 3\nrank_by = "reasoning_depth"',
    # Plain near-duplicate removal on the prompt (band buckets run as executor tasks).
    "plain": 'fields = "prompt"\ntemplate = false',
}


def write_config(folder: Path, info: dict[str, Any], dedup: str = "template") -> Path:
    """The full pipeline over every source of the corpus (config order = scale_corpus.SOURCES)."""
    sources = []
    for name, src in info["sources"].items():
        if not src["records"]:
            continue
        fmt, prompt, response = scale_corpus.SOURCES[name]
        lines = ["[[sources]]", f'name = "{name}"', f'path = "data/{name}"', f'format = "{fmt}"', 'id_field = "id"']
        if fmt == "prompt_response":
            lines.append(f'fields = {{ prompt = "{prompt[0]}", response = "{response[0]}" }}')
        sources.append("\n".join(lines))
    text = f"""# Written by benchmarks/bench_scale.py: the full pipeline of issue 6's scaling benchmark.
[pipeline]
name = "bench_scale"
seed = 0
output = "out"

{chr(10).join(s + chr(10) for s in sources)}
[[stages]]
use = "normalize"

[[stages]]
use = "exact_dedup"

[[stages]]
use = "cot_tag"

[[stages]]
use = "reasoning_depth"

[[stages]]
use = "minhash_dedup"  # --dedup {dedup}
{DEDUP[dedup]}

# Natural size: replay (pretraining text, ~60% of the input tokens) binds, so it and the instruction
# groups are down-sampled.
[mixture]
validation = 0.01

[mixture.groups.cot]
where = "kind == 'instruction' and cot"
weight = 0.4

[mixture.groups.instruct]
where = "kind == 'instruction' and not cot"
weight = 0.38

[mixture.groups.replay]
where = "kind == 'pretrain'"
weight = 0.22

[output]
formats = ["parquet", "megatron"]
render = "chatml"
"""
    path = folder / "scale.toml"
    path.write_text(text)
    return path


def pass_labels(config: Path, env: dict[str, str]) -> list[str]:
    """'maps -> barrier' per pass the measured curate runs (a trailing barrier-only pass is dropped)."""
    script = (
        "import json, sys\n"
        "from curate.config import load_config\nfrom curate.stages.runner import expand\n"
        "from curate.executor import split_passes\n"
        "ps = split_passes(expand(load_config(sys.argv[1]).stages))\n"
        "ps = ps[:-1] if len(ps) > 1 and not ps[-1].maps else ps\n"
        "name = lambda s: f'{s.stage_name}.{type(s).__name__}'\n"
        "print(json.dumps([' + '.join(map(name, p.maps)) + ('; barrier ' + name(p.barrier) if p.barrier else '') "
        "for p in ps]))\n"
    )
    done = subprocess.run(
        [str(VENV_PYTHON), "-P", "-c", script, str(config)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(done.stdout)


# ---------------------------------------------------------------- measuring


def output_digest(out: Path) -> dict[str, str]:
    """sha256 of every output file except run.json (the only run-dependent file)."""
    digests = {}
    for f in sorted(out.rglob("*")):
        if f.is_file() and f.name != "run.json":
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            digests[str(f.relative_to(out))] = h.hexdigest()
    return digests


def work_passes(work: Path, labels: list[str]) -> list[dict[str, Any]]:
    """Per pass folder, in run order (oldest batch file first): its label, batches, bytes and file times
    (unix seconds: first and last batch file written, `decisions.parquet` of its barrier if any)."""
    folders = []
    for folder in work.glob("pass-*"):
        times = sorted(f.stat().st_mtime for f in folder.glob("batch-*.parquet"))
        decisions = folder / "decisions.parquet"
        marks = {"first_batch": times[0] if times else None, "last_batch": times[-1] if times else None}
        marks["decisions"] = decisions.stat().st_mtime if decisions.exists() else None
        folders.append((times[0] if times else float("inf"), folder, marks))
    folders.sort(key=lambda x: x[0])
    return [
        {
            "pass": f"pass_{i}",
            "label": labels[i] if i < len(labels) else "?",
            "batches": len(list(folder.glob("batch-*.parquet"))),
            "bytes": du(folder),
            "times": marks,
        }
        for i, (_, folder, marks) in enumerate(folders)
    ]


def truth_check(ledger: Path, truth: Path) -> dict[str, dict[str, Any]]:
    """Per planted kind: records, and the share the ledger says each stage dropped (from truth.parquet).
    Joined on (file, line): the ledger has no id for quarantined records."""
    import polars as pl

    rows = pl.read_parquet(truth, columns=["file", "line", "kind"]).join(
        pl.read_parquet(ledger, columns=["file", "line", "status", "stage"]), on=["file", "line"], how="left"
    )
    out: dict[str, dict[str, Any]] = {}
    for kind, group in sorted(rows.group_by("kind"), key=lambda kg: str(kg[0][0])):
        counts = group.group_by("status", "stage").len()
        shares = {
            f"{status}:{stage}" if status != "kept" else "kept": round(n / group.height, 4)
            for status, stage, n in counts.iter_rows()
        }
        out[str(kind[0])] = {"records": group.height, **dict(sorted(shares.items()))}
    return out


def run_build(config: Path, run: str, scratch: Path, logs: Path, tag: str, env: dict, labels: list[str]) -> dict:
    """One build in a fresh process; figures, disk use and the output's digests."""
    workers, executor = RUNS[run]
    out, work = scratch / f"{tag}-out", scratch / f"{tag}-work"
    for path in (out, work):
        subprocess.run(["rm", "-rf", str(path)], check=True)
    cmd = [str(VENV_PYTHON), "-P", "-m", "curate.cli", "build", str(config), "--workers", str(workers)]
    if run in PINNED:
        cmd = ["taskset", "-c", PINNED[run], *cmd]
    cmd += ["--executor", executor, "--output", str(out), "--work-dir", str(work), "--no-progress"]
    load_before = os.getloadavg()
    with open(logs / f"{tag}.log", "wb") as log:
        started, started_unix = time.perf_counter(), time.time()
        # Not the repository root: Ray puts the driver's working directory on its workers' sys.path, where
        # the working tree's curate/ would shadow the snapshot being measured.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=scratch, env={**os.environ, **env})
        # scratch disk: the work dir, the output and the folders written beside it (`.<out>.tmp-*`: the
        # output being written, with the shards' scatter scratch inside), sampled once a second
        sampler = Sampler(proc.pid, disk_paths=lambda: [work, out, *scratch.glob(f".{out.name}.*")])
        sampler.start()
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        rc = proc.wait()
        wall = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        ended_unix = time.time()
        sampler.stop()
    result: dict[str, Any] = {
        "run": run,
        "rc": rc,
        "wall_seconds": round(wall, 2),
        # CPU seconds of the driver and the descendants it waited for (pool workers; Ray's are partly missed)
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime - usage_before.ru_utime - usage_before.ru_stime, 1),
        # the same for every process sampled in the tree (Ray's workers included), a lower bound
        "cpu_seconds_sampled": round(sampler.cpu_seconds, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "peak_rss_tree_mb": round(sampler.peak_tree / 2**20, 1),
        "peak_pss_tree_mb": round(sampler.peak_pss / 2**20, 1),
        # bytes under the work dir and the output (and its temporary folder), sampled every second: the
        # peak includes scratch files a build removes before it ends
        "peak_disk_mb": round(sampler.peak_disk / 2**20, 1),
        "peak_rss_sampled_process_mb": round(sampler.peak_proc / 2**20, 1),
        "largest_process_name": sampler.peak_proc_name,
        "max_processes_in_tree": sampler.max_procs,
        "process_names_in_tree": sorted(sampler.names),
        "ray_processes_outside_tree": sorted(sampler.ray_outside),
    }
    if rc != 0:
        result["error"] = (logs / f"{tag}.log").read_text(errors="replace")[-3000:]
        return result
    run_json = json.loads((out / "run.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    result["run_json"] = {k: run_json.get(k) for k in ("seconds", "timings", "peak_rss_mb", "peak_rss_children_mb")}
    result["peak_rss_process_mb"] = max(result["peak_rss_sampled_process_mb"], run_json["peak_rss_mb"])
    result["records"] = run_json["records_in"]
    result["records_per_s"] = round(run_json["records_in"] / wall, 1)
    result["totals"] = {k: manifest["totals"].get(k) for k in ("records_in", "records_out", "tokens_out")}
    result["stage_stats"] = manifest.get("stage_stats", {})
    result["disk"] = {
        "work_bytes": du(work),
        "passes": work_passes(work, labels),
        "output_bytes": du(out),
        "output_parts": {p.name: du(p) if p.is_dir() else p.stat().st_size for p in sorted(out.iterdir())},
    }
    result["phases"] = report_md.phases(
        result["disk"]["passes"], sampler.timeline, started_unix, ended_unix, sampler.disk_timeline
    )
    result["digests"] = output_digest(out)
    result["truth_check"] = truth_check(out / "ledger.parquet", config.parent / "truth.parquet")
    for path in (out, work):
        subprocess.run(["rm", "-rf", str(path)], check=True)
    return result


# ---------------------------------------------------------------- main


def generate(size: int, data: Path, logs: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The corpus (in a child process, so the driver stays small): inputs.json and the child's figures."""
    cmd = [str(VENV_PYTHON), str(BENCH_DIR / "scale_corpus.py"), str(size), "--data", str(data)]
    figures = bench_build.measure(cmd, logs / f"generate-{size}.log")
    figures.pop("stdout")
    return json.loads((data / f"scale-{size}" / "inputs.json").read_text()), figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,300000,1000000", help="comma list of corpus sizes")
    parser.add_argument(
        "--runs", default="w1,w2,ray", help="comma list of runs: w1, w2, ray, w1cpu (w1 pinned to one CPU)"
    )
    parser.add_argument(
        "--repeats",
        default="1",
        help="interleaved repetitions (default 1): one number, or one per size in --sizes order (3,3,2)",
    )
    parser.add_argument(
        "--dedup", choices=sorted(DEDUP), default="template", help="minhash_dedup mode (default: template)"
    )
    parser.add_argument("--generate-only", action="store_true", help="only generate (and time) the corpora")
    parser.add_argument("--worktree", action="store_true", help="measure the working tree's curate, not HEAD's")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out" / "scale", help="results folder")
    parser.add_argument("--data", type=Path, default=BENCH_DIR / "_data", help="generated inputs (git-ignored)")
    parser.add_argument("--markdown", type=Path, default=BENCH_DIR / "BENCH_SCALE.md")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    counts = [int(r) for r in args.repeats.split(",") if r]
    if len(counts) not in (1, len(sizes)) or min(counts) < 1:
        parser.error(f"--repeats: one number >= 1, or one per size ({len(sizes)}), got {args.repeats!r}")
    repeats = dict(zip(sizes, counts * len(sizes) if len(counts) == 1 else counts, strict=True))
    sizes = sorted(sizes)
    runs = [r for r in args.runs.split(",") if r]
    if unknown := [r for r in runs if r not in RUNS]:
        parser.error(f"unknown runs {unknown}; choose from {sorted(RUNS)}")
    out, data = args.out.resolve(), args.data.resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    inputs, generation = {}, {}
    for size in sizes:
        cached = scale_corpus._cached(data / f"scale-{size}")
        print(f"corpus {size:,}: {'cached' if cached else 'generating'} ...", flush=True)
        inputs[size], figures = generate(size, data, logs)
        if not cached:
            generation[str(size)] = figures
            print(f"  {figures['wall_seconds']:.1f} s, peak RSS {figures['peak_rss_tree_mb']} MB", flush=True)
        print(f"  rates: {json.dumps(inputs[size]['rates'])}", flush=True)
    if args.generate_only:
        gen_file = out / "generation.json"
        previous = json.loads(gen_file.read_text()) if gen_file.exists() else {}
        gen_file.write_text(json.dumps({**previous, **generation}, indent=2) + "\n")
        return 0

    env, measured = bench_minhash.curate_snapshot(data, args.worktree)
    print(f"curate measured: {measured}", flush=True)
    configs = {size: write_config((data / f"scale-{size}"), inputs[size], args.dedup) for size in sizes}
    labels = pass_labels(configs[sizes[0]], env)
    git_before, load_before = bench_build.git_commit(), os.getloadavg()
    parallel_before = machine_parallelism.measure()
    print(f"two processes at once against one, before: {machine_parallelism.summary(parallel_before)}", flush=True)
    results: dict[int, dict[str, list[dict]]] = {size: {run: [] for run in runs} for size in sizes}
    for rep in range(max(repeats.values())):
        for size in [s for s in sizes if rep < repeats[s]]:
            scratch = (data / f"scale-{size}") / "scratch"
            scratch.mkdir(exist_ok=True)
            for run in runs:
                tag = f"{size}-{run}-r{rep}"
                res = run_build(configs[size], run, scratch, logs, tag, env, labels)
                results[size][run].append(res)
                print(
                    f"  {tag:22s} rc {res['rc']} wall {res['wall_seconds']:8.1f} s  tree RSS {res['peak_rss_tree_mb']} "
                    f"MB  largest {res.get('peak_rss_process_mb')} MB ({res['largest_process_name']})  "
                    f"load {res['load_before'][0]:.2f}->{res['load_after'][0]:.2f}",
                    flush=True,
                )
                if res["rc"]:
                    print(res["error"], flush=True)
    parallel_after = machine_parallelism.measure()
    print(f"two processes at once against one, after: {machine_parallelism.summary(parallel_after)}", flush=True)
    gen_file = out / "generation.json"
    previous = json.loads(gen_file.read_text()) if gen_file.exists() else {}
    generation = {**previous, **generation}
    summary = report_md.summarize(results)
    report = {
        "benchmark": "full pipeline at scale (issue 6)",
        "curate_measured": measured,
        "git": git_before,
        "git_after": bench_build.git_commit(),
        "machine": bench_build.machine(),
        "versions": bench_build.versions(),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "machine_parallelism": {"before": parallel_before, "after": parallel_after},
        "sizes": sizes,
        "repeats": {str(s): repeats[s] for s in sizes},
        "dedup": args.dedup,
        "config": configs[sizes[0]].read_text(),
        "pass_labels": labels,
        "inputs": {str(s): inputs[s] for s in sizes},
        "generation": generation,
        "summary": summary,
        "targets": report_md.targets(summary, sizes, runs),
        "identity": {str(s): report_md.identity(results[s]) for s in sizes},
        "runs": {
            str(s): {
                run: [{k: v for k, v in r.items() if k != "digests"} for r in reps] for run, reps in results[s].items()
            }
            for s in sizes
        },
    }
    gen_file.write_text(json.dumps(generation, indent=2) + "\n")
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    text = report_md.markdown(report)
    args.markdown.write_text(text)
    print()
    print(text)
    print(f"wrote {out / 'results.json'} and {args.markdown}")
    failed = any(r["rc"] for by in results.values() for reps in by.values() for r in reps)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
