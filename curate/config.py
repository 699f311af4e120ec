"""Parsing and validating `mixture.toml` — the one place config is checked, for CLI and API alike.

`load_config` reads a TOML file (or takes a dict), checks every section, and raises one `ConfigError`
listing every problem with its location (`sources[1].path: ...`) before any data is read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from curate.errors import ConfigError
from curate.executors import ExecutorName
from curate.ingest.files import DATA_SUFFIXES, InputFile, is_hf_dataset_dir, local_file, resolve_paths, split_suffix
from curate.ingest.formats import Format
from curate.ingest.readers import TxtMode
from curate.ingest.remote import RemoteError, encode_options, is_url, misspelled_options
from curate.mixture.section import MixtureSection, check_mixture
from curate.params import below_minimum, check_params, did_you_mean, param
from curate.record import RECORD_COLUMNS
from curate.render import render_problems
from curate.stages import STAGES, Stage
from curate.tokens import DEFAULT_ENCODING, check_encoding_name

SOURCE_NAME = re.compile(r"^[a-z0-9_-]+$")
OutputFormat = Literal["jsonl", "jsonl.zst", "parquet", "hf", "megatron", "tokens", "mds"]
MaskMode = Literal["assistant", "all"]


@dataclass
class PipelineSection:
    """`[pipeline]`: name, seed, output folder and tokenizer."""

    name: str = param(doc="pipeline name, used in the default output folder")
    seed: int = param(0, "seed for every random choice (mixture sampling, shuffling)")
    output: str = param("", "output folder, relative to the TOML file's folder (default out/<name>)")
    tokenizer: str = param(DEFAULT_ENCODING, "tiktoken encoding used for n_tokens")
    batch_size: int = param(5000, "records per batch at most (memory per worker grows with it)")
    batch_bytes: int = param(16_000_000, "input bytes per batch at most (a batch ends once it reaches this)")
    executor: ExecutorName = param(
        "local", "where batches run: local processes, or ray (a Ray cluster; `pip install curate[ray]`)"
    )


@dataclass
class SourceConfig:
    """`[[sources]]`: where records come from and how to read them."""

    name: str = param(doc="unique source name, [a-z0-9_-]+")
    path: str = param("", "a file, a folder or a glob (relative to the TOML file's folder)")
    format: Format = param("auto", "record format; auto detects it from the first record")
    fields: dict[str, str] = param(
        factory=dict, doc="prompt_response: keys for prompt, response and system, e.g. {prompt = 'question'}"
    )
    text_field: str = param("text", "text format: the key holding the document")
    id_field: str = param("", "key holding the source's own record id (default: hash of source and content)")
    txt_mode: TxtMode = param("blocks", ".txt files: one document per blank-line block, or per file")
    split: str = param("", "HF DatasetDict folders: the split to read (default: the first)")
    storage_options: dict[str, Any] = param(
        factory=dict,
        doc="fsspec URLs: keyword arguments of the file system, e.g. {endpoint_url = 'http://minio:9000'} "
        "or {anon = true} (keep credentials in the environment: this file is usually committed)",
        in_repr=False,
    )
    # From the Python API only: an in-memory datasets.Dataset or polars DataFrame instead of `path`.
    _data: Any = field(default=None, repr=False, compare=False)
    _files: list[Path] = field(default_factory=list, repr=False, compare=False)

    @property
    def data(self) -> Any:
        """The in-memory dataset given through the API, if any."""
        return self._data

    @property
    def files(self) -> list[Path]:
        """The input files `path` matched (filled in by validation)."""
        return self._files


@dataclass
class OutputSection:
    """`[output]`: shard formats and sizes."""

    formats: list[OutputFormat] = param(factory=lambda: ["jsonl.zst", "parquet"], doc="shard formats")
    shard_max_records: int = param(100_000, "records per shard at most")
    shard_max_tokens: int | None = param(None, "tokens per shard at most (a record never spans shards)")
    zstd_level: int = param(3, "compression level of .zst shards (1-19)")
    render: str = param(
        "messages",
        "instruction records: messages (keep the conversation), chatml, llama3, alpaca, or a custom "
        "template with {role} and {content} slots applied per message",
    )
    mask: MaskMode = param("assistant", "tokenized formats: train on assistant tokens only, or on all tokens")
    _tokenizer: str = field(default=DEFAULT_ENCODING, repr=False, compare=False)

    @property
    def tokenizer(self) -> str:
        """The pipeline's tiktoken encoding (set by load_config), used by the tokenized formats."""
        return self._tokenizer


