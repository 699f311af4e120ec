"""bench_scale.py's analysis: medians, output identity, the issue's targets and BENCH_SCALE.md (stdlib only)."""

from __future__ import annotations

import statistics
from typing import Any

TARGETS = {"growth_per_10x": 12.0, "rss_1m_gb": 6.0, "w1_over_w2": 1.6, "ray_over_w2": 1.5}
LABELS = {
    "w1": "local --workers 1",
    "w2": "local --workers 2",
    "ray": "ray, 2 CPUs (--executor ray --workers 2)",
    "w1cpu": "local --workers 1 on one CPU (taskset -c 0)",
}


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarize(results: dict[int, dict[str, list[dict]]]) -> dict[str, Any]:
    """Medians per (size, run); output identity per size."""
    table: dict[str, Any] = {}
    for size, by_run in results.items():
        for run, reps in by_run.items():
            ok = [r for r in reps if r["rc"] == 0]
            if not ok:
                table[f"{size}/{run}"] = {"size": size, "run": run, "failed": len(reps)}
                continue
            keys = sorted({k for r in ok for k in r["run_json"]["timings"]})
            table[f"{size}/{run}"] = {
                "size": size,
                "run": run,
                "repeats": len(ok),
                "failed": len(reps) - len(ok),
                "wall_seconds": median([r["wall_seconds"] for r in ok]),
                "records_per_s": median([r["records_per_s"] for r in ok]),
                "cpu_seconds": median([r.get("cpu_seconds", 0.0) for r in ok]),
                "cpu_seconds_sampled": median([r.get("cpu_seconds_sampled", 0.0) for r in ok]),
                "peak_rss_tree_mb": median([r["peak_rss_tree_mb"] for r in ok]),
                "peak_pss_tree_mb": median([r["peak_pss_tree_mb"] for r in ok]),
                "peak_rss_process_mb": median([r["peak_rss_process_mb"] for r in ok]),
                "peak_disk_mb": median([r.get("peak_disk_mb") or 0.0 for r in ok]),
                "timings": {k: median([r["run_json"]["timings"].get(k, 0.0) for r in ok]) for k in keys},
                "disk": ok[0]["disk"],
                "totals": ok[0]["totals"],
                "phases": ok[0].get("phases", []),
                "truth_check": ok[0].get("truth_check", {}),
            }
    return table


def identity(by_run: dict[str, list[dict]]) -> dict[str, Any]:
    """Are the first successful outputs of every run of a size byte-identical (run.json aside)?"""
    firsts = {run: next((r for r in reps if r["rc"] == 0), None) for run, reps in by_run.items()}
    digests = {run: r["digests"] for run, r in firsts.items() if r}
    if len(digests) < 2:
        return {"compared": sorted(digests), "identical": None}
    ref_run, ref = next(iter(digests.items()))
    differing = sorted(
        {f for d in digests.values() for f in set(d) | set(ref) if d.get(f) != ref.get(f)},
    )
    return {
        "compared": sorted(digests),
        "reference": ref_run,
        "files": len(ref),
        "identical": not differing,
        "differing_files": differing[:50],
    }


def targets(summary: dict[str, Any], sizes: list[int], runs: list[str]) -> list[dict[str, Any]]:
    """The issue's targets, PASS / FAIL / not measured."""
    out = []

    def wall(size: int, run: str) -> float | None:
        return summary.get(f"{size}/{run}", {}).get("wall_seconds")

    lo, hi = min(sizes), max(sizes)
    for run in runs:
        a, b = wall(lo, run), wall(hi, run)
        limit = TARGETS["growth_per_10x"] / 10 * hi / lo
        if hi == lo or a is None or b is None:
            out.append(
                {
                    "target": f"{run}: t(largest)/t(smallest) <= 1.2 x data growth",
                    "status": "not measured",
                    "detail": "needs two sizes",
                }
            )
        else:
            out.append(
                {
                    "target": f"{run}: t({hi:,})/t({lo:,}) <= {limit:.1f}",
                    "value": round(b / a, 2),
                    "status": "PASS" if b / a <= limit else "FAIL",
                }
            )
    for run in runs:
        row = summary.get(f"{hi}/{run}", {})
        peak = max(row.get("peak_rss_tree_mb") or 0, row.get("peak_rss_process_mb") or 0)
        status = ("PASS" if peak < TARGETS["rss_1m_gb"] * 1000 else "FAIL") if row.get("wall_seconds") else "failed"
        if hi < 1_000_000:
            status = f"not measured at 1M ({status} at {hi:,})"
        out.append({"target": f"{run}: peak RSS (process tree) at 1M < 6 GB", "value_mb": peak, "status": status})
    for size in sizes:
        for num, den, key, rule in (
            ("w1", "w2", "w1_over_w2", ">="),
            ("ray", "w2", "ray_over_w2", "<="),
            ("w1cpu", "w2", "w1_over_w2", ">="),
        ):
            a, b = wall(size, num), wall(size, den)
            name = f"{size:,}: t({num})/t({den}) {rule} {TARGETS[key]}"
            if num == "w1cpu":
                if a is None:
                    continue
                name = f"{size:,}: context, not the issue's target: t(w1 on one CPU)/t(w2) {rule} {TARGETS[key]}"
            if a is None or b is None:
                out.append({"target": name, "status": "not measured"})
                continue
            ok = a / b >= TARGETS[key] if rule == ">=" else a / b <= TARGETS[key]
            out.append({"target": name, "value": round(a / b, 2), "status": "PASS" if ok else "FAIL"})
            if num == "w1":
                out.extend(_speedup_bound(summary.get(f"{size}/w2", {}), a, size))
    return out


