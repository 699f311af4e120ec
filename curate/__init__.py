"""curate: turn raw instruction data and pretraining text into a clean, weighted training mixture."""

__version__ = "0.1.0"

from curate import stages
from curate.api import Pipeline, build, read_source, stages_info, train_classifier, validate, verify
from curate.errors import ConfigError, CurateError, FatalError, RecordError

__all__ = [
    "ConfigError",
    "CurateError",
    "FatalError",
    "Pipeline",
    "RecordError",
    "__version__",
    "build",
    "read_source",
    "stages",
    "stages_info",
    "train_classifier",
    "validate",
    "verify",
]