@dataclass
class Config:
    """A validated pipeline configuration."""

    pipeline: PipelineSection
    sources: list[SourceConfig]
    stages: list[Stage]
    mixture: MixtureSection | None
    output: OutputSection
    base_dir: Path
    file: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def output_dir(self) -> Path:
        out = Path(self.pipeline.output or f"out/{self.pipeline.name}").expanduser()
        return out if out.is_absolute() else (self.base_dir / out)

    @property
    def sha256(self) -> str:
        """Hash of the configuration (stable across key order and formatting); stages edited in Python
        after loading count as they are now."""
        raw = {**self.raw, "stages": [s.to_table() for s in self.stages]}
        if isinstance(raw.get("pipeline"), dict):  # where and in what batches it runs: the same build
            raw["pipeline"] = {k: v for k, v in raw["pipeline"].items() if k not in RUN_ONLY}
        return hashlib.sha256(canonical_json(raw).encode()).hexdigest()


#: `[pipeline]` settings that change how a build runs, not what it writes (the outputs are byte-identical
#: whatever they are), left out of `Config.sha256` so that the manifests are identical too.
RUN_ONLY = ("executor", "batch_size", "batch_bytes")


SECTIONS = ("pipeline", "sources", "stages", "mixture", "output")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant white space (objects it cannot encode become repr)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def load_config(source: str | Path | dict[str, Any], base_dir: Path | None = None) -> Config:
    """Parse and validate a config from a TOML path or a dict. Raises ConfigError with every problem."""
    file = None
    if isinstance(source, dict):
        raw = source
        base = Path(base_dir or Path.cwd())
    else:
        path = Path(source)
        file = str(path)
        if not path.is_file():
            raise ConfigError([f"config file not found: {path}"])
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"not valid TOML: {exc}"], file=file) from exc
        base = Path(base_dir or path.resolve().parent)
    problems: list[str] = []
    for key in raw:
        if key not in SECTIONS:
            problems.append(f"{key}: unknown section{did_you_mean(key, SECTIONS)}")
    pipeline = _section(PipelineSection, raw, "pipeline", problems, required=True)
    sources = _sources(raw.get("sources"), base, problems)
    stages = _stages(raw.get("stages", []), base, problems)
    mixture = _section(MixtureSection, raw, "mixture", problems)
    output = _section(OutputSection, raw, "output", problems) or OutputSection()
    if pipeline:
        problems += _check_pipeline(pipeline)
    if pipeline and sources:
        out = Path(pipeline.output or f"out/{pipeline.name}").expanduser()
        out = (out if out.is_absolute() else base / out).resolve()
        if out != base.resolve() and out not in base.resolve().parents:
            leave_out(sources, [out])  # a folder source never reads curate's own output
    if mixture and sources is not None:
        problems += _check_mixture(mixture, [s.name for s in sources], stages)
    problems += _check_output(output)
    if pipeline:
        output._tokenizer = pipeline.tokenizer
    if problems or pipeline is None or sources is None:
        raise ConfigError(problems, file=file)
    serializable = {k: v for k, v in raw.items() if k != "sources"}
    serializable["sources"] = [{k: v for k, v in s.items() if k != "data"} for s in raw["sources"]]
    return Config(pipeline, sources, stages, mixture, output, base, file, serializable)


def _section(cls: type, raw: dict, key: str, problems: list[str], required: bool = False) -> Any:
    table = raw.get(key)
    if table is None:
        if required:
            problems.append(f"{key}: required section [{key}] is missing")
        return None
    if not isinstance(table, dict):
        problems.append(f"{key}: must be a table [{key}], got {type(table).__name__}")
        return None
    kwargs, found = check_params(cls, table, key)
    problems += found
    if any("required key is missing" in p for p in found):
        return None
    return cls(**kwargs)  # built from the valid keys, so cross-checks still report their problems


