"""`build`: run a validated config end to end and write the output folder atomically."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from curate import __version__
from curate.assemble import output_plan, read_kept, write_shards
from curate.config import Config, leave_out
from curate.cores import available_cores
from curate.dir_swap import remove_tree, replace_dir
from curate.diversity.mixture import mixture_diversity
from curate.errors import ConfigError, CurateError, FatalError, os_error_code
from curate.executor import (
    DONE,
    REMOVED_SCHEMA,
    BarrierTasks,
    Pass,
    batch_files,
    chain_keys,
    ingest_batch,
    is_done,
    largest_first,
    mark_done,
    remove_partial_files,
    rerun_batch,
    run_barrier,
    split_passes,
    unusable_files,
)
from curate.executors import Executor, make_executor
from curate.formats import finish_formats
from curate.ingest.convert import SourceSpec
from curate.ingest.files import local_file
from curate.ingest.scan_record import load_scan, save_scan
from curate.ingest.scan_stream import ScanStream
from curate.ingest.source import Cuts, iter_raw_batches, spec_for
from curate.ingest.spans import ScanTask, file_size, scan_file
from curate.ledger import LEDGER_COLUMNS, build_ledger
from curate.manifest import build_manifest, decontamination_counts, other_files_checksums
from curate.mixture import MixturePlan, compile_mixture, mixture_columns, split_order
from curate.output import write_json, write_quarantine
from curate.progress import Progress
from curate.report import write_report
from curate.stages.base import ERROR, Context
from curate.stages.runner import expand
from curate.workdir import BuildLock, input_key


@dataclass
class BuildResult:
    """What `curate.build` returns."""

    output: Path
    manifest: dict[str, Any]
    ledger: pl.DataFrame
    plan: MixturePlan
    run: dict[str, Any] = field(default_factory=dict)


def token_threads(executor: str, workers: int) -> int:
    """Tokenizer threads per batch: the cores a local worker has to itself (`available_cores`); one per Ray
    task (one CPU)."""
    return 1 if executor == "ray" else max(1, available_cores() // workers)


def default_work_dir(output: Path) -> Path:
    """`.curate/` beside the output folder."""
    return output.parent / ".curate"


@dataclass
class RunSetup:
    """What `build` and `plan` share before any data is read: the resolved output and work folders,
    the executor (kind and instance), the steps' context and the sources' read specs."""

    out: Path
    work: Path
    kind: str
    runner: Any
    ctx: Context
    specs: list[SourceSpec]


def prepare_run(
    config: Config,
    output: Path | None,
    work_dir: Path | None,
    workers: int,
    executor: str | None,
    address: str | None,
) -> RunSetup:
    """Check the run's options and folders and create (not start) its executor."""
    if workers < 1:
        raise ConfigError([f"workers: must be >= 1, got {workers}"])
    out = Path(output).resolve() if output else config.output_dir.resolve()
    work = Path(work_dir).resolve() if work_dir else default_work_dir(out)
    check_output_location(config, out, work)
    leave_out(config.sources, sorted(work.glob("pass-*")))  # a source's folder may hold the work dir
    kind = executor or config.pipeline.executor
    try:
        runner = make_executor(kind, workers, address, work, out.parent)
    except FatalError as exc:  # Ray not installed: say where the config asked for it
        if executor is not None or config.file is None:
            raise
        raise FatalError(f"{config.file}: pipeline.executor = {kind!r}: {exc}; or build with --executor local") from exc
    ctx = Context(config.pipeline.tokenizer, config.pipeline.seed, token_threads=token_threads(kind, workers))
    try:
        specs = [spec_for(src, i) for i, src in enumerate(config.sources)]
    except ConfigError as exc:
        raise ConfigError(exc.problems, file=config.file) from None
    return RunSetup(out, work, kind, runner, ctx, specs)


SPILL = "spill"  # pass 0's folder for the batch files the workers cut from inputs (`curate.ingest.spans`)
SCAN = "scan.json"  # pass 0's record of that scan (`curate.ingest.scan_record`), kept while pass 0 runs


def run_stages(
    config: Config, setup: RunSetup, bar: Progress, warnings: list[str]
) -> tuple[list[Pass], dict[str, float], list[str]]:
    """Run (or reuse from the work dir) every pass of the config's stages on `setup.runner`, which the
    caller has entered; return the passes, the seconds per pass and the names of the passes found
    cached. A trailing barrier's decisions are not applied here: they are joined on when the kept rows
    are read."""
    passes = split_passes(expand(config.stages))
    if len(passes) > 1 and not passes[-1].maps:
        passes.pop()
    chain_keys(passes, input_key(config, setup.specs, setup.ctx), setup.work)
    timings: dict[str, float] = {}
    cached: list[str] = []
    for number, p in enumerate(passes):
        t0 = time.perf_counter()
        previous = passes[number - 1] if number else None
        if _run_pass(number, p, previous, config, setup.specs, setup.ctx, setup.runner, bar, warnings):
            cached.append(p.folder.name)
        timings[f"pass_{number}"] = round(time.perf_counter() - t0, 3)
    return passes, timings, cached


