"""Writing a validated config back to mixture.toml (`Pipeline.to_toml`), so that a pipeline edited in
Python round-trips: loading the text gives the same configuration (the same `Config.sha256`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import tomli_w

from curate.config import Config
from curate.errors import ConfigError


def section_table(obj: Any, written: dict[str, Any] | None = None) -> dict[str, Any]:
    """A config dataclass as a TOML table: its public fields, with their current values; fields equal
    to their default are left out unless the config file gave them (`written`, so the config hash is
    kept); None is left out (TOML has no null)."""
    written = written if isinstance(written, dict) else {}
    table: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.name.startswith("_"):
            continue
        value = getattr(obj, f.name)
        if f.name in written and value is not None:
            table[f.name] = plain(value)
            continue
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if value is None or value == default:
            continue
        table[f.name] = plain(value)
    return table


def plain(value: Any) -> Any:
    """Dataclasses, tuples and paths as TOML-writable values; None inside lists and tables left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return section_table(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value if v is not None]
    if isinstance(value, Path):
        return str(value)
    return value


def config_table(config: Config) -> dict[str, Any]:
    """The whole config as a TOML document (dict). Raises ConfigError for in-memory sources."""
    in_memory = [f"sources[{i}]" for i, s in enumerate(config.sources) if s.data is not None]
    if in_memory:
        raise ConfigError(
            [f"{w}: in-memory data (a DataFrame or Dataset) cannot be written to TOML" for w in in_memory]
        )
    raw = config.raw
    raw_sources = raw.get("sources") or []
    doc: dict[str, Any] = {
        "pipeline": section_table(config.pipeline, raw.get("pipeline")),
        "sources": [
            section_table(s, raw_sources[i] if i < len(raw_sources) else None) for i, s in enumerate(config.sources)
        ],
    }
    if config.stages:
        doc["stages"] = [plain(s.to_table()) for s in config.stages]
    if config.mixture is not None:
        doc["mixture"] = section_table(config.mixture, raw.get("mixture"))
    output = section_table(config.output, raw.get("output"))
    if output:
        doc["output"] = output
    return doc


def config_toml(config: Config) -> str:
    """The config as mixture.toml text."""
    return tomli_w.dumps(config_table(config))