def _sources(table: Any, base: Path, problems: list[str]) -> list[SourceConfig] | None:
    if not table:
        problems.append("sources: at least one [[sources]] table is required")
        return None
    if not isinstance(table, list) or not all(isinstance(t, dict) for t in table):
        problems.append("sources: must be an array of tables [[sources]]")
        return None
    sources, seen = [], set()
    for i, entry in enumerate(table):
        where = f"sources[{i}]"
        kwargs, found = check_params(SourceConfig, entry, where, skip=("data",))
        problems += found
        if "name" not in kwargs:
            continue
        src = SourceConfig(**kwargs, _data=entry.get("data"))
        problems += _check_source(src, where, base, seen)
        seen.add(src.name)
        sources.append(src)
    return sources


def leave_out(sources: list[SourceConfig], folders: list[Path]) -> None:
    """Drop from the sources' files those inside any of `folders`: curate's own output or work-dir
    passes, which a folder or glob source around them would otherwise read back as input next time."""
    if not folders:
        return
    resolved = {f.resolve() for f in folders}
    for src in sources:
        src._files = [f for f in src._files if not _inside(f, resolved)]


def _inside(file: InputFile, folders: set[Path]) -> bool:
    """Whether an input (a local path or a `file://` URL) lies inside one of `folders` (resolved)."""
    local = local_file(file)
    return local is not None and any(parent in folders for parent in local.resolve().parents)


def _check_source(src: SourceConfig, where: str, base: Path, seen: set[str]) -> list[str]:
    out = []
    if not SOURCE_NAME.match(src.name):
        out.append(f"{where}.name: {src.name!r} must match [a-z0-9_-]+ (lower case, digits, _ and -)")
    if src.name in seen:
        out.append(f"{where}.name: {src.name!r} is used by an earlier source; names must be unique")
    if src.format == "prompt_response":
        unknown = set(src.fields) - {"prompt", "response", "system"}
        if unknown:
            out.append(f"{where}.fields: unknown keys {sorted(unknown)}; use prompt, response, system")
        if not {"prompt", "response"} <= set(src.fields):
            out.append(f"{where}.fields: prompt_response needs fields = {{prompt = '...', response = '...'}}")
    elif src.fields:
        out.append(f"{where}.fields: only used with format = 'prompt_response'")
    if src.data is not None:
        if src.path:
            out.append(f"{where}: give either path or data, not both")
        elif not (hasattr(src.data, "iter_slices") or hasattr(src.data, "features")):
            out.append(f"{where}.data: must be a polars DataFrame or a datasets.Dataset")
        return out
    if not src.path:
        return [*out, f"{where}.path: required key is missing (a file, a folder or a glob)"]
    if src.storage_options and not is_url(src.path):
        return [*out, f"{where}.storage_options: only for fsspec URLs (s3://...), and path {src.path!r} is local"]
    try:
        encode_options(src.storage_options)
    except (TypeError, ValueError) as exc:  # a TOML date or time: the options travel as JSON
        return [*out, f"{where}.storage_options: values must be strings, numbers, booleans, lists or tables ({exc})"]
    typos = [
        f"{where}.storage_options.{key}: not an option of {cls}, did you mean '{name}'"
        for key, name, cls in misspelled_options(src.path, src.storage_options)
    ]
    if typos:  # before the listing, which would run with the options as misspelled
        return [*out, *typos]
    try:
        files = resolve_paths(src.path, base, storage_options=src.storage_options)
    except RemoteError as exc:  # unknown protocol, missing backend package, refused options, failed listing
        return [*out, f"{where}.path: {exc}"]
    if not files:
        others = resolve_paths(src.path, base, storage_options=src.storage_options, readable_only=False)
        kind = "no file matches" if any(c in src.path for c in "*?[") else "not found:"
        relative = "" if is_url(src.path) else f" (relative to {base})"
        if others:  # a folder or glob of files curate does not read (.tsv, .jsonl.bz2 ...)
            names = ", ".join(repr(f.name) for f in others[:3])
            out.append(
                f"{where}.path: no file curate reads in {src.path!r}{relative}: {len(others)} other file(s), "
                f"such as {names}; it reads {', '.join(DATA_SUFFIXES)} (optionally .gz/.zst)"
            )
        else:
            out.append(f"{where}.path: {kind} {src.path!r}{relative}{_percent_hint(src.path, base)}")
    for f in files:
        if not is_hf_dataset_dir(f) and not split_suffix(f)[0]:
            supported = ", ".join(DATA_SUFFIXES)
            folder = str(f).startswith(("http://", "https://"))  # an HTTP page is a file to fsspec, a folder too
            hint = "; a folder on an HTTP server is named with a '/' at its end" if folder else ""
            out.append(f"{where}.path: {f.name!r} is not a supported file ({supported}, optionally .gz/.zst){hint}")
    src._files = files
    return out


