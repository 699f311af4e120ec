"""Benchmark writing 1M records to every output format against `pyarrow.parquet.write_table` alone.

    .venv/bin/python benchmarks/bench_write.py [--records 1000000] [--shard-records 100000] [--out benchmarks/out/write]

1. Generates (deterministically, cached in benchmarks/_data/write-N/, git-ignored) N canonical records
   from the bundled slices in pipelines/data/ (Alpaca-format instructions, GSM8K, DCLM web text,
   Wikipedia), read with `curate.read_source`, mixed in a seeded order and replicated with variations:
   copy k of a record has ~10% of the words of every text / message swapped with their neighbour
   (seeded by k and the record) and " (copy k)" appended, so copies are not byte-identical and
   compressors see realistic redundancy. `n_tokens` is the base record's count plus the suffix's (not
   recounted: the writers do not depend on its exact value). One Parquet file per shard.
2. One child process writes every shard in every format of `curate.config.OutputFormat` (formats added
   to curate are measured automatically; `--formats` picks some) the way `curate.output.write_shard`
   does (record formats through `write_shard` itself; the others through one `curate.formats.Shard` per
   shard, whose tokenization the tokenized formats share, and each format's `write`), then each format's
   `finish`; each step is timed, and so is `pyarrow.parquet.write_table` (default options, `to_arrow()`
   included) on the same records, side by side, its turn rotating from shard to shard.
3. A manifest and ledger are written for the output and `curate.verify` checks it in its
   own child process (its time and peak memory are reported too).

MB/s is the records' in-memory size (polars `estimated_size`) divided by the write time, so every format
is measured against the same amount of data; the ratio is curate's MB/s over the baseline's in the same
process. Peak RSS is the summed RSS of the child's whole process tree, sampled from /proc every 0.05 s. Results go to
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
NOTES = "## Notes"


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
    """Write every data shard in every format in one process, as `curate.output.write_shard` does (one
    `Shard` per shard, its rendering and tokenization shared by the formats), timing each format's
    writer, the shared tokenization and, side by side, the baseline; then each format's finish step."""
    import polars as pl
    import pyarrow.parquet as pq

    from curate.config import OutputSection
    from curate.formats import FORMATS, TOKENIZED, Shard, finish_formats
    from curate.output import write_shard

    shutil.rmtree(out, ignore_errors=True)
    shards, baseline = out / "curate" / "shards", out / "baseline"
    shards.mkdir(parents=True)
    baseline.mkdir(parents=True)
    output = OutputSection(formats=fmts)  # type: ignore[arg-type]
    seconds = dict.fromkeys(["baseline", "tokenize (shared)", *fmts], 0.0)
    finish = dict.fromkeys(fmts, 0.0)
    rows: list[dict[str, Any]] = []
    data_bytes = records_total = 0
    files = sorted(data.glob("shard-*.parquet"))
    for number, path in enumerate(files):
        records = pl.read_parquet(path)
        data_bytes += records.estimated_size()
        records_total += records.height
        shard = Shard(records, "train", number, output, output.tokenizer)
        order = ["baseline", "tokenize (shared)", *fmts]
        for step in order if number % 2 == 0 else order[1:] + order[:1]:
            t0 = time.perf_counter()
            if step == "baseline":
                pq.write_table(records.to_arrow(), baseline / f"shard-{number:05d}.parquet")
            elif step == "tokenize (shared)":
                if any(f in TOKENIZED for f in fmts):
                    shard.tokenized()
            elif step in FORMATS:
                row = FORMATS[step].write(shard, shards.parent)
                rows += [{"format": step, "split": "train", **row}] if row else []
            else:
                rows += write_shard(records, number, shards, OutputSection(formats=[step]))  # type: ignore[list-item]
            seconds[step] += time.perf_counter() - t0
        del records, shard
        print(f"shard {number + 1}/{len(files)} written", file=sys.stderr, flush=True)
    peaks = {"after the shards": _maxrss_mib()}  # the process's own high-water mark, for attribution
    for fmt in fmts:
        t0 = time.perf_counter()
        rows = finish_formats(out / "curate", [fmt], rows)["shards"]
        finish[fmt] = time.perf_counter() - t0
        peaks[f"after {fmt} finish"] = _maxrss_mib()
    on_disk = {fmt: sum(_size(out / "curate" / r["path"]) for r in rows if r["format"] == fmt) for fmt in fmts}
    on_disk |= {
        fmt: on_disk[fmt]
        + sum((out / "curate" / f).stat().st_size for r in rows if r["format"] == fmt for f in r["files"])
        for fmt in fmts
        if any("files" in r for r in rows if r["format"] == fmt)
    }
    on_disk["baseline"] = _size(baseline)
    _write_manifest(data, out / "curate", rows)
    result = {"data_bytes": data_bytes, "records": records_total, "shards": len(files), "seconds": seconds}
    result_file.write_text(json.dumps(result | {"finish_seconds": finish, "bytes": on_disk, "maxrss_mib": peaks}))


