"""The local executor: streams batches through map steps in worker processes, runs barrier steps.

The step list is cut at each barrier into *passes*. Pass 0 reads the inputs; pass k>0 re-reads the
batch files of pass k-1 with the decisions of barrier k-1 joined on. Every pass writes, per batch, the
kept rows (`batch-NNNNNN.parquet`) and the removed rows with their reasons (`removed-NNNNNN.parquet`)
into a work-dir folder named by a fingerprint of everything that determines it (inputs, steps,
tokenizer). A finished pass gets a `_DONE` marker; an unfinished one resumes batch by batch. Results
do not depend on the number of workers: batches are cut and numbered in input order by one rule,
whether the driver reads them or the workers cut and read them (`curate.ingest.spans`).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.dir_swap import remove_tree
from curate.errors import FatalError
from curate.ingest.convert import QUARANTINE_SCHEMA, RawBatch, convert_batch
from curate.ingest.spans import read_span
from curate.record import public_columns
from curate.stages.base import DROP, ERROR, BarrierStep, Context, MapStep, Step
from curate.stages.runner import join_decisions, split_marked, with_marks

REMOVED_SCHEMA = pl.Schema({**QUARANTINE_SCHEMA, "_stage": pl.String(), DROP: pl.String()})
DONE = "_DONE"


@dataclass
class Pass:
    """Map steps that run batch by batch, followed by an optional barrier step."""

    maps: list[MapStep]
    barrier: BarrierStep | None
    key: str = ""
    folder: Path = Path()


def split_passes(steps: Sequence[Step]) -> list[Pass]:
    """Cut the step list at barriers: [maps..., barrier], [maps..., barrier], ..., [maps...]."""
    passes, maps = [], []
    for step in steps:
        if isinstance(step, BarrierStep):
            passes.append(Pass(maps, step))
            maps = []
        else:
            maps.append(step)
    passes.append(Pass(maps, None))
    return passes


def chain_keys(passes: list[Pass], input_key: str, work_dir: Path) -> None:
    """Give each pass a key: a hash of the previous key and its steps, so caches are reused exactly."""
    key = input_key
    for p in passes:
        parts = [key, *(s.fingerprint() for s in p.maps), p.barrier.fingerprint() if p.barrier else ""]
        key = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        p.key = key
        p.folder = work_dir / f"pass-{key[:20]}"


# ---------------------------------------------------------------- work done in worker processes


def removed_rows(removed: pl.DataFrame, before: pl.DataFrame | None = None) -> pl.DataFrame:
    """Ledger columns of removed rows. A quarantined row keeps its record in `_raw`, as JSON of the
    record as the failing step received it (`before`), so the quarantine shows what went in."""
    if removed.is_empty():
        return pl.DataFrame(schema=REMOVED_SCHEMA)
    if "_raw" not in removed.columns:
        errors = removed.filter(pl.col(ERROR).is_not_null()).select("_row")
        source = (before if before is not None else removed).join(errors, on="_row", how="semi")
        as_json = source.select("_row", pl.struct(public_columns(source)).struct.json_encode().alias("_raw"))
        removed = removed.join(as_json, on="_row", how="left", maintain_order="left")
    return removed.select([pl.col(c).cast(t) for c, t in REMOVED_SCHEMA.items()])


def _run_maps(df: pl.DataFrame, steps: Sequence[MapStep], ctx: Context, removed: list[pl.DataFrame]) -> pl.DataFrame:
    for step in steps:  # empty frames go through too, so every batch file has the same columns
        before = df
        df = with_marks(step.apply(df, ctx))
        df, gone = split_marked(df, step.stage_name)
        removed.append(removed_rows(gone, before))
    return df.drop(DROP, ERROR, strict=False)


def _write_atomic(df: pl.DataFrame, path: Path) -> None:
    """Write a work-dir file (lz4: about twice as fast as zstd to write and read, for 30% more disk)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        df.write_parquet(tmp, compression="lz4", statistics=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_partial_files(folder: Path) -> None:
    """Remove the temporary files of writes a stopped build left unfinished (`_write_atomic`'s `.*.tmp`);
    called with the build's lock held, before a pass resumes."""
    for partial in folder.glob(".*.tmp"):
        partial.unlink(missing_ok=True)


def _worker_start(parent: int) -> None:
    """Runs first in each worker process: Ctrl-C is the driver's to handle (it stops the pool), and a
    worker whose driver died (killed) exits within a second instead of writing on without a lock."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="curate-parent-watch", daemon=True).start()


def _finish_batch(folder: Path, index: int, kept: pl.DataFrame, removed: list[pl.DataFrame]) -> dict[str, int]:
    gone = pl.concat(removed, how="vertical") if removed else pl.DataFrame(schema=REMOVED_SCHEMA)
    _write_atomic(gone, folder / f"removed-{index:06d}.parquet")
    _write_atomic(kept, folder / f"batch-{index:06d}.parquet")  # written last: marks the batch done
    return {"kept": kept.height, "removed": gone.height}


def ingest_batch(task: tuple[RawBatch, list[MapStep], Context, Path]) -> dict[str, int]:
    """Pass 0, one batch: convert raw items, run the map steps, write kept and removed rows."""
    batch, steps, ctx, folder = task
    if batch.span is not None:  # a batch this worker reads itself (a byte range, or a spilled batch file)
        lines, payloads = read_span(*batch.span)
        batch = replace(batch, lines=lines, payloads=payloads, span=None)
    records, quarantined = convert_batch(batch)
    removed = [
        removed_rows(quarantined.with_columns(pl.lit("ingest").alias("_stage"), pl.lit(None, pl.String).alias(DROP)))
    ]
    kept = _run_maps(records, steps, ctx, removed)
    stats = _finish_batch(folder, batch.index, kept, removed)
    stats["records"] = len(batch.payloads)
    return stats


def apply_decisions(df: pl.DataFrame, decisions: Path, stage_name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Join a barrier's decisions (for this frame's `_row` range) onto rows: (kept rows, removed rows)."""
    df = with_marks(df)
    if df.is_empty():
        return df, pl.DataFrame(schema=REMOVED_SCHEMA)
    low, high = df["_row"].min(), df["_row"].max()
    table = pl.scan_parquet(decisions, glob=False).filter(pl.col("_row").is_between(low, high)).collect()
    kept, gone = split_marked(with_marks(join_decisions(df, table)), stage_name)
    return kept, removed_rows(gone)


def rerun_batch(task: tuple[Path, Path | None, str, list[MapStep], Context, Path, int]) -> dict[str, int]:
    """Pass k>0, one batch: join the previous barrier's decisions, run the map steps, write."""
    source, decisions, barrier_name, steps, ctx, folder, index = task
    df = with_marks(pl.read_parquet(source, glob=False))
    removed: list[pl.DataFrame] = []
    if decisions is not None:
        df, gone = apply_decisions(df, decisions, barrier_name)
        removed.append(gone)
    kept = _run_maps(df, steps, ctx, removed)
    stats = _finish_batch(folder, index, kept, removed)
    stats["records"] = df.height
    return stats


# ---------------------------------------------------------------- orchestration in the main process


class LocalExecutor:
    """Runs batch functions in-process (`workers=1`) or in a pool of spawned processes, in order.

    A worker that dies (killed, out of memory, crashed in native code) fails the build with a
    FatalError instead of hanging it. Scripts that build with several workers need the usual
    `if __name__ == "__main__":` guard, as for any spawned process pool.
    """

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    @property
    def parallelism(self) -> int:
        """How many tasks run at the same time."""
        return self.workers

    on_ray = False  # the tasks run in local processes (no Ray Data shuffles)

    def __enter__(self) -> LocalExecutor:
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
                initargs=(os.getpid(),),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is None:
            return
        if exc[0] is not None and issubclass(exc[0], KeyboardInterrupt):  # type: ignore[arg-type]
            # stopped by the user: end the running tasks now rather than after them (a stopped build
            # resumes batch by batch; their unfinished writes are temporary files, removed on resume)
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=exc[0] is not None)
        self._pool = None

    def map(self, fn: Callable[[Any], Any], tasks: Iterator[Any]) -> Iterator[Any]:
        """Results in task order; at most 2×workers tasks in flight, so memory stays bounded."""
        if self._pool is None:
            for task in tasks:
                yield fn(task)
            return
        pending: deque = deque()
        try:
            for task in tasks:
                pending.append(self._pool.submit(fn, task))
                if len(pending) >= 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool as exc:
            raise FatalError(
                f"a worker process died ({exc}); the build stopped and can be resumed{_script_hint()}"
            ) from exc


