"""Memory and time of reading big JSON-array and CSV inputs: the streamed readers against a baseline
commit whose readers held the whole file (issue 6: "inputs are read in bounded batches").

    .venv/bin/python benchmarks/bench_read_inputs.py [--records 300000] [--baseline cc16241] [--repeats 2]

Input: the pretraining text (`web`, `c4`, `wiki`) of the 1M scale corpus (`benchmarks/scale_corpus.py`,
from ../shared/data, generated when missing), converted to one JSON array (`docs.json`, indent 1) and
one CSV (`docs.csv`) of `--records` documents in `benchmarks/_data/read-inputs-N/`.

Three measurements per version, each in a fresh process (`python -P`, PYTHONPATH = a `git archive` of
the version's curate/):
- `read`: the reader over the whole file (`iter_file`), counting items: seconds and peak RSS;
- `detect`: format detection of a source with `format = "auto"` (what the driver does before any batch);
- `build`: `curate build --workers 2` over both files (stages: normalize; output parquet): seconds, the
  driver's peak RSS and the largest worker's (in the baseline, a worker's scan task held a whole file).
  Both peaks are the build's own `run.json` figures (`ru_maxrss`), which Linux carries over fork and
  exec, so the worker figure is at least the driver's RSS when the workers were spawned (small then).
Runs alternate between the versions, in turn order ABBA...; the tables show medians (of 2 runs: their
mean). Results: benchmarks/out/read_inputs/.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import bench_build  # noqa: E402  (machine and versions helpers)
import scale_corpus  # noqa: E402

VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
DATA = BENCH_DIR / "_data"
OUT = BENCH_DIR / "out" / "read_inputs"

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child would report its parent's.
PEAK = """
def peak_mb():
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024
"""

READ = (
    PEAK
    + """
import json, sys, time
from pathlib import Path
from curate.ingest.readers import iter_file
t0 = time.perf_counter()
items = sum(1 for _ in iter_file(Path(sys.argv[1])))
print(json.dumps({"seconds": time.perf_counter() - t0, "items": items, "peak_rss_mb": peak_mb()}))
"""
)

DETECT = (
    PEAK
    + """
import json, sys, time
from curate.config import load_config
from curate.ingest.source import resolve_format
config = load_config({"pipeline": {"name": "detect"}, "sources": [{"name": "docs", "path": sys.argv[1]}]})
t0 = time.perf_counter()
fmt = resolve_format(config.sources[0], 0)
print(json.dumps({"seconds": time.perf_counter() - t0, "format": fmt, "peak_rss_mb": peak_mb()}))
"""
)

CONFIG = """[pipeline]
name = "read_inputs"
output = "out"

[[sources]]
name = "array"
path = "docs.json"
format = "text"

[[sources]]
name = "table"
path = "docs.csv"
format = "text"

[[stages]]
use = "normalize"

