"""The Python API. Every CLI command calls the function of the same name here."""

from __future__ import annotations

import multiprocessing
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from curate.build import BuildResult
from curate.build import build as _build
from curate.classify.train import TrainResult, train_classifier  # noqa: F401 (the train-classifier command)
from curate.config import Config, check_stages, load_config, stage_dataclass_fields
from curate.errors import ConfigError, FatalError, RecordError
from curate.executor import SPAWNED_CALL
from curate.executors import ray_installed
from curate.ingest.convert import convert_batch
from curate.ingest.source import iter_raw_batches, iter_source_items, spec_for
from curate.params import type_name
from curate.planning import PlanResult
from curate.planning import plan as _plan
from curate.record import empty_records
from curate.results import BuildOutput, open_output
from curate.stages import STAGES, Context
from curate.stages.tokens import CountTokens
from curate.tokens import DEFAULT_ENCODING
from curate.verify import VerifyResult, verify  # noqa: F401 (the verify command)

ConfigLike = str | Path | dict[str, Any] | Config

_SAMPLE = 200


def _config(config: ConfigLike, base_dir: str | Path | None = None) -> Config:
    if isinstance(config, Config):
        return config
    return load_config(config, Path(base_dir) if base_dir else None)


def build(
    config: ConfigLike,
    *,
    output: str | Path | None = None,
    work_dir: str | Path | None = None,
    strict: bool = False,
    workers: int = 1,
    progress: bool = False,
    base_dir: str | Path | None = None,
    executor: str | None = None,
    address: str | None = None,
) -> BuildResult:
    """Build a mixture from a TOML path or a config dict; returns `manifest` (dict) and `ledger` (polars).
    `executor="ray"` (default: `pipeline.executor`) runs the batches on Ray, on the cluster at `address`
    or on a local Ray with `workers` CPUs (default: every core); the output is the same.

    >>> result = curate.build("pipelines/quickstart.toml")            # doctest: +SKIP
    >>> result.ledger.group_by("status").len()                        # doctest: +SKIP
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise FatalError(SPAWNED_CALL)
    cfg = _config(config, base_dir)
    return _build(
        cfg,
        Path(output) if output else None,
        Path(work_dir) if work_dir else None,
        strict=strict,
        workers=workers,
        progress=progress,
        executor=executor,
        address=address,
    )


def plan(
    config: ConfigLike,
    *,
    output: str | Path | None = None,
    work_dir: str | Path | None = None,
    workers: int = 1,
    progress: bool = False,
    base_dir: str | Path | None = None,
    executor: str | None = None,
    address: str | None = None,
) -> PlanResult:
    """Run the stages (reusing the build's work-dir cache) and plan the mixture without writing output:
    per source and group the tokens available, target, sampling rate and epochs; `problem` says why the
    plan is infeasible (None when it can be built).

    >>> result = curate.plan("pipelines/quickstart.toml")             # doctest: +SKIP
    >>> result.plan.max_feasible_tokens, result.problem               # doctest: +SKIP
    """
    cfg = _config(config, base_dir)
    out, work = (Path(output) if output else None), (Path(work_dir) if work_dir else None)
    return _plan(cfg, out, work, workers=workers, progress=progress, executor=executor, address=address)


@dataclass
class SourcePlan:
    """What `validate` found for one source."""

    name: str
    format: str
    files: list[str]
    records: int
    quarantined_in_sample: int
    tokens_estimate: int
    sampled: int


@dataclass
class ValidationReport:
    """The plan `curate validate` prints: config OK, inputs found, size estimates."""

    config: Config
    sources: list[SourcePlan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def validate(config: ConfigLike, *, base_dir: str | Path | None = None) -> ValidationReport:
    """Check the config and inputs; count records and estimate tokens from the first 200 of each source.

    Raises ConfigError (every problem at once) for an invalid config or an undetectable format.
    """
    cfg = _config(config, base_dir)
    report = ValidationReport(cfg)
    if cfg.pipeline.executor == "ray" and not ray_installed():
        report.warnings.append(
            "pipeline.executor = 'ray', but Ray is not installed: `pip install curate[ray]`, or build with "
            "--executor local"
        )
    for index, src in enumerate(cfg.sources):
        spec = spec_for(src, index)
        records = sum(sum(1 for _ in items) for _, _, items in iter_source_items(src))
        batches = iter_raw_batches([src], [spec], cfg.base_dir, _SAMPLE, report.warnings)
        first = next(batches, None)
        sampled, bad, tokens = 0, 0, 0
        if first is not None:
            good, quarantined = convert_batch(first)
            bad = quarantined.height
            sampled = good.height
            if sampled:
                tokens = int(CountTokens().apply(good, Context(cfg.pipeline.tokenizer))["n_tokens"].sum())
        per_record = tokens / sampled if sampled else 0
        report.sources.append(
            SourcePlan(
                src.name,
                spec.format,
                [str(f) for f in src.files] or ["<in-memory data>"],
                records,
                bad,
                round(per_record * records),
                sampled,
            )
        )
    return report


def read_source(
    path: str | Path | None = None,
    *,
    data: Any = None,
    format: str = "auto",
    name: str = "source",
    fields: dict[str, str] | None = None,
    text_field: str = "text",
    id_field: str = "",
    txt_mode: str = "blocks",
    tokenizer: str = DEFAULT_ENCODING,
    strict: bool = False,
    base_dir: str | Path | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pl.DataFrame:
    """Canonical records of one source as a polars DataFrame (with `n_tokens`).

    `path` is a file, folder or glob, or an fsspec URL (its file system built with `storage_options`,
    as a source's in TOML); or pass `data`, a `datasets.Dataset` or polars DataFrame.
    Records that cannot be read are skipped (the build quarantines them); with `strict=True` the first
    one raises RecordError naming its file, line and reason.
    """
    if path is None and data is None:
        raise ConfigError(["read_source: give a path (file, folder or glob) or data (a DataFrame or Dataset)"])
    table: dict[str, Any] = {"name": name, "format": format, "text_field": text_field, "txt_mode": txt_mode}
    if fields:
        table["fields"] = fields
    if id_field:
        table["id_field"] = id_field
    if storage_options:
        table["storage_options"] = storage_options
    table["path" if data is None else "data"] = str(path) if data is None else data
    cfg = load_config(
        {"pipeline": {"name": "read", "tokenizer": tokenizer}, "sources": [table]},
        base_dir=Path(base_dir or Path.cwd()),
    )
    src = cfg.sources[0]
    spec = spec_for(src, 0)
    frames = []
    for batch in iter_raw_batches([src], [spec], cfg.base_dir, cfg.pipeline.batch_size, []):
        good, bad = convert_batch(batch)
        if strict and bad.height:
            row = bad.row(0, named=True)
            raise RecordError(f"{row['_file']}:{row['_line']}: {row['_error']}")
        frames.append(good)
    records = pl.concat(frames) if frames else empty_records()
    records = CountTokens().apply(records, Context(tokenizer))
    return records.drop("_row")


def stages_info() -> list[dict[str, Any]]:
    """Every stage with its documentation and parameters (type, default, help)."""
    out = []
    for name, cls in STAGES.items():
        hints = typing.get_type_hints(cls)
        params = []
        for f in stage_dataclass_fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default
            params.append(
                {
                    "name": f.name,
                    "type": type_name(hints[f.name]),
                    "default": default,
                    "doc": f.metadata.get("doc", ""),
                }
            )
        out.append(
            {
                "name": name,
                "doc": (cls.__doc__ or "").strip(),
                "params": params,
                "reads": _declared(cls.reads, "columns named in its parameters"),
                "writes": _declared(cls.writes, "columns named in its parameters"),
                "drops_rows": cls.drops_rows,
            }
        )
    return out


def _declared(columns: object, dynamic: str) -> list[str]:
    """A stage class's declared columns; stages whose columns depend on parameters declare a property."""
    return list(columns) if isinstance(columns, tuple) else [f"({dynamic})"]


class Pipeline:
    """A pipeline in Python: load from TOML or a dict, edit `stages`, `run()`.

    >>> p = Pipeline.from_toml("pipelines/quickstart.toml")            # doctest: +SKIP
    >>> p.stages.append(curate.stages.Language(keep=["en"]))          # doctest: +SKIP
    >>> result = p.run(output="out/edited")                           # doctest: +SKIP
    """

    def __init__(self, config: Config):
        self.config = config

    @classmethod
    def from_toml(cls, path: str | Path) -> Pipeline:
        return cls(load_config(path))

    @classmethod
    def from_dict(cls, table: dict[str, Any], base_dir: str | Path | None = None) -> Pipeline:
        return cls(load_config(table, Path(base_dir) if base_dir else None))

    @property
    def stages(self) -> list:
        return self.config.stages

    def validate(self) -> ValidationReport:
        return validate(self.config)

    def run(self, **options: Any) -> BuildResult:
        """Validate the (possibly edited) stages, then build; options as for `curate.build` (output,
        work_dir, strict, workers, progress, executor, address)."""
        problems = check_stages(self.config.stages)
        if problems:
            raise ConfigError(problems, file=self.config.file)
        for stage in self.config.stages:
            stage.bind(self.config.base_dir)
        return build(self.config, **options)

    def to_toml(self, path: str | Path | None = None) -> str:
        """The pipeline as mixture.toml text, with the stages as they are now (edited in Python or not);
        written to `path` when given. Relative paths stay relative to the original config's folder.
        `Pipeline.from_toml` of the written file gives the same config (same `config.sha256`)."""
        from curate.config_toml import config_toml

        text = config_toml(self.config)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


def open(output: str | Path) -> BuildOutput:  # curate.open (shadows the builtin here on purpose)
    """A build output folder for notebooks: `.manifest`, lazy `.records` and `.ledger`, `.templates`,
    `.explain(id)`, `.to_hf()`.

    >>> out = curate.open("pipelines/out/quickstart")                 # doctest: +SKIP
    >>> out.records.group_by("source").len().collect()                # doctest: +SKIP
    """
    return open_output(output)


def report(output: str | Path) -> Path:
    """(Re)write `report.html` into a build output folder; returns its path."""
    from curate.report import write_report

    return write_report(output)
