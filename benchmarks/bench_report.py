"""Benchmark `curate.open` and `report.html` on a large synthetic build output.

    .venv/bin/python benchmarks/bench_report.py [--records 1000000] [--sources 100] [--out benchmarks/_data/report]

Writes (deterministically, into a git-ignored folder) an output folder as a build would: one Parquet
shard per 100,000 records with the columns the tagging stages add (lang, cot, cot_style,
reasoning_depth, fasttext_reasoning, diversity, dup_cluster), a ledger with 20% more rows (dropped by
minhash_dedup and the mixture), templates.jsonl with one cluster per 50 records, and a manifest with a
weighted mixture. Then, each in a fresh process: `curate.open(out)` plus a count of the lazy records,
and `curate.report(out)`; it prints wall time, peak RSS and the size of report.html.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parent.parent


def generate(out: Path, records: int, sources: int) -> None:
    rng = np.random.default_rng(0)
    names = np.array([f"src{i:03d}" for i in range(sources)])
    weights = rng.dirichlet(np.ones(sources))
    source = names[rng.choice(sources, records, p=weights)]
    n_tokens = rng.lognormal(5, 1, records).astype(np.int64) + 1
    frame = pl.DataFrame(
        {
            "id": pl.int_range(records, eager=True).cast(pl.String).str.zfill(16),
            "source": source,
            "kind": np.where(rng.random(records) < 0.25, "pretrain", "instruction"),
            "text": pl.repeat("a synthetic record", records, eager=True),
            "n_tokens": n_tokens,
            "lang": np.array(["en", "de", "fr", "zh", "es"])[rng.choice(5, records, p=[0.8, 0.05, 0.05, 0.05, 0.05])],
            "lang_score": rng.beta(8, 1, records),
            "dup_cluster": (pl.int_range(records, eager=True) // 50).cast(pl.String),
            "cot": rng.random(records) < 0.4,
            "cot_style": pl.Series([["step_list"], [], ["equation_chain", "explain_then_answer"]]).sample(
                records, with_replacement=True, seed=0
            ),
            "reasoning_depth": rng.beta(2, 3, records),
            "fasttext_reasoning": rng.random(records),
            "diversity": rng.normal(0.8, 0.03, records),
        }
    )
    shards = out / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, start in enumerate(range(0, records, 100_000)):
        part = frame.slice(start, 100_000)
        path = shards / f"train-{i:05d}.parquet"
        part.write_parquet(path)
        rows.append(
            {
                "path": f"shards/{path.name}",
                "format": "parquet",
                "split": "train",
                "records": part.height,
                "tokens": int(part["n_tokens"].sum()),
                "sha256": "",
            }
        )
    extra = records // 5
    dropped = pl.DataFrame({"id": [f"d{i}" for i in range(extra)], "source": names[rng.integers(0, sources, extra)]})
    reasons = np.where(rng.random(extra) < 0.5, "not_sampled", "near_duplicate")
    ledger = pl.concat(
        [
            frame.select(
                "id",
                "source",
                pl.lit("kept").alias("status"),
                pl.lit(None, pl.String).alias("stage"),
                pl.lit(None, pl.String).alias("reason"),
            ),
            dropped.with_columns(
                pl.lit("dropped").alias("status"),
                pl.Series("stage", np.where(reasons == "not_sampled", "mixture", "minhash_dedup")),
                pl.Series("reason", reasons)
                + pl.Series([f":{i // 50}" if r == "near_duplicate" else "" for i, r in enumerate(reasons)]),
            ),
        ]
    ).with_columns(
        pl.lit("data.jsonl").alias("file"), pl.int_range(pl.len()).alias("line"), pl.lit(1).alias("times_sampled")
    )
    ledger.select("id", "source", "file", "line", "status", "stage", "reason", "times_sampled").write_parquet(
        out / "ledger.parquet"
    )
    with open(out / "templates.jsonl", "w") as f:
        for c in range(records // 50):
            f.write(
                json.dumps(
                    {
                        "cluster": str(c),
                        "size": 50 + c % 7,
                        "kept": 3,
                        "sources": {"src000": 50},
                        "skeleton": "a synthetic ⟨num⟩ skeleton …",
                        "examples": [{"id": "0", "source": "src000", "text": "x " * 300}] * 3,
                    }
                )
                + "\n"
            )
    per = frame.group_by("source").agg(pl.len(), pl.col("n_tokens").sum()).sort("source")
    total = int(frame["n_tokens"].sum())
    manifest = {
        "pipeline": "bench_report",
        "curate_version": "bench",
        "seed": 0,
        "tokenizer": "cl100k_base",
        "stages": [
            {"use": s}
            for s in ("language", "minhash_dedup", "cot_tag", "reasoning_depth", "fasttext_classifier", "diversity")
        ],
        "sources": {
            r["source"]: {
                "records_in": r["len"],
                "records_kept": r["len"],
                "records_dropped": 0,
                "records_quarantined": 0,
                "records_out": r["len"],
                "tokens_available": r["n_tokens"],
                "tokens_out": r["n_tokens"],
                "target_share": r["n_tokens"] / total,
                "realized_share": r["n_tokens"] / total,
                "epochs": 1.0,
                "epochs_realized": 1.0,
                "max_epochs": 1,
            }
            for r in per.iter_rows(named=True)
        },
        "mixture": {"total_tokens": total, "binding_source": "src000"},
        "totals": {"records_in": ledger.height, "records_out": records, "tokens_out": total, "records_quarantined": 0},
        "shards": rows,
        "ledger": "ledger.parquet",
        "warnings": [],
        "stage_stats": {},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))


def measure(code: str) -> tuple[float, float, str]:
    """Run `code` in a fresh interpreter; return wall seconds, its peak RSS (MB) and what it printed."""
    wrapper = (
        f"import resource, time\nt0 = time.perf_counter()\n{code}\nprint('WALL', time.perf_counter() - t0)\n"
        "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True, cwd=REPO)
    lines = done.stdout.splitlines()
    wall = float(next(x for x in lines if x.startswith("WALL")).split()[1])
    rss = float(next(x for x in lines if x.startswith("RSS")).split()[1])
    return wall, rss, "\n".join(x for x in lines if not x.startswith(("WALL", "RSS")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--sources", type=int, default=100)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "_data" / "report")
    args = parser.parse_args()
    out = args.out / f"{args.records}x{args.sources}"
    if not (out / "manifest.json").exists():
        t0 = time.perf_counter()
        generate(out, args.records, args.sources)
        print(f"generated {out} in {time.perf_counter() - t0:.1f} s")
    wall, rss, _ = measure("import curate")
    print(f"import curate (baseline): {wall:.2f} s, peak RSS {rss:.0f} MB")
    wall, rss, shown = measure(
        f"import curate\nout = curate.open({str(out)!r})\n"
        "print('records', out.records.select(__import__('polars').len()).collect().item())"
    )
    print(f"curate.open + count records: {wall:.2f} s, peak RSS {rss:.0f} MB ({shown})")
    wall, rss, _ = measure(f"import curate\ncurate.report({str(out)!r})")
    size = (out / "report.html").stat().st_size
    print(f"curate.report: {wall:.2f} s, peak RSS {rss:.0f} MB, report.html {size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
