"""`curate plan`: run the stages (reusing the build's work-dir cache) and compute the mixture plan
without writing any output: per source, group and cell the tokens available, target, sampling rate
and epochs, and whether the plan is feasible."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.assemble import read_kept
from curate.build import prepare_run, run_stages
from curate.config import Config
from curate.executor import batch_files
from curate.mixture import MixturePlan, compile_mixture, infeasibility, mixture_columns
from curate.progress import Progress
from curate.workdir import BuildLock


@dataclass
class PlanResult:
    """What `curate.plan` returns: the plan, and why it cannot be built (None when it can)."""

    config: Config
    plan: MixturePlan
    problem: str | None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable plan (`curate plan --json`); sampling rate = target / available tokens."""
        table = self.plan.to_dict()
        for line in [*table["sources"], *table.get("groups", []), *table.get("cells", [])]:
            available = line["available_tokens"]
            line["sampling_rate"] = round(line["target_tokens"] / available, 6) if available else None
        return {
            "pipeline": self.config.pipeline.name,
            "weighted": self.plan.weighted,
            "feasible": self.problem is None,
            "problem": self.problem,
            **table,
            "warnings": self.warnings,
        }


def plan(
    config: Config,
    output: Path | None = None,
    work_dir: Path | None = None,
    workers: int = 1,
    progress: bool = False,
    executor: str | None = None,
    address: str | None = None,
) -> PlanResult:
    """Run the config's stages (cached in the work dir, as `build` does, on the same executors) and plan
    its mixture. Writes nothing to the output folder. Raises FatalError for overlapping groups or
    ungrouped records."""
    setup = prepare_run(config, output, work_dir, workers, executor, address)
    with BuildLock(setup.out, setup.work), Progress(enabled=progress) as bar, setup.runner:
        warnings: list[str] = []
        passes, _, _ = run_stages(config, setup, bar, warnings)
        last = passes[-1]
        warnings = [w for w in (passes[0].folder / "warnings.txt").read_text().splitlines() if w]
        decisions = last.folder / "decisions.parquet" if last.barrier else None
        barrier_name = last.barrier.stage_name if last.barrier else ""
        rows, _ = read_kept(batch_files(last.folder), decisions, barrier_name, mixture_columns(config.mixture))
    names = [s.name for s in config.sources]
    compiled = compile_mixture(rows, config.mixture, names, config.pipeline.seed, plan_only=True)
    problem = infeasibility(compiled.plan) if config.mixture is not None else None
    return PlanResult(config, compiled.plan, problem, warnings)
