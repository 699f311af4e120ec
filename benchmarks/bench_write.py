"""Benchmark writing 1M records to every output format against `pyarrow.parquet.write_table` alone.

    .venv/bin/python benchmarks/bench_write.py [--records 1000000] [--shard-records 100000] [--out benchmarks/out/write]

1. Generates (deterministically, cached in benchmarks/_data/write-N/, git-ignored) N canonical records
   from the bundled slices in pipelines/data/ (Alpaca-format instructions, GSM8K, DCLM web text,
   Wikipedia), read with `curate.read_source`, mixed in a seeded order and replicated with variations:
   copy k of a record has ~10% of the words of every text / message swapped with their neighbour
   (seeded by k and the record) and " (copy k)" appended, so copies are not byte-identical and
   compressors see realistic redundancy. `n_tokens` is the base record's count plus the suffix's (not
   recounted: the writers do not depend on its exact value). One Parquet file per shard.
2. One child process per format of `curate.config.OutputFormat` (formats added to curate are measured
   automatically; `--formats` picks some), then one writing every format at once as a build does: for
   each shard the records are read into memory (not timed) and written with curate's shard writer
   (`curate.output.write_shard`, which `curate build` calls for every shard after its external
   shuffle) and, side by side, with `pyarrow.parquet.write_table` (default options, `to_arrow()`
   included) as the baseline, alternating which goes first; then `curate.formats.finish_formats`.
3. A manifest and ledger are written for the all-formats output and `curate.verify` checks it in its
   own child process (its time and peak memory are reported too).

MB/s is the records' in-memory size (polars `estimated_size`) divided by the write time, so every format
is measured against the same amount of data; the ratio is curate's MB/s over the baseline's in the same
process. Peak RSS is the summed RSS of each child's whole process tree, sampled from /proc every 0.05 s. Results go to
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


def child_write(data: Path, out: Path, fmts: list[str], result_file: Path) -> None:
    """Write every data shard with curate's writer for `fmts` (one call per shard, as a build does) and,
    side by side, with the baseline; then the formats' `finish` step. Time each."""
    import polars as pl
    import pyarrow.parquet as pq

    from curate.config import OutputSection
    from curate.formats import finish_formats
    from curate.output import write_shard

    shutil.rmtree(out, ignore_errors=True)
    (out / "curate" / "shards").mkdir(parents=True)
    (out / "baseline").mkdir(parents=True)
    output = OutputSection(formats=fmts)  # type: ignore[arg-type]
    stats = {w: {"seconds": 0.0, "bytes": 0} for w in ("baseline", "curate")}
    rows: list[dict[str, Any]] = []
    data_bytes = records_total = 0
    files = sorted(data.glob("shard-*.parquet"))
    for number, path in enumerate(files):
        records = pl.read_parquet(path)
        data_bytes += records.estimated_size()
        records_total += records.height
        for writer in ("baseline", "curate") if number % 2 == 0 else ("curate", "baseline"):
            t0 = time.perf_counter()
            if writer == "baseline":
                pq.write_table(records.to_arrow(), out / "baseline" / f"shard-{number:05d}.parquet")
            else:
                rows += write_shard(records, number, out / "curate" / "shards", output)
            stats[writer]["seconds"] += time.perf_counter() - t0
        del records
        print(f"{'+'.join(fmts)}: shard {number + 1}/{len(files)} written", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    finished = finish_formats(out / "curate", fmts, rows)
    stats["curate"]["finish_seconds"] = time.perf_counter() - t0
    stats["curate"]["seconds"] += stats["curate"]["finish_seconds"]
    stats["baseline"]["bytes"] = _size(out / "baseline")
    stats["curate"]["bytes"] = sum(_size(out / "curate" / d) for d in os.listdir(out / "curate"))
    _write_manifest(data, out / "curate", finished["shards"])
    result_file.write_text(
        json.dumps({"formats": fmts, "data_bytes": data_bytes, "records": records_total, "shards": len(files), **stats})
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
        json.dumps(
            {
                "seconds": seconds,
                "summary": result.summary(),
                "differences": result.differences[:20],
                "shard_files": result.files,
            }
        )
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
    first = next(iter(report["runs"].values()))["result"]
    mb = first["data_bytes"] / 1e6
    lines = [
        "# Writing shards: curate's writers against `pyarrow.parquet.write_table`",
        "",
        f"Generated by `benchmarks/bench_write.py` (`make bench-write`) at commit `{report['git']['commit'][:12]}`"
        + (" (curate/ had uncommitted changes)" if report["git"]["curate_dir_dirty"] else "")
        + f" in {report['seconds']:.0f} s.",
        "",
        f"- {first['records']:,} records ({report['mix']}) in {first['shards']} shards of "
        f"{report['shard_records']:,}; {mb:,.0f} MB in memory (polars `estimated_size`), "
        f"{report['tokens']:,} tokens (`n_tokens`).",
        f"- Machine: {report['machine']['nproc']} cores, {report['machine']['cpu']}, {report['machine']['memory']};"
        f" load average (1/5/15 min) before {_load(report['load_before'])}, after {_load(report['load_after'])}"
        " (shared with other jobs).",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
        "- Path measured: `curate.output.write_shard(records, n, shards, OutputSection(formats=...))` per shard,"
        " then `curate.formats.finish_formats` (hf dataset, MDS index, Megatron data path): the functions"
        " `curate build` calls after its external shuffle (shuffle, stages and planning not included). Baseline:"
        " `pyarrow.parquet.write_table(records.to_arrow(), path)`, default options (snappy), on the same"
        " records in the same process, alternating with curate's writer shard by shard. Each row is its own"
        " process; `all formats` writes every format in one `write_shard` call per shard, as a build does.",
        "",
        "| formats | curate s | MB/s | write_table s | write_table MB/s | ratio | on disk MB | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in report["runs"].items():
        r = run["result"]
        rate, base = mb / r["curate"]["seconds"], mb / r["baseline"]["seconds"]
        finish = f" (finish {r['curate']['finish_seconds']:.1f})" if r["curate"]["finish_seconds"] >= 0.05 else ""
        lines.append(
            f"| {name} | {r['curate']['seconds']:.1f}{finish} | {rate:,.0f} | {r['baseline']['seconds']:.1f} "
            f"| {base:,.0f} | {rate / base:.2f} | {r['curate']['bytes'] / 1e6:,.0f} "
            f"| {run['peak_rss_tree_bytes'] / 2**20:,.0f} |"
        )
    peak = max(run["peak_rss_tree_bytes"] for run in report["runs"].values())
    v, vrun = report["verify"], report["verify_run"]
    lines += [
        "",
        "MB/s = in-memory MB of the records / seconds; ratio = curate's MB/s / write_table's MB/s in the same"
        " process. Peak RSS: the summed RSS of the process tree (the child, its threads and any children),"
        " sampled every 0.05 s, including the records of the shard being written and the baseline's copy.",
        "",
        f"Largest peak RSS: **{peak / 2**20:,.0f} MiB** "
        f"(limit 4096 MiB: {'met' if peak < PEAK_RSS_LIMIT else 'EXCEEDED'}).",
        "",
        f"`curate verify` of the `all formats` output ({v['shard_files']} shard files; sha256 of every file,"
        f" records and tokens read back per format, per-source shares, ledger of {first['records']:,} rows):"
        f" {v['seconds']:.1f} s, peak RSS {vrun['peak_rss_tree_bytes'] / 2**20:,.0f} MiB: `{v['summary']}`",
        "",
    ]
    return "\n".join(lines)


def _load(values: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="records to write (default 1000000)")
    parser.add_argument("--shard-records", type=int, default=100_000, help="records per shard (default 100000)")
    parser.add_argument("--formats", help="comma-separated formats (default: every format curate has)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out" / "write", help="scratch and results folder")
    parser.add_argument("--data", type=Path, default=BENCH_DIR / "_data", help="generated records (cached)")
    parser.add_argument("--markdown", type=Path, default=BENCH_DIR / "BENCH_WRITE.md", help="report to write")
    parser.add_argument("--child", choices=["write", "verify"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    fmts = args.formats.split(",") if args.formats else formats()
    if args.child == "write":
        child_write(args.input, out, fmts, args.result)
        return 0
    if args.child == "verify":
        child_verify(out, args.result)
        return 0

    started = time.perf_counter()
    print(f"generating {args.records:,} records into {args.data} (cached) ...", flush=True)
    data = generate(args.records, args.shard_records, args.data.resolve())
    out.mkdir(parents=True, exist_ok=True)
    git, load_before = git_commit(), os.getloadavg()
    runs: dict[str, dict[str, Any]] = {}
    for name, chosen in [*((f, [f]) for f in fmts), ("all formats", fmts)]:
        folder = out / ("all" if len(chosen) > 1 else chosen[0])
        result = folder.parent / f"{folder.name}.json"
        cmd = ["--child", "write", "--input", str(data), "--out", str(folder), "--formats", ",".join(chosen)]
        runs[name] = run_child([*cmd, "--result", str(result)]) | {"result": json.loads(result.read_text())}
        if len(chosen) == 1:
            shutil.rmtree(folder)  # keep the disk free: only the all-formats output is verified
    verify_run = run_child(["--child", "verify", "--out", str(out / "all"), "--result", str(out / "verify.json")])
    import polars as pl

    frame = pl.scan_parquet(sorted(data.glob("shard-*.parquet")))
    mix = frame.group_by("source").len().sort("source").collect()
    report = {
        "git": git,
        "machine": machine(),
        "versions": versions() | {"pyarrow": __import__("pyarrow").__version__},
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "shard_records": args.shard_records,
        "mix": ", ".join(f"{s} {n:,}" for s, n in mix.iter_rows()),
        "tokens": int(frame.select(pl.col("n_tokens").sum()).collect().item()),
        "runs": runs,
        "verify": json.loads((out / "verify.json").read_text()),
        "verify_run": verify_run,
        "seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    args.markdown.write_text(markdown(report))
    print(args.markdown.read_text())
    peak = max(run["peak_rss_tree_bytes"] for run in runs.values())
    return 0 if peak < PEAK_RSS_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
