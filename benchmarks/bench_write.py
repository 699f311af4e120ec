"""Benchmark writing 1M records to every output format against `pyarrow.parquet.write_table` alone.

    .venv/bin/python benchmarks/bench_write.py [--records 1000000] [--shard-records 100000] [--out benchmarks/out/write]

1. Generates (deterministically, cached in benchmarks/_data/write-N/, git-ignored) N canonical records
   from the bundled slices in pipelines/data/ (Alpaca-format instructions, GSM8K, DCLM web text,
   Wikipedia), read with `curate.read_source`, mixed in a seeded order and replicated with variations:
   copy k of a record has ~10% of the words of every text / message swapped with their neighbour
   (seeded by k and the record) and " (copy k)" appended, so copies are not byte-identical and
   compressors see realistic redundancy. `n_tokens` is the base record's count plus the suffix's (not
   recounted: the writers do not depend on its exact value). One Parquet file per shard.
2. In a child process, for each shard in turn: the records are read into memory (not timed), then
   written by curate's shard writer (`curate.output.write_shard`, the function `curate build` calls for
   every shard after its external shuffle) once per format, and with `pyarrow.parquet.write_table`
   (default options, `to_arrow()` included) as the baseline; the order of the writers rotates from shard
   to shard. Every format of `curate.config.OutputFormat` is measured (formats added to curate are
   measured automatically); a writer that fails is reported as such.
3. A manifest and ledger are written for the output and `curate.verify` checks it in a second child
   process (its time and peak memory are reported too).

MB/s is the shard's in-memory size (polars `estimated_size`) divided by the write time, so every format
is measured against the same amount of data; the ratio is a format's MB/s over the baseline's. Peak RSS
is the summed RSS of the child's whole process tree, sampled from /proc every 0.05 s. Results go to
OUT/results.json and benchmarks/BENCH_WRITE.md; the load average before and after is recorded (the
machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, get_args

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

from bench_build import TreeRssSampler, git_commit, machine, versions  # noqa: E402

GENERATOR_VERSION = 1
SEED = 0
DATA = ROOT / "pipelines" / "data"
PEAK_RSS_LIMIT = 4 * 2**30


# ---------------------------------------------------------------- input generation


def base_records() -> Any:
    """The bundled slices as canonical records (with `n_tokens`), in a seeded mixed order."""
    import polars as pl

    import curate

    frames = [
        curate.read_source(DATA / "alpaca.json", format="alpaca", name="alpaca"),
        curate.read_source(
            DATA / "gsm8k.jsonl",
            format="prompt_response",
            name="gsm8k",
            fields={"prompt": "question", "response": "answer"},
        ),
        curate.read_source(DATA / "web.jsonl.zst", name="web"),
        curate.read_source(DATA / "wiki.txt", name="wiki"),
    ]
    base = pl.concat(frames, how="diagonal_relaxed")
    return base.sample(fraction=1.0, shuffle=True, seed=SEED)


def _vary(text: str, rng: random.Random, suffix: str) -> str:
    words = text.split(" ")
    for i in range(0, len(words) - 1):
        if rng.random() < 0.1:
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words) + suffix


def generate(records: int, shard_records: int, root: Path) -> Path:
    """Write the records as shard-NNNNN.parquet files into root/write-N (reused when complete)."""
    import polars as pl

    from curate.tokens import DEFAULT_ENCODING, get_encoding

    folder = root / f"write-{records}-{shard_records}-v{GENERATOR_VERSION}"
    stamp = folder / "done.json"
    if stamp.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    base = base_records()
    rows = base.to_dicts()
    enc = get_encoding(DEFAULT_ENCODING)
    schema = base.schema
    for start in range(0, records, shard_records):
        out = []
        for i in range(start, min(start + shard_records, records)):
            copy, row = divmod(i, len(rows))
            record = dict(rows[row])
            if copy:
                rng = random.Random(copy * 1_000_003 + row)
                suffix = f" (copy {copy})"
                record["id"] = f"{record['id']}-{copy}"
                record["n_tokens"] += len(enc.encode_ordinary(suffix))
                if record["kind"] == "pretrain":
                    record["text"] = _vary(record["text"], rng, suffix)
                else:
                    record["messages"] = [
                        {"role": m["role"], "content": _vary(m["content"], rng, suffix)} for m in record["messages"]
                    ]
            out.append(record)
        pl.DataFrame(out, schema=schema).write_parquet(folder / f"shard-{start // shard_records:05d}.parquet")
    stamp.write_text(json.dumps({"records": records, "base_records": len(rows)}))
    return folder


# ---------------------------------------------------------------- the measured child


def formats() -> list[str]:
    from curate.config import OutputFormat

    return list(get_args(OutputFormat))


def child_write(data: Path, out: Path, result_file: Path) -> None:
    """Write every data shard in every format and with the baseline; time each write."""
    import polars as pl
    import pyarrow.parquet as pq

    from curate.config import OutputSection
    from curate.output import write_shard

    shutil.rmtree(out, ignore_errors=True)
    (out / "curate" / "shards").mkdir(parents=True)
    (out / "baseline").mkdir(parents=True)
    writers = ["pyarrow.write_table", *formats()]
    stats = {w: {"seconds": 0.0, "bytes": 0, "error": None} for w in writers}
    rows: list[dict[str, Any]] = []
    data_bytes = records_total = 0
    files = sorted(data.glob("shard-*.parquet"))
    for number, path in enumerate(files):
        records = pl.read_parquet(path)
        data_bytes += records.estimated_size()
        records_total += records.height
        turn = number % len(writers)
        for writer in writers[turn:] + writers[:turn]:
            if stats[writer]["error"]:
                continue
            t0 = time.perf_counter()
            if writer == "pyarrow.write_table":
                target = out / "baseline" / f"shard-{number:05d}.parquet"
                pq.write_table(records.to_arrow(), target)
                written = [target]
            else:
                try:
                    shard_rows = write_shard(
                        records, number, out / "curate" / "shards", OutputSection(formats=[writer])
                    )
                except Exception as exc:  # reported in the results table, the other formats go on
                    stats[writer]["error"] = f"{type(exc).__name__}: {exc}"
                    continue
                rows += shard_rows
                written = [out / "curate" / r["path"] for r in shard_rows]
            stats[writer]["seconds"] += time.perf_counter() - t0
            stats[writer]["bytes"] += sum(_size(p) for p in written)
        print(f"shard {number + 1}/{len(files)} written", file=sys.stderr, flush=True)
    _write_manifest(data, out / "curate", rows)
    result_file.write_text(
        json.dumps({"data_bytes": data_bytes, "records": records_total, "writers": stats, "shards": len(files)})
    )


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _write_manifest(data: Path, out: Path, shards: list[dict[str, Any]]) -> None:
    """A manifest and ledger for the written shards (every record kept once), for `curate verify`."""
    import polars as pl

    from curate.output import write_json

    records = pl.scan_parquet(sorted(data.glob("shard-*.parquet"))).select("id", "source", "n_tokens").collect()
    per = records.group_by("source").agg(pl.len().alias("n"), pl.col("n_tokens").sum().alias("t")).sort("source")
    total = int(records["n_tokens"].sum())
    sources = {
        r["source"]: {
            "records_in": r["n"],
            "records_kept": r["n"],
            "records_dropped": 0,
            "records_quarantined": 0,
            "records_out": r["n"],
            "tokens_out": r["t"],
            "realized_share": round(r["t"] / total, 6),
        }
        for r in per.iter_rows(named=True)
    }
    totals = {"records_in": records.height, "records_out": records.height, "tokens_out": total}
    write_json({"sources": sources, "totals": totals, "shards": shards, "mixture": None}, out / "manifest.json")
    records.select(
        "id",
        "source",
        pl.lit("kept").alias("status"),
        pl.lit(1, pl.Int64).alias("times_sampled"),
    ).write_parquet(out / "ledger.parquet")


def child_verify(out: Path, result_file: Path) -> None:
    import curate

    t0 = time.perf_counter()
    result = curate.verify(out / "curate")
    seconds = time.perf_counter() - t0
    result_file.write_text(
        json.dumps({"seconds": seconds, "summary": result.summary(), "differences": result.differences[:20]})
    )


# ---------------------------------------------------------------- harness and report


def run_child(args: list[str]) -> dict[str, Any]:
    """Run this script as a child with `args`; return its wall time and the peak RSS of its tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args])
    sampler = TreeRssSampler(proc.pid)
    sampler.start()
    code = proc.wait()
    sampler.stop()
    if code:
        raise SystemExit(f"child {' '.join(args)} failed with exit code {code}")
    return {"wall_s": time.perf_counter() - t0, "peak_rss_tree_bytes": sampler.peak}


