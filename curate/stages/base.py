"""The `Stage` abstraction.

A stage is a dataclass whose fields are its TOML parameters. It declares the columns it reads and
writes and expands into one or more *steps*:

- a `MapStep` transforms one batch at a time (streamable, runs in worker processes);
- a `BarrierStep` needs all rows at once; it sees a lazy frame of the columns it reads over every kept
  row and returns a decision table keyed by `_row` (drop reasons and/or new columns), which is joined
  back onto the rows in the next streaming pass.

A simple map stage is its own single step. Multi-pass algorithms (exact dedup: hash, then group) are one
user-facing stage whose `steps()` returns several.

Rows are dropped or quarantined only by marking them: a step sets `_drop` (a reason, e.g.
`too_few_tokens`) or `_error` (a record-level problem, e.g. `empty_after_normalize`). The executor moves
marked rows to the ledger; nothing disappears without a reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import polars as pl

from curate.tokens import DEFAULT_ENCODING

DROP = "_drop"
ERROR = "_error"


@dataclass(frozen=True)
class Context:
    """What steps may need besides their parameters: the pipeline's tokenizer and seed, and (for a
    barrier) a folder for report files that are copied into the output (e.g. `templates.jsonl`) and
    one for intermediate files on the work dir's storage (`scratch`)."""

    tokenizer: str = DEFAULT_ENCODING
    seed: int = 0
    token_threads: int = 8
    artifacts: Path | None = None
    scratch: Path | None = None  # a barrier's intermediate files (deleted after it)


class Step:
    """One executable unit of a stage (see `MapStep`, `BarrierStep`)."""

    stage_name: str = ""
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        """What makes this step's result differ: its class and parameters."""
        fields = dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}
        return f"{type(self).__qualname__}{sorted(fields.items())!r}"


class MapStep(Step):
    """Batch in, batch out. May add columns, rewrite content, or mark rows in `_drop` / `_error`."""

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        raise NotImplementedError


class BarrierStep(Step):
    """Needs every row. Returns a table keyed by `_row` with `_drop` and/or new columns.

    Rows missing from the decision table are kept unchanged (new columns become null).
    """

    def decide(self, rows: pl.LazyFrame, ctx: Context) -> pl.DataFrame:
        raise NotImplementedError

    def decide_in_tasks(self, rows: pl.LazyFrame, ctx: Context, files: list[Path], tasks: Tasks) -> pl.DataFrame:
        """`decide`, with the work that splits into independent pieces run as `tasks` (worker processes,
        Ray nodes), each piece reading what it needs from `files`, the pass's batch files (and writing
        intermediate files into `ctx.scratch`). Must return exactly what `decide` returns, whatever
        `tasks.parallelism` is. The default runs `decide` here."""
        return self.decide(rows, ctx)


class Tasks(Protocol):
    """Where a barrier's pieces run: `run(fn, tasks)` is `[fn(t) for t in tasks]`, possibly in parallel
    (`fn` a module-level function, tasks picklable); `parallelism` is how many run at once. `on_ray`:
    they run on a Ray cluster, so a barrier may also use Ray Data's shuffles (connected in this process)."""

    parallelism: int
    on_ray: bool

    def run(self, fn: Callable[[Any], Any], tasks: list[Any]) -> list[Any]: ...


@dataclass
class Stage:
    """Base class of user-facing stages. Subclasses are dataclasses whose fields are TOML parameters."""

    name: ClassVar[str]
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    drops_rows: ClassVar[bool] = False

    def problems(self, where: str) -> list[str]:
        """Checks across parameters (types are checked before construction). Empty when valid."""
        return []

    def pipeline_problems(self, where: str, available: set[str]) -> list[str]:
        """Checks that need the pipeline around the stage: `available` holds the columns that exist when
        it runs (canonical columns plus what earlier stages write). Empty when valid."""
        return []

    def output_columns(self) -> tuple[str, ...]:
        """The columns this stage adds; `writes` unless a parameter names them."""
        return self.writes

    def bind(self, base: Path) -> None:
        """Called by the config loader with the config file's folder, before `problems` (for stages
        whose parameters name files)."""

    def steps(self) -> list[Step]:
        """The map/barrier steps this stage expands into (a map stage is its own single step)."""
        if isinstance(self, Step):
            return [self]
        raise NotImplementedError(f"{type(self).__name__} must define steps()")

    def process(self, df: pl.DataFrame, ctx: Context | None = None) -> pl.DataFrame:
        """Run the stage on an in-memory frame (notebook use): returns the kept rows with new columns.

        Dropped and quarantined rows are removed; use `apply_with_reasons` to see them.
        """
        out = self.apply_with_reasons(df, ctx)
        keep = pl.col(DROP).is_null() & pl.col(ERROR).is_null()
        internal = [c for c in out.columns if c.startswith("_") and c not in df.columns]
        return out.filter(keep).drop(internal)

    def apply_with_reasons(self, df: pl.DataFrame, ctx: Context | None = None) -> pl.DataFrame:
        """Run every step on an in-memory frame, keeping all rows with `_drop`/`_error` filled in (and
        `_stage`, the step that removed a row). `n_tokens` is recounted when the stage changed text."""
        from curate.stages.runner import run_steps_in_memory

        return run_steps_in_memory(self.steps(), df, ctx or Context())

    def to_table(self) -> dict:
        """The TOML table that recreates this stage (`use` plus non-default parameters)."""
        table = {"use": self.name}
        for f in dataclasses.fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
            )
            if value != default:
                table[f.name] = value
        return table


def mark(df: pl.DataFrame, column: str, reason: pl.Expr) -> pl.DataFrame:
    """Set `column` (`_drop` or `_error`) to `reason` where it is still null (the first reason wins)."""
    if column not in df.columns:
        return df.with_columns(reason.cast(pl.String).alias(column))
    return df.with_columns(pl.coalesce(pl.col(column), reason.cast(pl.String)).alias(column))
