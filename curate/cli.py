"""The `curate` command: a thin click shell over `curate.api`.

Each command parses its options, calls the API function of the same name, and prints the result.
`CurateError`s become a clean message and an exit code (1 build failed, 2 config or usage error).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from curate import __version__, api
from curate.errors import CurateError

# Pipes and CI logs get a fixed width, so tables are not cut down to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def say(text: str) -> None:
    """Print plain text: brackets in paths and messages are not rich markup."""
    out.print(text, markup=False, highlight=False)


def user_errors(fn: Callable) -> Callable:
    """Turn CurateError into a message on stderr and its exit code, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CurateError as exc:
            err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:  # click would print only "Aborted!"
            resumes = fn.__name__ in ("build", "plan")  # the passes finished so far are kept in the work dir
            err.print("stopped (Ctrl-C)" + ("; run the same command again to resume" if resumes else ""))
            sys.exit(130)

    return wrapper


def executor_options(fn: Callable) -> Callable:
    """`--executor` and `--address` (build and plan)."""
    fn = click.option(
        "--address", help="Ray cluster to connect to (HEAD:6379, or auto on a node of it); default: a local Ray."
    )(fn)
    return click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        help="Where batches run (overrides pipeline.executor): local processes, or Ray (pip install curate[ray]).",
    )(fn)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Example: curate build pipelines/quickstart.toml",
)
@click.version_option(__version__, prog_name="curate")
def main() -> None:
    """Turn raw instruction data and pretraining text into a clean, weighted training mixture."""


@main.command(epilog="Example: curate build pipelines/quickstart.toml --workers 2")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Output folder (overrides pipeline.output).")
@click.option(
    "--work-dir", type=click.Path(file_okay=False), help="Cache folder (default: .curate/ beside the output)."
)
@click.option("--strict", is_flag=True, help="Fail instead of quarantining unreadable records.")
@click.option(
    "--workers",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes (with --executor ray and no --address: CPUs of the local Ray; 1 = every core).",
)
@executor_options
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
@user_errors
def build(
    config: str,
    output: str | None,
    work_dir: str | None,
    strict: bool,
    workers: int,
    executor: str | None,
    address: str | None,
    progress: bool | None,
) -> None:
    """Build the mixture described by CONFIG (a mixture.toml) into its output folder.

    Writes shards, manifest.json, ledger.parquet, quarantine/ and run.json. An unchanged re-run reuses
    cached stage results; a killed build resumes where it stopped.
    """
    show = sys.stderr.isatty() if progress is None else progress
    result = api.build(
        config,
        output=output,
        work_dir=work_dir,
        strict=strict,
        workers=workers,
        progress=show,
        executor=executor,
        address=address,
    )
    m = result.manifest
    table = Table(title=f"mixture: {m['pipeline']}")
    for col in (
        "source",
        "records in",
        "kept",
        "dropped",
        "quarantined",
        "tokens available",
        "target",
        "realized",
        "epochs",
    ):
        table.add_column(col, justify="left" if col == "source" else "right")
    for name, s in m["sources"].items():
        table.add_row(
            name,
            f"{s['records_in']:,}",
            f"{s['records_kept']:,}",
            f"{s['records_dropped']:,}",
            f"{s['records_quarantined']:,}",
            f"{s['tokens_available']:,}",
            f"{s['target_share']:.2%}",
            f"{s['realized_share']:.2%}",
            f"{s['epochs']:.2f}",
        )
    out.print(table)
    _print_groups(m["mixture"])
    totals = m["totals"]
    out.print(
        f"wrote {totals['records_out']:,} records, {totals['tokens_out']:,} tokens in "
        f"{sum(s['format'] == m['shards'][0]['format'] for s in m['shards']) if m['shards'] else 0} shard(s) "
        f"to {result.output} "
        f"({result.run['seconds']:.1f} s)"
    )
    _print_templates(result.output / "templates.jsonl")
    for warning in m["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    if totals["records_quarantined"]:
        err.print(
            f"[yellow]{totals['records_quarantined']:,} record(s) quarantined[/yellow]: "
            f"see {result.output}/quarantine/",
            highlight=False,
        )


def _group_definition(definition: dict[str, Any]) -> str:
    if definition.get("rest"):
        return "rest"
    if definition.get("where"):
        return f"where {definition['where']}"
    return ", ".join(definition.get("sources", []))


def _print_groups(mixture: dict[str, Any] | None) -> None:
    """The mixture's groups (target vs realized shares) and its validation split, when it has them."""
    if not mixture:
        return
    if mixture.get("groups"):
        table = Table(title="mixture groups")
        for col in ("group", "records", "tokens available", "target", "realized", "epochs", "definition"):
            table.add_column(col, justify="left" if col in ("group", "definition") else "right")
        for g in mixture["groups"]:
            table.add_row(
                g["group"],
                f"{g['records']:,}",
                f"{g['available_tokens']:,}",
                f"{g['target_share']:.2%}",
                f"{g['realized_share']:.2%}",
                f"{g['epochs']:.2f}",
                escape(_group_definition(g["definition"])),
            )
        out.print(table)
    if mixture.get("validation"):
        v = mixture["validation"]
        say(f"validation split: {v['records']:,} records, {v['tokens']:,} tokens (no record or cluster in train)")


def _print_templates(path: Path, top: int = 10) -> None:
    """The largest near-duplicate / template clusters a `minhash_dedup` stage found."""
    if not path.exists():
        return
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:top]]
    if not lines:
        return
    table = Table(title=f"largest clusters (all in {path.name})")
    for col in ("size", "kept", "sources", "skeleton"):
        table.add_column(col, justify="right" if col in ("size", "kept") else "left", overflow="ellipsis")
    for t in lines:
        sources = ", ".join(f"{k} {v}" for k, v in t["sources"].items())
        table.add_row(str(t["size"]), str(t["kept"]), sources, t["skeleton"][:80])
    out.print(table)


