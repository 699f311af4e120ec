"""Stages: the explicit table of every stage a pipeline can `use`, by name.

Each stage is a dataclass; its fields are the TOML parameters (see `curate stages`). Use them on a
DataFrame in a notebook with `curate.stages.Normalize().process(df)`.
"""

from __future__ import annotations

from curate.stages.base import Context, Stage
from curate.stages.cot_tag import CotTag
from curate.stages.decontaminate import Decontaminate
from curate.stages.diverse_select import DiverseSelect
from curate.stages.diversity import Diversity
from curate.stages.exact_dedup import ExactDedup
from curate.stages.fasttext_classifier import FasttextClassifier
from curate.stages.filter import Filter
from curate.stages.filter_length import FilterLength
from curate.stages.language import Language
from curate.stages.minhash_dedup import MinhashDedup
from curate.stages.normalize import Normalize
from curate.stages.reasoning_depth import ReasoningDepth

STAGES: dict[str, type[Stage]] = {
    "normalize": Normalize,
    "filter_length": FilterLength,
    "exact_dedup": ExactDedup,
    "language": Language,
    "minhash_dedup": MinhashDedup,
    "decontaminate": Decontaminate,
    "diversity": Diversity,
    "diverse_select": DiverseSelect,
    "cot_tag": CotTag,
    "fasttext_classifier": FasttextClassifier,
    "filter": Filter,
    "reasoning_depth": ReasoningDepth,
}

__all__ = [
    "STAGES",
    "Context",
    "CotTag",
    "Decontaminate",
    "DiverseSelect",
    "Diversity",
    "ExactDedup",
    "FasttextClassifier",
    "Filter",
    "FilterLength",
    "Language",
    "MinhashDedup",
    "Normalize",
    "ReasoningDepth",
    "Stage",
]