def build(
    config: Config,
    output: Path | None = None,
    work_dir: Path | None = None,
    strict: bool = False,
    workers: int = 1,
    progress: bool = False,
    executor: str | None = None,
    address: str | None = None,
) -> BuildResult:
    """Build the config's mixture. `executor` (default: `pipeline.executor`) is "local" or "ray";
    `address` is the Ray cluster to connect to. Raises FatalError when the build cannot complete."""
    started = time.perf_counter()
    setup = prepare_run(config, output, work_dir, workers, executor, address)
    try:
        return _build(config, setup, strict, workers, progress, started)
    except CurateError:
        raise
    except Exception as exc:
        if not disk_full(exc):
            raise
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise FatalError(
            f"no space left on device ({message}). Free space on the disks of the work dir ({setup.work}) and "
            f"the output ({setup.out.parent}), or choose others (--work-dir, --output), and build again: the "
            "build resumes where it stopped"
        ) from exc


def disk_full(exc: BaseException) -> bool:
    """True for a write that failed for want of space (`os_error_code`: polars' ComputeError carries the
    code only in its text)."""
    return os_error_code(exc) == errno.ENOSPC


def _build(config: Config, setup: RunSetup, strict: bool, workers: int, progress: bool, started: float) -> BuildResult:
    """`build` once its run is set up (the lock taken here)."""
    out, work, kind = setup.out, setup.work, setup.kind
    with BuildLock(out, work), Progress(enabled=progress) as bar, setup.runner:
        _remove_leftovers(out)
        warnings: list[str] = []
        passes, timings, cached = run_stages(config, setup, bar, warnings)
        t0 = time.perf_counter()
        tasks = BarrierTasks.on(setup.runner) if setup.runner.parallelism > 1 else None

        def run_record(manifest: dict[str, Any]) -> dict[str, Any]:
            """`run.json`: written into the new output just before it is put in place (lock held)."""
            timings["finish"] = round(time.perf_counter() - t0, 3)
            return {
                "curate_version": __version__,
                "executor": kind,
                "workers": workers,
                "seconds": round(time.perf_counter() - started, 3),
                "timings": timings,
                "records_in": manifest["totals"]["records_in"],
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "peak_rss_children_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
                "work_dir": str(work),
                "cached_passes": cached,
            }

        return _finish(config, passes, out, strict, warnings, bar, tasks, setup.ctx.token_threads, run_record)


def _run_pass(
    number: int,
    p: Pass,
    previous: Pass | None,
    config: Config,
    specs: list[SourceSpec],
    ctx: Context,
    executor: Executor,
    bar: Progress,
    warnings: list[str],
) -> bool:
    """Run one pass (resuming a partial one); return True when it was already done (cached). A finished
    pass with files missing or damaged (`unusable_files`) is finished again: those files are removed
    and redone, and its barrier runs again; `bar` notes which."""
    if is_done(p.folder):
        unusable = unusable_files(p.folder, p.barrier is not None, previous is None)
        if not unusable:
            return True
        names = ", ".join(path.name for path in unusable[:3]) + (", ..." if len(unusable) > 3 else "")
        bar.note(f"pass {number}: {len(unusable)} file(s) missing or damaged in {p.folder} ({names}): redoing them")
        for path in unusable:
            path.unlink(missing_ok=True)
        (p.folder / DONE).unlink(missing_ok=True)
    p.folder.mkdir(parents=True, exist_ok=True)
    remove_partial_files(p.folder)
    names = ", ".join(s.stage_name for s in p.maps) or "-"
    if previous is None:
        cuts = _scan_once(config, executor, p.folder) if executor.parallelism > 1 else {}
        tasks: Iterator[Any] = _ingest_tasks(config, specs, p, ctx, warnings, cuts)
        task = bar.task(f"pass {number}: read + {names}", total=None, unit="batches")
        fn = ingest_batch
    else:
        sources = batch_files(previous.folder)
        decisions = previous.folder / "decisions.parquet" if previous.barrier else None
        barrier_name = previous.barrier.stage_name if previous.barrier else ""
        tasks = (
            (sources[i], decisions, barrier_name, p.maps, ctx, p.folder, i)
            for i in largest_first(sources)
            if not (p.folder / f"batch-{i:06d}.parquet").exists()
        )
        task = bar.task(f"pass {number}: {names}", total=len(sources), unit="batches")
        fn = rerun_batch
    for _ in executor.map(fn, tasks):
        bar.advance(task)
    shutil.rmtree(p.folder / SPILL, ignore_errors=True)  # the inputs' spilled batches, all read now
    (p.folder / SCAN).unlink(missing_ok=True)
    if p.barrier is not None:
        bar.note(f"pass {number}: {p.barrier.stage_name} (barrier)")
        run_barrier(p.barrier, p.folder, ctx, executor)
    if previous is None:
        (p.folder / "warnings.txt").write_text("".join(w + "\n" for w in warnings))
    mark_done(p.folder, len(batch_files(p.folder)))
    return False