def _speedup_bound(w2: dict[str, Any], w1_wall: float, size: int) -> list[dict[str, Any]]:
    """Context for t(w1)/t(w2): 2 workers on 2 cores need at least CPU(w2) / 2 seconds, so the ratio
    cannot exceed 2 t(w1) / CPU(w2). It is below 2 where one worker keeps more than a core busy, or
    where 2 workers spend more CPU in all than one (medians: the figures may come from different repeats)."""
    cpu = w2.get("cpu_seconds") or 0.0
    if not cpu:
        return []
    bound = round(2 * w1_wall / cpu, 2)
    name = f"{size:,}: context, not a target: the most t(w1)/t(w2) can be on 2 cores, 2 t(w1) / CPU s(w2)"
    return [{"target": name, "value": bound, "status": "context"}]


def phases(
    passes: list[dict[str, Any]],
    timeline: list[tuple[float, float]],
    start: float,
    end: float,
    disk: list[tuple[float, float]] | None = None,
) -> list:
    """Seconds, peak tree RSS and peak disk (MB under the work dir and the output, sampled every second)
    of each phase of a run, from work-dir file times: start-up (until the first batch file), per pass
    its maps (first to last batch file), barrier (last batch file to `decisions.parquet`) and the gap to
    the next pass's first batch, then finish (mixture, sampling, shards, ledger, report; until the
    process exits)."""
    bounds: list[tuple[str, float]] = [("start-up", start)]
    for p in passes:
        t = p["times"]
        if t["first_batch"] is None:
            continue
        bounds.append((f"{p['pass']} maps", t["first_batch"]))
        if t["decisions"] is not None:
            bounds.append((f"{p['pass']} barrier", t["last_batch"]))
            bounds.append((f"after {p['pass']}", t["decisions"]))
        else:
            bounds.append((f"after {p['pass']}", t["last_batch"]))
    if len(bounds) > 1:
        bounds[-1] = ("finish", bounds[-1][1])
    out = []
    for k, (name, at) in enumerate(bounds):
        until = bounds[k + 1][1] if k + 1 < len(bounds) else end
        rss = [mb for when, mb in timeline if at <= when < until]
        peak = round(max(rss), 1) if rss else None
        used = [mb for when, mb in disk or [] if at <= when < until]
        out.append(
            {
                "phase": name,
                "seconds": round(until - at, 2),
                "peak_rss_tree_mb": peak,
                "peak_disk_mb": round(max(used), 1) if used else None,
            }
        )
    return out


def _mb(n: float | None) -> str:
    return f"{n:,.0f}" if n is not None else "–"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def repeats_text(report: dict) -> str:
    """The repetitions per size: one number when all sizes had the same."""
    counts = report["repeats"]  # size -> repeats
    if len(set(counts.values())) == 1:
        return str(next(iter(counts.values())))
    return ", ".join(f"{int(size):,}: {count}" for size, count in counts.items())


def _parallelism_lines(figures: dict[str, Any] | None) -> list[str]:
    """The machine's own speedup for two CPU-bound processes (`machine_parallelism.py`), before and after."""
    if not figures:
        return []
    text = "; ".join(
        f"{when}: " + ", ".join(f"{name} {f['speedup']:.2f}x" for name, f in figures[when].items())
        for when in ("before", "after")
    )
    return [
        "- two CPU-bound processes at once against one (`benchmarks/machine_parallelism.py`: a pure-Python loop "
        f"and a tiktoken loop, medians of 5; 2.00x on two free cores), {text}: two workers cannot beat this"
    ]


