"""curate: turn raw instruction data and pretraining text into a clean, weighted training mixture."""

__version__ = "0.1.0"

from curate import report, stages  # curate.report(out) writes report.html (a callable package)
from curate.api import Pipeline, build, plan, read_source, stages_info, train_classifier, validate, verify
from curate.errors import ConfigError, CurateError, FatalError, RecordError
from curate.results import open_output as open  # curate.open(out): the notebook API

__all__ = [
    "ConfigError",
    "CurateError",
    "FatalError",
    "Pipeline",
    "RecordError",
    "__version__",
    "build",
    "open",
    "plan",
    "read_source",
    "report",
    "stages",
    "stages_info",
    "train_classifier",
    "validate",
    "verify",
]