def _percent_hint(path: str, base: Path) -> str:
    """For a `file://` URL with percent-escapes (as `Path.as_uri()` writes them) that names nothing but
    whose unescaped form names something: how to write it (fsspec reads a file URL's path literally)."""
    if not path.startswith("file://") or "%" not in path or "::" in path:
        return ""
    plain = urllib.parse.unquote(path)
    try:
        if plain == path or not resolve_paths(plain, base, readable_only=False):
            return ""
    except RemoteError:  # the unescaped path is no better: the message as it is
        return ""
    return f"; file URLs are read as written, with no percent-escapes: write {plain!r}"


def _stages(table: Any, base: Path, problems: list[str]) -> list[Stage]:
    if not isinstance(table, list):
        problems.append("stages: must be an array of tables [[stages]]")
        return []
    stages, wheres = [], []
    for i, entry in enumerate(table):
        where = f"stages[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table with a 'use' key")
            continue
        name = entry.get("use")
        if not isinstance(name, str):
            problems.append(f"{where}.use: required key naming the stage (one of {', '.join(STAGES)})")
            continue
        if name not in STAGES:
            problems.append(f"{where}.use: unknown stage {name!r}{did_you_mean(name, STAGES)}; see `curate stages`")
            continue
        kwargs, found = check_params(STAGES[name], entry, where, skip=("use",))
        problems += found
        if any("required key is missing" in p for p in found):
            continue
        stage = STAGES[name](**kwargs)
        stage.bind(base)
        stages.append(stage)
        wheres.append(where)
    problems += check_stages(stages, wheres)
    return stages


def check_stages(stages: list[Stage], wheres: list[str] | None = None) -> list[str]:
    """Problems of a stage list: each stage's own checks, and columns ranked by before any stage
    writes them. Used by the loader and again by `Pipeline.run` after edits in Python."""
    problems: list[str] = []
    available = set(RECORD_COLUMNS)
    for where, stage in zip(wheres or [f"stages[{i}]" for i in range(len(stages))], stages, strict=True):
        problems += stage.problems(where)
        rank_by = getattr(stage, "rank_by", "")
        if rank_by and rank_by not in available:
            problems.append(
                f"{where}.rank_by: no column {rank_by!r} at this point{did_you_mean(rank_by, available)}; "
                f"columns: {', '.join(sorted(available))}"
            )
        problems += stage.pipeline_problems(where, available)
        available.update(stage.output_columns())
    return problems


def _check_pipeline(p: PipelineSection) -> list[str]:
    out = check_encoding_name(p.tokenizer, "pipeline.tokenizer")
    if not p.name.strip():
        out.append("pipeline.name: must not be empty")
    return out + below_minimum("pipeline", p, seed=0, batch_size=1, batch_bytes=1)


def _check_mixture(m: MixtureSection, names: list[str], stages: list[Stage]) -> list[str]:
    """`[mixture]` problems; group conditions may read canonical columns and those any stage adds."""
    columns = set(RECORD_COLUMNS).union(*(stage.output_columns() for stage in stages))
    return check_mixture(m, names, columns)


def _check_output(o: OutputSection) -> list[str]:
    out = []
    if not o.formats:
        out.append(
            "output.formats: must name at least one format (jsonl, jsonl.zst, parquet, hf, megatron, tokens, mds)"
        )
    if len(set(o.formats)) != len(o.formats):
        out.append("output.formats: lists a format twice")
    out += below_minimum("output", o, shard_max_records=1, shard_max_tokens=1)
    if not 1 <= o.zstd_level <= 19:
        out.append(f"output.zstd_level: must be between 1 and 19, got {o.zstd_level}")
    out += render_problems(o.render, "output.render")
    return out


def stage_dataclass_fields(cls: type) -> list[dataclasses.Field]:
    """The TOML parameters of a stage class (for `curate stages`)."""
    return [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]