def markdown(report: dict[str, Any]) -> str:
    w = report["write"]
    mb = w["data_bytes"] / 1e6
    base = w["writers"]["pyarrow.write_table"]
    base_rate = mb / base["seconds"]
    lines = [
        "# Writing shards: curate's writers against `pyarrow.parquet.write_table`",
        "",
        f"Generated by `benchmarks/bench_write.py` (`make bench-write`) at commit `{report['git']['commit'][:12]}`"
        + (" (curate/ had uncommitted changes)" if report["git"]["curate_dir_dirty"] else "")
        + ".",
        "",
        f"- {w['records']:,} records ({report['mix']}) in {w['shards']} shards of "
        f"{report['shard_records']:,}; {mb:,.0f} MB in memory (polars `estimated_size`).",
        f"- Machine: {report['machine']['nproc']} cores, {report['machine']['cpu']}, {report['machine']['memory']};"
        f" load average (1/5/15 min) before {_load(report['load_before'])}, after {_load(report['load_after'])}"
        " (shared with other jobs).",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
        "- Path measured: `curate.output.write_shard(records, n, folder, OutputSection(formats=[fmt]))`, the "
        "per-shard writer that `curate build` calls after its external shuffle (the shuffle, tokenizing and "
        "planning are not included); baseline: `pyarrow.parquet.write_table(records.to_arrow(), path)` with "
        "default options (snappy). Same records, same process, writers rotating per shard.",
        "",
        "| writer | seconds | MB/s | ratio to write_table | on disk MB | disk / memory |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in w["writers"].items():
        if s["error"]:
            lines.append(f"| {name} | not measured: {s['error']} | | | | |")
            continue
        rate = mb / s["seconds"]
        lines.append(
            f"| {name} | {s['seconds']:.2f} | {rate:,.0f} | {rate / base_rate:.2f} | {s['bytes'] / 1e6:,.0f} "
            f"| {s['bytes'] / w['data_bytes']:.2f} |"
        )
    peak = report["write_run"]["peak_rss_tree_bytes"]
    vpeak = report["verify_run"]["peak_rss_tree_bytes"]
    v = report["verify"]
    lines += [
        "",
        f"Peak RSS of the writing process tree: **{peak / 2**20:,.0f} MiB** (limit 4096 MiB: "
        f"{'met' if peak < PEAK_RSS_LIMIT else 'EXCEEDED'}); wall time {report['write_run']['wall_s']:.0f} s.",
        "",
        f"`curate verify` of the written output (every format's shards: sha256, records, tokens, per-source "
        f"shares, ledger of {w['records']:,} rows): {v['seconds']:.1f} s, peak RSS {vpeak / 2**20:,.0f} MiB; "
        f"`{v['summary']}`",
        "",
    ]
    return "\n".join(lines)


def _load(values: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="records to write (default 1000000)")
    parser.add_argument("--shard-records", type=int, default=100_000, help="records per shard (default 100000)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out" / "write", help="scratch and results folder")
    parser.add_argument("--data", type=Path, default=BENCH_DIR / "_data", help="generated records (cached)")
    parser.add_argument("--markdown", type=Path, default=BENCH_DIR / "BENCH_WRITE.md", help="report to write")
    parser.add_argument("--child", choices=["write", "verify"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.child == "write":
        child_write(args.input, out, args.result)
        return 0
    if args.child == "verify":
        child_verify(out, args.result)
        return 0

    print(f"generating {args.records:,} records into {args.data} (cached) ...", flush=True)
    data = generate(args.records, args.shard_records, args.data.resolve())
    out.mkdir(parents=True, exist_ok=True)
    git, load_before = git_commit(), os.getloadavg()
    write_run = run_child(
        ["--child", "write", "--input", str(data), "--out", str(out), "--result", str(out / "w.json")]
    )
    verify_run = run_child(["--child", "verify", "--out", str(out), "--result", str(out / "v.json")])
    import polars as pl

    mix = pl.scan_parquet(data / "shard-00000.parquet").group_by("source").len().sort("source").collect()
    report = {
        "git": git,
        "machine": machine(),
        "versions": versions() | {"pyarrow": __import__("pyarrow").__version__},
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "shard_records": args.shard_records,
        "mix": "first shard: " + ", ".join(f"{s} {n:,}" for s, n in mix.iter_rows()),
        "write": json.loads((out / "w.json").read_text()),
        "write_run": write_run,
        "verify": json.loads((out / "v.json").read_text()),
        "verify_run": verify_run,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    args.markdown.write_text(markdown(report))
    print(args.markdown.read_text())
    return 0 if write_run["peak_rss_tree_bytes"] < PEAK_RSS_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