def _scan_once(config: Config, executor: Executor, folder: Path) -> Cuts:
    """The workers' scan of the inputs (`scan_inputs`), recorded in pass 0's folder once every file is
    scanned; a resumed pass 0 reuses the record and the batch files it spilled, so its inputs are not cut
    again. With local workers the scan streams: a file's batches run as soon as its own scan is done,
    while later files are still being scanned. On Ray every file is scanned first (a pass's tasks go to
    Ray Data in windows of thousands, so there is nothing to overlap, and no dataset runs inside another)."""
    cuts = load_scan(folder / SCAN, config.sources)
    if cuts is not None:
        return cuts
    stream = scan_inputs(config, executor, folder / SPILL, lambda found: save_scan(folder / SCAN, found))
    return dict(stream) if getattr(executor, "on_ray", False) else stream


def scan_inputs(
    config: Config, executor: Executor, spill: Path, on_complete: Callable[[Cuts], None] | None = None
) -> ScanStream:
    """Batches of the input files, scanned by the workers themselves (see `curate.ingest.spans`):
    uncompressed JSON Lines are read by byte range, every other file is cut into batch files in
    `spill`; files a worker cannot see, or whose reader fails there, are left out (the driver reads them).
    The scans run as the result is read (`ScanStream`), in input order."""
    size, max_bytes = config.pipeline.batch_size, config.pipeline.batch_bytes
    tasks = [
        ScanTask(f, size, max_bytes, file_size(f), str(spill), number, src.txt_mode, src.split or None)
        for number, src in enumerate(config.sources)
        if src.data is None
        for f in src.files
    ]
    keys = [(t.source, t.path) for t in tasks]
    return ScanStream(keys, executor.map(scan_file, iter(tasks)), on_complete)


def _ingest_tasks(
    config: Config, specs: list[SourceSpec], p: Pass, ctx: Context, warnings: list[str], cuts: Cuts
) -> Iterator[Any]:
    size, max_bytes = config.pipeline.batch_size, config.pipeline.batch_bytes
    for batch in iter_raw_batches(config.sources, specs, config.base_dir, size, warnings, max_bytes, cuts):
        if not (p.folder / f"batch-{batch.index:06d}.parquet").exists():
            yield (batch, p.maps, ctx, p.folder)


def _finish(
    config: Config,
    passes: list[Pass],
    out: Path,
    strict: bool,
    warnings: list[str],
    bar: Progress,
    tasks: BarrierTasks | None,
    token_threads: int,
    run_record: Callable[[dict[str, Any]], dict[str, Any]],
) -> BuildResult:
    """Plan the mixture and write the output. Only narrow columns are held in memory; records stream,
    and the shards are written by `tasks` (the executor's workers) when given. `run_record(manifest)`
    gives the `run.json` written last into the new output, before it replaces the old one."""
    last = passes[-1]
    warnings[:] = [w for w in (passes[0].folder / "warnings.txt").read_text().splitlines() if w]
    removed = pl.concat(
        [pl.read_parquet(f, glob=False) for p in passes for f in sorted(p.folder.glob("removed-*.parquet"))]
        or [pl.DataFrame(schema=REMOVED_SCHEMA)],
        how="vertical",
    )
    files = batch_files(last.folder)
    decisions = last.folder / "decisions.parquet" if last.barrier else None
    barrier_name = last.barrier.stage_name if last.barrier else ""
    narrow, gone = read_kept(files, decisions, barrier_name, mixture_columns(config.mixture))
    removed = pl.concat([removed, gone], how="vertical")
    quarantined = removed.filter(pl.col(ERROR).is_not_null())
    if strict and (quarantined.height or warnings):
        first = quarantined.sort("_row").head(5).iter_rows(named=True)
        lines = [f"{r['_file']}:{r['_line']}: {r['_error']}" for r in first] + warnings[:5]
        raise FatalError(
            f"--strict: {quarantined.height} record(s) quarantined, {len(warnings)} warning(s); nothing written.\n  "
            + "\n  ".join(lines)
        )
    names = [s.name for s in config.sources]
    compiled = compile_mixture(narrow, config.mixture, names, config.pipeline.seed)
    plan, times = compiled.plan, compiled.times
    ledger, shared_ids = build_ledger(removed, narrow, times)
    warnings += shared_ids
    order = split_order(times, config.pipeline.seed, shuffle=config.mixture is not None)
    instances = output_plan(order, narrow, config.output)
    bar.note("writing output")
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        ids = ledger.select("_row", "id")
        shards = write_shards(
            files, decisions, barrier_name, instances, ids, tmp / "shards", config.output, tasks, token_threads
        )
        quarantine_files = write_quarantine(quarantined, tmp / "quarantine")
        stage_stats = _copy_artifacts(passes, tmp)
        # one chunk: polars writes a frame's chunks as they are, and how a query chunks its result can
        # depend on its threads (a lazy ledger made 12 chunks on 1 thread, 16 on 2: other bytes)
        public_ledger = ledger.sort("_row").select(LEDGER_COLUMNS).rechunk()
        public_ledger.write_parquet(tmp / "ledger.parquet", compression="zstd", statistics=True)
        manifest = build_manifest(
            config, plan, ledger, instances, shards, quarantine_files, warnings, groups=compiled.groups
        )
        manifest["stage_stats"] = {**stage_stats, **decontamination_counts(config, ledger)}
        manifest.update(mixture_diversity(config.stages, files, instances, config.pipeline.seed))
        manifest.update(finish_formats(tmp, config.output.formats, manifest["shards"]))  # hf, index files
        manifest["checksums"] = other_files_checksums(tmp, manifest["shards"])
        write_json(manifest, tmp / "manifest.json")
        write_report(tmp)  # report.html, from the files above
        run = run_record(manifest)
        write_json(run, tmp / "run.json")
        replace_dir(tmp, out)
    finally:
        remove_tree(tmp)
    return BuildResult(out, manifest, public_ledger, plan, run)