@main.command(name="plan", epilog="Example: curate plan pipelines/quickstart.toml --json")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Output folder whose work dir to use.")
@click.option(
    "--work-dir", type=click.Path(file_okay=False), help="Cache folder (default: .curate/ beside the output)."
)
@click.option("--workers", "-j", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@executor_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
@user_errors
def plan_command(
    config: str,
    output: str | None,
    work_dir: str | None,
    workers: int,
    executor: str | None,
    address: str | None,
    as_json: bool,
    progress: bool | None,
) -> None:
    """Run CONFIG's stages and print its mixture plan without writing any output.

    Per source and group: tokens available, target tokens, sampling rate (target / available) and
    epochs. Stage results are cached in the work dir, so a following `curate build` reuses them. Exit
    code 1 when the mixture is infeasible (the message names the largest feasible total_tokens).
    """
    show = sys.stderr.isatty() if progress is None else progress
    result = api.plan(
        config, output=output, work_dir=work_dir, workers=workers, progress=show, executor=executor, address=address
    )
    data = result.to_dict()
    if as_json:
        say(json.dumps(data, indent=2, sort_keys=True))
    else:
        _print_plan(data)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    if result.problem:
        err.print(f"[bold red]error:[/bold red] {escape(result.problem)}", highlight=False, soft_wrap=True)
        sys.exit(1)


def _print_plan(data: dict[str, Any]) -> None:
    tables = [("source", data["sources"])]
    if data.get("groups"):
        tables += [("group", data["groups"]), ("cell", data["cells"])]
    for kind, lines in tables:
        table = Table(title=f"plan: {data['pipeline']} ({kind}s)")
        for col in (kind, "records", "tokens available", "share", "target tokens", "sampling rate", "epochs", "max"):
            table.add_column(col, justify="left" if col == kind else "right")
        for line in lines:
            name = f"{line['group']}/{line['source']}" if kind == "cell" else line[kind]
            rate = line["sampling_rate"]
            table.add_row(
                name,
                f"{line['records']:,}",
                f"{line['available_tokens']:,}",
                f"{line.get('share', line.get('weight', 0.0)):.2%}",
                f"{line['target_tokens']:,}",
                "-" if rate is None else f"{rate:.3f}",
                f"{line['epochs']:.2f}",
                str(line.get("max_epochs", "")),
            )
        out.print(table)
    if data["weighted"]:
        source, group = data["binding_source"], data.get("binding_group")
        bound = f"source {source!r}" if source else f"group {group!r} (no tokens)" if group else "-"
        bound += f" in group {group!r}" if source and group else ""
        total, largest = data["total_tokens"], data["max_feasible_tokens"]
        say(f"total_tokens: {total:,}; largest feasible: {largest:,} (bound by {bound})")
    else:
        say(f"no [mixture]: every kept record once, {data['total_tokens']:,} tokens")
    if data.get("validation_tokens"):
        say(f"validation split: {data['validation_tokens']:,} tokens held out before the training mixture")


@main.command(epilog="Example: curate validate pipelines/quickstart.toml")
@click.argument("config", type=click.Path(dir_okay=False))
@user_errors
def validate(config: str) -> None:
    """Check CONFIG and its inputs without building; print the plan.

    Lists each source's format, matched files, record count and a token estimate (from its first 200
    records). Every config problem is reported at once; exit code 2 if there are any.
    """
    report = api.validate(config)
    cfg = report.config
    say(f"config OK: {cfg.file or '<dict>'} → output {cfg.output_dir}")
    table = Table(title="sources")
    for col in ("source", "format", "files", "records", "est. tokens", "bad in sample"):
        table.add_column(col, justify="left" if col in ("source", "format") else "right")
    for s in report.sources:
        table.add_row(
            s.name,
            s.format,
            str(len(s.files)),
            f"{s.records:,}",
            f"~{s.tokens_estimate:,}",
            str(s.quarantined_in_sample),
        )
    out.print(table)
    steps = " → ".join(stage.name for stage in cfg.stages) or "(no stages)"
    for s in report.sources:
        shown = s.files[:5] + ([f"... and {len(s.files) - 5} more"] if len(s.files) > 5 else [])
        say(f"{s.name}: " + ", ".join(shown))
    say(f"stages: {steps}")
    if cfg.mixture:
        weights = ", ".join(f"{k} {v:.0%}" for k, v in cfg.mixture.weights.items()) or ", ".join(
            f"group {k} {g.get('weight', 0):.0%}" for k, g in cfg.mixture.groups.items()
        )
        total = f"{cfg.mixture.total_tokens:,} tokens" if cfg.mixture.total_tokens else "largest feasible total"
        say(f"mixture: {weights}; {total}")
    say(f"output: {', '.join(cfg.output.formats)}; ≤ {cfg.output.shard_max_records:,} records per shard")
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


@main.command(name="stages", epilog="Example: curate stages exact_dedup")
@click.argument("name", required=False)
@user_errors
def stages_command(name: str | None) -> None:
    """List every stage with its parameters, or show one stage (NAME) in full."""
    infos = api.stages_info()
    if name:
        infos = [i for i in infos if i["name"] == name]
        if not infos:
            known = ", ".join(i["name"] for i in api.stages_info())
            raise click.UsageError(f"unknown stage {name!r}; stages: {known}")
    for info in infos:
        doc = info["doc"] if name else info["doc"].split("\n\n")[0]
        out.print(
            f"[bold]{info['name']}[/bold]  reads {', '.join(info['reads']) or '-'}; "
            f"writes {', '.join(info['writes']) or '-'}; {'drops rows' if info['drops_rows'] else 'drops no rows'}"
        )
        say(f"  {doc}")
        for p in info["params"]:
            say(f"    {p['name']} ({p['type']}, default {p['default']!r}): {p['doc']}")
        out.print()


@main.command(
    name="train-classifier",
    epilog="Example: curate train-classifier --positive cot.jsonl --negative plain/ --label reasoning "
    "--out models/reasoning.bin --quantize",
)
@click.option(
    "--positive",
    "-p",
    "positive",
    metavar="SRC",
    multiple=True,
    required=True,
    help="Source of the positive class (repeatable).",
)
@click.option(
    "--negative",
    "-n",
    "negative",
    metavar="SRC",
    multiple=True,
    required=True,
    help="Source of the negative class (repeatable).",
)
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Model file to write.")
@click.option("--quantize", is_flag=True, help="Write a small quantized model: OUT with suffix .ftz.")
@click.option(
    "--field",
    type=click.Choice(["response", "prompt", "all"]),
    default="response",
    show_default=True,
    help="What the model reads: assistant turns, system+user turns, or all (pretrain records: text).",
)
@click.option("--config", "-c", type=click.Path(dir_okay=False), help="A mixture.toml whose source names SRC may be.")
@click.option("--label", default="positive", show_default=True, help="Label of the positive class.")
@click.option("--negative-label", default="negative", show_default=True, help="Label of the negative class.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the held-out split and of fastText.")
@click.option("--epoch", type=int, default=10, show_default=True, help="fastText epochs.")
@click.option("--lr", type=float, default=0.1, show_default=True, help="fastText learning rate.")
@click.option("--wordNgrams", "word_ngrams", type=int, default=2, show_default=True, help="fastText word n-grams.")
@click.option("--dim", type=int, default=32, show_default=True, help="fastText vector size.")
@user_errors
def train_classifier(
    positive: tuple[str, ...],
    negative: tuple[str, ...],
    out: str,
    quantize: bool,
    field: str,
    config: str | None,
    label: str,
    negative_label: str,
    seed: int,
    epoch: int,
    lr: float,
    word_ngrams: int,
    dim: int,
) -> None:
    """Train a fastText classifier on records of the --positive and --negative sources.

    Each SRC is a file, folder or glob read like a source (format auto-detected) or, with --config, the
    name of a source in that mixture file. 10% of each class (seeded) is held out; precision, recall,
    F1 and ROC AUC on it are printed. Training is deterministic (one thread, --seed). Apply the model
    with the `fasttext_classifier` stage (model = "...", label = "...").
    """
    result = api.train_classifier(
        list(positive),
        list(negative),
        out,
        label=label,
        negative_label=negative_label,
        field=field,  # type: ignore[arg-type]
        config=config,
        quantize=quantize,
        seed=seed,
        epoch=epoch,
        lr=lr,
        word_ngrams=word_ngrams,
        dim=dim,
    )
    for src, n in result.sources.items():
        say(f"{src}: {n:,} texts")
    counts = ", ".join(f"{k} {v:,}" for k, v in result.train_counts.items())
    say(
        f"trained on {counts}"
        + (f"; {result.dropped_conflicts:,} texts in both classes left out" if result.dropped_conflicts else "")
    )
    if result.heldout_before_quantize:
        say(f"held out, before quantizing: {result.heldout_before_quantize.line()}")
    say(f"held out: {result.heldout.line()}")
    say(f"wrote {result.model} ({result.size_bytes / 1e6:.2f} MB); labels {', '.join(result.labels)}")


@main.command(epilog="Example: curate verify out/quickstart")
@click.argument("out", type=click.Path())
@user_errors
def verify(out: str) -> None:
    """Check the output folder OUT of a build against its manifest.json.

    Recomputes every shard file's sha256, record and token counts (reading each file back), the
    per-source records, tokens and realized shares, and the ledger's accounting. Prints every
    difference, then a summary. Exit code 0 when everything matches, 1 on any difference, 2 when OUT
    is not a curate output.
    """
    result = api.verify(out)
    for difference in result.differences:  # one line each, never wrapped (easy to grep)
        click.echo(difference)
    click.echo(result.summary())
    if not result.ok:
        sys.exit(1)


@main.command(epilog="Example: curate report pipelines/out/quickstart")
@click.argument("folder", metavar="OUT", type=click.Path(file_okay=False))
@user_errors
def report(folder: str) -> None:
    """Write report.html into the build output folder OUT (again).

    A self-contained page (inline SVG charts, no network): records in and out per source, the ledger
    funnel, near-duplicate clusters, score and tag distributions, diversity, the mixture, the shards.
    Every build writes it; run this after changing curate, or on an output from an older version.
    """
    say(f"wrote {api.report(folder)}")


@main.command(epilog='Example: curate inspect pipelines/out/quickstart --where "cot and n_tokens > 200" --sample 5')
@click.argument("folder", metavar="OUT", type=click.Path(file_okay=False))
@click.option("--source", "-s", help="Only records of this source.")
@click.option("--where", "-w", help="Only records matching this filter expression (over the shard columns).")
@click.option("--sample", "-n", type=click.IntRange(min=1), help="Show N records picked at random (see --seed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Records shown without --sample."
)
@click.option(
    "--cluster", "cluster_id", metavar="ID", help="Every member of a near-duplicate cluster, kept and dropped."
)
@click.option("--id", "record_id", metavar="ID", help="One record and every decision made about it.")
@user_errors
def inspect(
    folder: str,
    source: str | None,
    where: str | None,
    sample: int | None,
    seed: int,
    limit: int,
    cluster_id: str | None,
    record_id: str | None,
) -> None:
    """Look into the build output folder OUT: records, clusters, one record's history.

    Without options: the per-source summary and the shard columns. --source, --where and --sample
    select output records (combine them freely); --cluster ID lists a near-duplicate cluster's members
    (kept ones from the shards, dropped ones from the ledger); --id ID shows the record, its ledger row
    (kept, dropped or quarantined, by which stage and why, how many times sampled), every column the
    stages wrote and its cluster.
    """
    from curate import inspect as views

    output = api.open(folder)
    if record_id:
        shown = views.explain_views(views.explain(output, record_id))
    elif cluster_id:
        shown = views.cluster_views(views.cluster(output, cluster_id))
    elif source or where or sample:
        picked = views.select(output, source=source, where=where, sample=sample, seed=seed, limit=limit)
        what = " and ".join(x for x in (f"source {source}" if source else "", f"where {where}" if where else "") if x)
        shown = views.selection_views(
            picked, (f"sample of {sample}" if sample else "records") + (f", {what}" if what else "")
        )
    else:
        shown = views.summary_views(views.summary(output))
    for view in shown:
        out.print(view)


if __name__ == "__main__":
    main()