#: What `curate.build` says when a spawned worker, importing the calling script again, reaches it.
SPAWNED_CALL = (
    "curate.build was called while a worker process started: the workers of a build with workers > 1 are "
    "spawned processes that import the calling script again, so a script must build under "
    '`if __name__ == "__main__":`'
)


def _script_hint() -> str:
    """For a build started by a script of the user's (not `curate` itself): why its workers may die at once."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    runs_the_cli = getattr(getattr(main, "main", None), "__module__", "") == "curate.cli"  # the `curate` script
    if getattr(main, "__file__", None) is None or runs_the_cli or (spec is not None and spec.name.startswith("curate")):
        return ""
    return (
        '. If the script calls curate.build outside `if __name__ == "__main__":`, put it there (the workers '
        "import the script)"
    )


def batch_files(folder: Path) -> list[Path]:
    """The kept-row files of a pass, in batch order."""
    return sorted(folder.glob("batch-*.parquet"))


def largest_first(paths: list[Path]) -> list[int]:
    """Indices of `paths` by size, largest first: tasks started in this order on a few workers end close
    together, instead of one big task running alone at the end (the order of the results does not
    matter: every task writes files named by its own index)."""
    sizes = [path.stat().st_size for path in paths]
    return sorted(range(len(paths)), key=lambda i: (-sizes[i], i))


@dataclass
class BarrierTasks:
    """`Tasks` for a barrier: on an entered executor, or in this process (`executor` None)."""

    executor: Any = None
    parallelism: int = 1
    on_ray: bool = False

    @classmethod
    def on(cls, executor: Any) -> BarrierTasks:
        """The tasks of an entered executor (None: in this process)."""
        return cls() if executor is None else cls(executor, executor.parallelism, getattr(executor, "on_ray", False))

    def run(self, fn: Callable[[Any], Any], tasks: list[Any]) -> list[Any]:
        if self.executor is None:
            return [fn(task) for task in tasks]
        return list(self.executor.map(fn, iter(tasks)))


def run_barrier(step: BarrierStep, folder: Path, ctx: Context, executor: Any = None) -> Path:
    """Run a barrier over every kept row of a pass; write its decision table sorted by `_row`.

    The step's independent pieces (`decide_in_tasks`) run on `executor` (entered) when given."""
    files = batch_files(folder)
    artifacts, scratch = folder / "artifacts", folder / "scratch"
    for path in (artifacts, scratch):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
    try:
        if files:
            rows = pl.scan_parquet(files, glob=False).select(list(dict.fromkeys(["_row", *step.reads])))
            tasks = BarrierTasks.on(executor)
            ctx = replace(ctx, artifacts=artifacts, scratch=scratch)
            decisions = step.decide_in_tasks(rows, ctx, files, tasks).sort("_row")
        else:
            decisions = pl.DataFrame(schema={"_row": pl.Int64(), DROP: pl.String()})
    finally:
        remove_tree(scratch)
    path = folder / "decisions.parquet"
    _write_atomic(decisions, path)
    return path