def _copy_artifacts(passes: list[Pass], out: Path) -> dict[str, Any]:
    """Copy barrier report files into the output; return their `<stage>.stats.json` figures by stage.

    A stage used more than once reports under its name the first time, then with `_2`, `_3`, ... after
    the name (`minhash_dedup_2` in the stats, `templates_2.jsonl`), so no report overwrites another."""
    stats: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for p in passes:
        for path in sorted((p.folder / "artifacts").glob("*")) if (p.folder / "artifacts").exists() else []:
            stem, dot, extension = path.name.partition(".")
            seen[path.name] = seen.get(path.name, 0) + 1
            stem += f"_{seen[path.name]}" if seen[path.name] > 1 else ""
            if path.name.endswith(".stats.json"):
                stats[stem] = json.loads(path.read_text())
            else:
                shutil.copyfile(path, out / f"{stem}{dot}{extension}")
    return stats


def check_output_location(config: Config, out: Path, work: Path) -> None:
    """Refuse outputs that would destroy something: a replaced output must be a previous curate output,
    and must not hold the config, an input or the work dir."""
    if out.exists() and not out.is_dir():
        raise FatalError(f"output {out} exists and is not a folder")
    for folder, what in ((out, "output"), (work, "work dir")):
        for parent in folder.parents:
            if parent.exists() and not parent.is_dir():
                raise FatalError(f"cannot create {what} {folder}: {parent} is a file")
    if work.exists() and not work.is_dir():
        raise FatalError(f"work dir {work} exists and is not a folder")
    protected = [(Path(config.file).resolve(), "the config file")] if config.file else []
    inputs = [(local_file(f), f) for src in config.sources for f in src.files]
    protected += [(local.resolve(), f"input {f}") for local, f in inputs if local is not None]
    protected.append((work, "the work dir"))
    for path, what in protected:
        if path == out or out in path.parents:
            raise FatalError(f"output {out} would contain {what}; choose an output folder of its own")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise FatalError(
            f"output {out} exists and is not a curate output (no manifest.json); curate replaces its "
            "output folder as a whole, so choose an empty or new folder"
        )


def _remove_leftovers(out: Path) -> None:
    """Temporary folders of builds that were killed before they could clean up (we hold the lock). A
    build killed between the two renames of `replace_dir` (where folders cannot be exchanged) left no
    output but the previous one as `.<out>.old-*`: that one is put back first, so a build that then
    fails leaves it in place."""
    mine = [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] if out.parent.is_dir() else []
    old = sorted((p for p in mine if p.name.startswith(f".{out.name}.old-")), key=lambda p: p.stat().st_mtime)
    if old and not out.exists():
        os.rename(old.pop(), out)
    for leftover in mine:  # names compared as text: an output called `o[1]` is no glob pattern
        if leftover.name.startswith(f".{out.name}.tmp-") or leftover in old:
            shutil.rmtree(leftover, ignore_errors=True)