[output]
formats = ["parquet"]
"""


def make_inputs(records: int) -> Path:
    """`docs.json` and `docs.csv` of `records` pretraining documents from the 1M scale corpus."""
    folder = DATA / f"read-inputs-{records}"
    if (folder / "docs.csv").exists() and (folder / "docs.json").exists():
        return folder
    corpus = DATA / "scale-1000000"
    scale_corpus.generate(1_000_000, DATA)
    docs: list[dict[str, str]] = []
    for source in ("web", "c4", "wiki"):
        for part in sorted((corpus / "data" / source).glob("*.jsonl")):
            with part.open() as lines:
                for line in lines:
                    row = json.loads(line)
                    docs.append({"id": row["id"], "text": row["text"]})
                    if len(docs) == records:
                        break
            if len(docs) == records:
                break
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docs.json").write_text(json.dumps(docs, indent=1, ensure_ascii=False))
    with (folder / "docs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text"])
        writer.writeheader()
        writer.writerows(docs)
    (folder / "read_inputs.toml").write_text(CONFIG)
    return folder


def snapshot(rev: str) -> tuple[str, Path]:
    """(full commit, folder with the commit's curate/)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], capture_output=True, text=True, check=True)
    full = commit.stdout.strip()
    target = DATA / f"curate-src-{full[:12]}"
    if not (target / "curate" / "__init__.py").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", full, "curate"], capture_output=True, check=True)
        (target / "src.tar").write_bytes(archive.stdout)
        with tarfile.open(target / "src.tar") as tf:
            tf.extractall(target, filter="data")
        (target / "src.tar").unlink()
    return full, target


def checked(command: list[str], src: Path) -> subprocess.CompletedProcess:
    """Run with `src`'s curate (`-P` keeps the working tree off sys.path); stderr shown on failure."""
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)})
    if done.returncode:
        sys.exit(f"{' '.join(command[:6])} ... failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done


def child(script: str, arg: str, src: Path) -> dict[str, Any]:
    done = checked([str(VENV_PYTHON), "-P", "-c", script, arg], src)
    return json.loads(done.stdout.strip().splitlines()[-1])


def build(folder: Path, src: Path, scratch: Path) -> dict[str, Any]:
    shutil.rmtree(scratch, ignore_errors=True)
    out, work = scratch / "out", scratch / "work"
    config = str(folder / "read_inputs.toml")
    command = ["build", config, "--workers", "2", "--output", str(out), "--work-dir", str(work), "--no-progress"]
    t0 = time.perf_counter()
    checked([str(VENV_PYTHON), "-P", "-m", "curate.cli", *command], src)
    wall = time.perf_counter() - t0
    run = json.loads((out / "run.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    result = {
        "seconds": wall,
        "driver_peak_rss_mb": run["peak_rss_mb"],
        "largest_worker_peak_rss_mb": run["peak_rss_children_mb"],
        "records_in": manifest["totals"]["records_in"],
    }
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--baseline", default="cc16241", help="commit whose readers held whole files")
    parser.add_argument("--current", default="HEAD")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--inputs-only", action="store_true", help="write the inputs and stop")
    args = parser.parse_args(argv)
    if args.inputs_only:
        make_inputs(args.records)
        return 0
    # in a process of its own: this one stays small, as the builds' peak RSS (ru_maxrss) inherits it
    subprocess.run([str(VENV_PYTHON), __file__, "--records", str(args.records), "--inputs-only"], check=True)
    folder = DATA / f"read-inputs-{args.records}"
    sizes = {name: (folder / name).stat().st_size for name in ("docs.json", "docs.csv")}
    versions = {"baseline": snapshot(args.baseline), "current": snapshot(args.current)}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {v: {} for v in versions}
    for repeat in range(args.repeats):
        order = list(versions.items()) if repeat % 2 == 0 else list(reversed(versions.items()))
        for version, (_, src) in order:
            for name in ("docs.json", "docs.csv"):
                runs[version].setdefault(f"read {name}", []).append(child(READ, str(folder / name), src))
                runs[version].setdefault(f"detect {name}", []).append(child(DETECT, str(folder / name), src))
            runs[version].setdefault("build", []).append(build(folder, src, OUT / "scratch"))
    OUT.mkdir(parents=True, exist_ok=True)
    report = {
        "records": args.records,
        "input_bytes": sizes,
        "versions": {v: commit for v, (commit, _) in versions.items()},
        "machine": bench_build.machine(),
        "runs": runs,
    }
    (OUT / "results.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Reading big inputs: {args.records:,} documents, JSON array {sizes['docs.json'] / 1e6:.0f} MB, "
        f"CSV {sizes['docs.csv'] / 1e6:.0f} MB",
        "",
        f"baseline {versions['baseline'][0][:10]}, current {versions['current'][0][:10]}; medians of "
        f"{args.repeats} alternating runs.",
        "",
        "| measurement | baseline s | current s | baseline peak MB | current peak MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for what in runs["current"]:
        base, cur = runs["baseline"][what], runs["current"][what]
        peak = "peak_rss_mb" if what != "build" else "largest_worker_peak_rss_mb"
        lines.append(
            f"| {what} | {median(base, 'seconds')} | {median(cur, 'seconds')} | "
            f"{median(base, peak):,.0f} | {median(cur, peak):,.0f} |"
        )
    base, cur = runs["baseline"]["build"], runs["current"]["build"]
    driver = [f"{median(r, 'driver_peak_rss_mb'):,.0f}" for r in (base, cur)]
    lines.append(f"| build: driver peak | | | {driver[0]} | {driver[1]} |")
    (OUT / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