def mark_done(folder: Path, batches: int) -> None:
    """Write the completion marker of a pass (after its batches and barrier decisions): the batch count,
    then the size of each of its Parquet files, which `unusable_files` compares."""
    sizes = [f"{path.name} {path.stat().st_size}\n" for path in sorted(folder.glob("*.parquet"))]
    (folder / DONE).write_text(f"{batches}\n" + "".join(sizes))


def is_done(folder: Path) -> bool:
    """True when a pass finished before (its marker is there; `unusable_files` says if its files are)."""
    return (folder / DONE).exists()


def unusable_files(folder: Path, barrier: bool, first: bool) -> list[Path]:
    """The files of a finished pass, by its `_DONE` marker's batch count, that are missing or changed:
    of another size than the marker wrote down (cut short, overwritten), or, under a marker without sizes
    (an earlier curate's), with a Parquet footer that does not read. The marker itself when
    it holds no count. A finished pass is reused only when this is empty: its kept and removed rows are
    read by listing the folder, so a deleted batch file would lose its records without a word. Deleting
    them all redoes what they held."""
    marker = folder / DONE
    try:
        first_line, *lines = marker.read_text().splitlines()
        count = int(first_line)
        sizes = {name: int(size) for name, size in (line.rsplit(" ", 1) for line in lines)}
    except (OSError, ValueError):
        return [marker]
    expected = [folder / f"{kind}-{i:06d}.parquet" for i in range(count) for kind in ("removed", "batch")]
    expected += [folder / "decisions.parquet"] if barrier else []
    same = (lambda path: _same_size(path, sizes.get(path.name))) if sizes else _readable_parquet
    bad = [path for path in expected if not same(path)]
    # a batch is redone only where its kept rows are missing: a bad removed file takes its batch file along
    bad += [
        path.with_name("batch-" + path.name.removeprefix("removed-"))
        for path in bad
        if path.name.startswith("removed-")
    ]
    wanted = set(expected)
    extra = [path for path in folder.glob("*.parquet") if path not in wanted and path.name != "decisions.parquet"]
    bad += extra  # no file of this pass (a copy, a batch past the count): it would be read as one
    bad += [marker] if extra or (first and not (folder / "warnings.txt").is_file()) else []
    return bad


def _same_size(path: Path, size: int | None) -> bool:
    """True for a file of `size` bytes (False: missing, of another size, or not in the marker)."""
    try:
        return size is not None and path.stat().st_size == size
    except FileNotFoundError:
        return False


def _readable_parquet(path: Path) -> bool:
    """True for a Parquet file whose footer reads, False for one missing, cut short or not Parquet; a
    file that cannot be read for another reason (permissions, an I/O error of the disk) is a FatalError,
    not a file to redo."""
    try:
        pq.read_metadata(path)
    except FileNotFoundError:
        return False
    except (ValueError, pa.ArrowException):  # ArrowInvalid: no footer, an empty file
        return False
    except OSError as exc:
        raise FatalError(f"cannot read {path} in the work dir: {exc}") from exc
    return True
