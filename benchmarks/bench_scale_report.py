"""BENCH_SCALE.md from bench_scale.py's results (stdlib only)."""

from __future__ import annotations

from typing import Any

LABELS = {"w1": "local --workers 1", "w2": "local --workers 2", "ray": "ray, 2 CPUs (--executor ray --workers 2)"}


def _mb(n: float | None) -> str:
    return f"{n:,.0f}" if n is not None else "–"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def markdown(report: dict[str, Any]) -> str:
    m, git = report["machine"], report["git"]
    lines = [
        "# Scaling: the full pipeline at growing sizes (issue 6)",
        "",
        "Written by `benchmarks/bench_scale.py` (method in its docstring and in `benchmarks/README.md`). "
        f"Sizes: {', '.join(f'{s:,}' for s in report['sizes'])}; repeats: {report['repeats']} (medians).",
        "",
        f"- curate measured: {report['curate_measured']}"
        + (" (curate/ had uncommitted changes: not measured, the snapshot is HEAD)" if git["curate_dir_dirty"] else ""),
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Python {m['python']}, {m['platform']}",
        f"- load average (1, 5, 15 min) before: {report['load_average']['before']}, "
        f"after: {report['load_average']['after']}",
        f"- versions: {report['versions']}",
        "",
        "Pipeline (`scale.toml`, written beside the data): normalize, exact_dedup, cot_tag, reasoning_depth, "
        "minhash_dedup (prompt, template skeletons, 3 kept per cluster by reasoning_depth), mixture of three "
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
        "every 0.1 s; largest process = max of the sampled largest process and the driver's own `ru_maxrss`.",
        "",
        "| size | run | wall s | records/s | tree peak RSS MB | largest process MB | run.json s per pass "
        "| records out | tokens out |",
        "|---:|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in report["summary"].values():
        if "wall_seconds" not in row:
            lines.append(f"| {row['size']:,} | {LABELS[row['run']]} | **failed** ({row['failed']} runs) | | | | | | |")
            continue
        passes = ", ".join(f"{k} {v:.1f}" for k, v in row["timings"].items())
        t = row["totals"]
        lines.append(
            f"| {row['size']:,} | {LABELS[row['run']]} | {row['wall_seconds']:.1f} | {row['records_per_s']:,.0f} "
            f"| {_mb(row['peak_rss_tree_mb'])} | {_mb(row['peak_rss_process_mb'])} | {passes} "
            f"| {t['records_out']:,} | {t['tokens_out']:,} |"
        )
    lines += ["", "## Targets", ""]
    for t in report["targets"]:
        value = t.get("value", t.get("value_mb", ""))
        lines.append(f"- **{t['status']}** {t['target']}" + (f": {value}" if value != "" else ""))
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
        "| size | run | pass | steps (maps \\| barrier) | batches | MiB | MiB per 1M records |",
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