def _maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    r = report["result"]
    mb = r["data_bytes"] / 1e6
    base = mb / r["seconds"]["baseline"]
    tokenize = r["seconds"]["tokenize (shared)"]
    lines = [
        "# Writing shards: curate's writers against `pyarrow.parquet.write_table`",
        "",
        f"Generated by `benchmarks/bench_write.py` (`make bench-write`) at commit `{report['git']['commit'][:12]}`"
        + (" (curate/ had uncommitted changes)" if report["git"]["curate_dir_dirty"] else "")
        + f" in {report['seconds']:.0f} s.",
        "",
        f"- {r['records']:,} records ({report['mix']}) in {r['shards']} shards of {report['shard_records']:,};"
        f" {mb:,.0f} MB in memory (polars `estimated_size`), {report['tokens']:,} tokens (`n_tokens`).",
        f"- Machine: {report['machine']['nproc']} cores, {report['machine']['cpu']}, {report['machine']['memory']};"
        f" load average (1/5/15 min) before {_load(report['load_before'])}, after {_load(report['load_after'])}"
        " (shared with other jobs: timings are slower than on an idle machine).",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
        "- Path measured, in one process: for each shard, `curate.output.write_shard(records, n, shards,"
        " OutputSection(formats=[fmt]))` for the record formats, and for the other formats what `write_shard`"
        " does for them: one `curate.formats.Shard` per shard (rendering and tokenization computed once and"
        " shared, timed as `tokenize (shared)`) and each format's `write`; after all shards each format's"
        " `finish` (hf: build and save the DatasetDict from the Parquet shards; MDS index; Megatron data path)."
        " These are the functions `curate build` runs after its external shuffle; the shuffle, stages and"
        " planning are not included. Baseline: `pyarrow.parquet.write_table(records.to_arrow(), path)`,"
        " default options (snappy), on the same records in the same process, its turn rotating shard by shard.",
        "",
        "| writer | seconds | MB/s | ratio to write_table | with shared tokenization: MB/s, ratio | on disk MB |",
        "|---|---:|---:|---:|---:|---:|",
        f"| pyarrow.parquet.write_table | {r['seconds']['baseline']:.1f} | {base:,.0f} | 1.00 | | "
        f"{r['bytes']['baseline'] / 1e6:,.0f} |",
        f"| tokenize (shared by megatron, tokens, mds) | {tokenize:.1f} | {mb / tokenize:,.0f} | "
        f"{mb / tokenize / base:.2f} | | |",
    ]
    tokenized = report["tokenized"]
    for fmt in report["formats"]:
        total = r["seconds"][fmt] + r["finish_seconds"][fmt]
        finish = f" (finish {r['finish_seconds'][fmt]:.1f})" if r["finish_seconds"][fmt] >= 0.05 else ""
        rate = mb / total
        with_tok = f"{mb / (total + tokenize):,.1f}, {mb / (total + tokenize) / base:.3f}" if fmt in tokenized else ""
        lines.append(
            f"| {fmt} | {total:.1f}{finish} | {rate:,.0f} | {rate / base:.2f} | {with_tok} "
            f"| {r['bytes'][fmt] / 1e6:,.0f} |"
        )
    everything = sum(r["seconds"][f] + r["finish_seconds"][f] for f in report["formats"]) + tokenize
    peak = report["write_run"]["peak_rss_tree_bytes"]
    v, vrun = report["verify"], report["verify_run"]
    lines += [
        f"| **all formats** | {everything:.1f} | {mb / everything:,.1f} | {mb / everything / base:.3f} | | "
        f"{sum(r['bytes'][f] for f in report['formats']) / 1e6:,.0f} |",
        "",
        "MB/s = in-memory MB of the records / seconds; ratio = that over write_table's MB/s in the same"
        " process. Tokenized formats (megatron, tokens, mds) tokenize the rendered text once per shard;"
        " their own row is the writing alone, the next column adds the shared tokenization.",
        "",
        f"Peak RSS of the process tree (summed RSS of the process and any children, sampled every 0.05 s): "
        f"**{peak / 2**20:,.0f} MiB** (limit 4096 MiB: {'met' if peak < PEAK_RSS_LIMIT else 'EXCEEDED'});"
        f" wall time {report['write_run']['wall_s']:.0f} s. The process's own high-water mark (`ru_maxrss`, MiB): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in r["maxrss_mib"].items())
        + ".",
        "",
        f"`curate verify` of this output ({v['shard_files']} shard files: sha256 of every file, records and"
        f" tokens read back per format, per-source shares, ledger of {r['records']:,} rows):"
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
    cmd = ["--child", "write", "--input", str(data), "--out", str(out), "--formats", ",".join(fmts)]
    write_run = run_child([*cmd, "--result", str(out / "write.json")])
    verify_run = run_child(["--child", "verify", "--out", str(out), "--result", str(out / "verify.json")])
    import polars as pl

    from curate.formats import TOKENIZED

    frame = pl.scan_parquet(sorted(data.glob("shard-*.parquet")))
    mix = frame.group_by("source").len().sort("source").collect()
    report = {
        "git": git,
        "machine": machine(),
        "versions": versions() | {"pyarrow": __import__("pyarrow").__version__},
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "shard_records": args.shard_records,
        "formats": fmts,
        "tokenized": list(TOKENIZED),
        "mix": ", ".join(f"{s} {n:,}" for s, n in mix.iter_rows()),
        "tokens": int(frame.select(pl.col("n_tokens").sum()).collect().item()),
        "result": json.loads((out / "write.json").read_text()),
        "write_run": write_run,
        "verify": json.loads((out / "verify.json").read_text()),
        "verify_run": verify_run,
        "seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    old = args.markdown.read_text() if args.markdown.exists() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else ""  # hand-written analysis survives reruns
    args.markdown.write_text(markdown(report) + ("\n" + notes if notes else ""))
    print(args.markdown.read_text())
    return 0 if write_run["peak_rss_tree_bytes"] < PEAK_RSS_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