def markdown(report: dict[str, Any]) -> str:
    m, git = report["machine"], report["git"]
    lines = [
        "# Scaling: the full pipeline at growing sizes (issue 6)",
        "",
        "Written by `benchmarks/bench_scale.py` (method in its docstring and in `benchmarks/README.md`). "
        f"Sizes: {', '.join(f'{s:,}' for s in report['sizes'])}; repeats: {repeats_text(report)} (medians).",
        "",
        f"- curate measured: {report['curate_measured']}"
        + (" (curate/ had uncommitted changes: not measured, the snapshot is HEAD)" if git["curate_dir_dirty"] else ""),
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Python {m['python']}, {m['platform']}",
        f"- load average (1, 5, 15 min) before: {report['load_average']['before']}, "
        f"after: {report['load_average']['after']}",
        f"- versions: {report['versions']}",
        *_parallelism_lines(report.get("machine_parallelism")),
        "",
        "Pipeline (`scale.toml`, written beside the data): normalize, exact_dedup, cot_tag, reasoning_depth, "
        + (
            "minhash_dedup (prompt, template skeletons, 3 kept per cluster by reasoning_depth), "
            if report.get("dedup", "template") == "template"
            else "minhash_dedup (prompt, plain word 5-grams, `--dedup plain`), "
        )
        + "mixture of three "
        "`where` groups (cot 40%, other instructions 38%, pretraining replay 22% of tokens; natural size, "
        "1% validation), output parquet + megatron (chatml).",
        "",
        "## Inputs",
        "",
        "| records | files | MiB | by kind | pretraining | near-dup J (min / median / share >= 0.85) "
        "| cycled J sample (median / p99 / share >= 0.8) | generation s | generation peak RSS MB |",
        "|---:|---:|---:|---|---:|---|---|---:|---:|",
    ]
    for size in report["sizes"]:
        info = report["inputs"][str(size)]
        r = info["rates"]
        near, cyc = r["near_dup_jaccard"], r["cycled_jaccard_sample"]
        kinds = ", ".join(f"{k} {v:.1%}" for k, v in r["by_kind"].items())
        gen = report["generation"].get(str(size), {})
        lines.append(
            f"| {size:,} | {len(info['bytes'])} | {_mib(sum(info['bytes'].values()))} | {kinds} | {r['pretrain']:.1%} "
            f"| {near['min']} / {near['median']} / {near['share_ge_0_85']} "
            f"| {cyc['median']} / {cyc['p99']} / {cyc['share_ge_0_8']} "
            f"| {gen.get('wall_seconds', info.get('seconds', '–'))} | {gen.get('peak_rss_tree_mb', '–')} |"
        )
    lines += [
        "",
        "## Runs",
        "",
        "Wall = process start to exit; records/s = input records / wall; tree RSS = peak of the summed RSS of "
        "the driver and all its descendants (pool workers; for Ray: gcs_server, raylet, its workers), sampled "
        "every 0.1 s, the tree's members found every 1 s (shared pages, such as Ray's object store or a forked pool's "
        "copy-on-write pages, count once per process); tree PSS = the same with shared pages split between the "
        "processes (smaps_rollup, every 1 s); sampling costs about 2% of one core; largest "
        "process = max of the sampled largest process and the driver's own `ru_maxrss`.",
        "",
        "CPU s = user + system seconds of the driver and the processes it waited for (the pool workers; Ray's "
        "workers are reaped by the raylet and only partly counted); CPU s / wall s = cores in use on average. "
        "Tree CPU s = user + system seconds of every process seen in the tree (Ray's workers included), read "
        "from /proc every 1 s: each process's last second or less is missed, so it is a lower bound.",
        "",
        "Peak disk = the most bytes under the run's work dir, its output and the output's temporary folder "
        "(where the shards' scatter scratch lives), summed every 1 s: scratch files a build deletes again are "
        "included, a peak shorter than a second may be missed, and Ray's own spill folder is not counted.",
        "",
        "| size | run | wall s | records/s | CPU s | tree CPU s | tree peak RSS MB | tree peak PSS MB "
        "| largest process MB | peak disk MB | run.json s per pass | records out | tokens out |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in report["summary"].values():
        if "wall_seconds" not in row:
            lines.append(
                f"| {row['size']:,} | {LABELS[row['run']]} | **failed** ({row['failed']} runs) | | | | | | | | | | |"
            )
            continue
        passes = ", ".join(f"{k} {v:.1f}" for k, v in row["timings"].items())
        t = row["totals"]
        lines.append(
            f"| {row['size']:,} | {LABELS[row['run']]} | {row['wall_seconds']:.1f} | {row['records_per_s']:,.0f} "
            f"| {row.get('cpu_seconds', 0.0):.1f} | {row.get('cpu_seconds_sampled', 0.0):.1f} "
            f"| {_mb(row['peak_rss_tree_mb'])} | {_mb(row['peak_pss_tree_mb'])} "
            f"| {_mb(row['peak_rss_process_mb'])} | {_mb(row.get('peak_disk_mb'))} "
            f"| {passes} "
            f"| {t['records_out']:,} | {t['tokens_out']:,} |"
        )
    lines += [
        "",
        "Phases (first run of each; from work-dir file times: maps = first to last batch file of a pass, "
        "barrier = last batch file to `decisions.parquet`, finish = mixture, sampling, shards, ledger, report): "
        "seconds / peak tree RSS MB / peak disk MB.",
        "",
    ]
    for row in report["summary"].values():
        if row.get("phases"):
            cells = "; ".join(
                f"{p['phase']} {p['seconds']:.1f} s / {_mb(p['peak_rss_tree_mb'])} / {_mb(p.get('peak_disk_mb'))}"
                for p in row["phases"]
            )
            lines.append(f"- {row['size']:,} {row['run']}: {cells}")
    lines += ["", "## Targets", ""]
    for t in report["targets"]:
        value = t.get("value", t.get("value_mb", ""))
        lines.append(f"- **{t['status']}** {t['target']}" + (f": {value}" if value != "" else ""))
    lines += [
        "",
        "## Ledger against the planted kinds",
        "",
        "Share of each kind of `truth.parquet` by ledger status and stage (first run of the size; `mixture` "
        "drops are `not_sampled`, `ingest` quarantines are real records with an empty answer).",
        "",
    ]
    seen = set()
    for row in report["summary"].values():
        if not row.get("truth_check") or row["size"] in seen:
            continue
        seen.add(row["size"])
        lines.append(f"- {row['size']:,} ({row['run']}):")
        for kind, shares in row["truth_check"].items():
            detail = ", ".join(f"{k} {v:.1%}" for k, v in shares.items() if k != "records")
            lines.append(f"  - {kind} ({shares['records']:,}): {detail}")
    lines += ["", "## Same output across runs", ""]
    for size, ident in report["identity"].items():
        if ident["identical"] is None:
            lines.append(f"- {int(size):,}: fewer than two successful runs ({', '.join(ident['compared'])})")
        else:
            verdict = "byte-identical" if ident["identical"] else f"**differ**: {', '.join(ident['differing_files'])}"
            lines.append(f"- {int(size):,}: {', '.join(ident['compared'])}: {ident['files']} files, {verdict}")
    lines += [
        "",
        "## Disk",
        "",
        "Work dir per pass folder (`du`, lz4 parquet batch files) and the output, after the first run of each "
        "kind; per million input records in the last column.",
        "",
        "| size | run | pass | steps | batches | MiB | MiB per 1M records |",
        "|---:|---|---|---|---:|---:|---:|",
    ]
    for row in report["summary"].values():
        if "disk" not in row:
            continue
        per = 1_000_000 / row["size"]
        d = row["disk"]
        for p in d["passes"]:
            lines.append(
                f"| {row['size']:,} | {row['run']} | {p['pass']} | {p['label']} | {p['batches']} | {_mib(p['bytes'])} "
                f"| {_mib(p['bytes'] * per)} |"
            )
        lines.append(
            f"| {row['size']:,} | {row['run']} | work dir total | | | {_mib(d['work_bytes'])} "
            f"| {_mib(d['work_bytes'] * per)} |"
        )
        parts = ", ".join(f"{k} {_mib(v)}" for k, v in d["output_parts"].items())
        lines.append(
            f"| {row['size']:,} | {row['run']} | output ({parts}) | | | {_mib(d['output_bytes'])} "
            f"| {_mib(d['output_bytes'] * per)} |"
        )
    lines += ["", "## Process trees", ""]
    for size, by_run in report["runs"].items():
        for run, reps in by_run.items():
            r = reps[0]
            outside = ", ".join(r["ray_processes_outside_tree"]) or "none"
            lines.append(
                f"- {int(size):,} {run}: up to {r['max_processes_in_tree']} processes in the tree "
                f"({', '.join(r['process_names_in_tree'])}); largest: {r['largest_process_name']}; Ray processes "
                f"started during the run outside the tree: {outside}"
            )
    failed = [(s, run, r) for s, by in report["runs"].items() for run, reps in by.items() for r in reps if r["rc"]]
    if failed:
        lines += ["", "## Failed runs", ""]
        for size, run, r in failed:
            lines += [f"- {int(size):,} {run}: exit code {r['rc']}", "", "```", r["error"][-1500:], "```"]
    return "\n".join(lines) + "\n"
