"""Executors: where the batch functions of a pass run.

An executor is a context manager with `map(fn, tasks)`, which yields `fn(task)` for every task in
task order while keeping a bounded number of tasks in flight (on Ray: in memory). `build` and
`plan` hand it the batch functions of `curate.executor` (`ingest_batch`, `rerun_batch`); those read
and write the work dir themselves, so completion markers, caching and resume work the same whichever
executor runs them.

- `local` (`LocalExecutor`): in the driver process, or a pool of spawned processes (`workers`).
- `ray` (`RayExecutor`, `pip install curate[ray]`): Ray Data `map_batches` over the tasks, on a local Ray
  or a cluster (`address`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from curate.errors import ConfigError
from curate.executor import LocalExecutor

ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = get_args(ExecutorName)


class Executor(Protocol):
    """What `build` and `plan` need from an executor."""

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...

    def map(self, fn: Callable[[Any], Any], tasks: Iterator[Any]) -> Iterator[Any]:
        """`fn(task)` for every task, in task order, with a bounded number in flight."""
        ...

    @property
    def parallelism(self) -> int:
        """How many tasks run at the same time."""
        ...

    on_ray: bool  # the tasks run on Ray (connected in this process), whose Ray Data shuffles barriers may use


def ray_installed() -> bool:
    """Whether `ray` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["ray"] is None
        return False


def check_executor(name: str, address: str | None) -> list[str]:
    """Problems with an executor choice (empty when valid)."""
    problems = []
    if name not in EXECUTORS:
        problems.append(f"executor: must be one of {', '.join(EXECUTORS)}, got {name!r}")
    elif address and name != "ray":
        problems.append(
            f"address: only the ray executor connects to a cluster (executor is {name!r}; add --executor ray)"
        )
    return problems


def make_executor(
    name: str,
    workers: int = 1,
    address: str | None = None,
    work_dir: Path | None = None,
    output_dir: Path | None = None,
) -> Executor:
    """The executor called `name`. For `ray`, `workers` > 1 sets the CPUs of a local Ray that curate
    starts itself (no `address`; default: every core), and `work_dir` and `output_dir` (where the
    output folder is written) are checked to be visible to the Ray workers. Raises ConfigError for an
    unknown name, FatalError when Ray is not installed."""
    problems = check_executor(name, address)
    if problems:
        raise ConfigError(problems)
    if name == "ray":
        from curate.executors.ray_executor import RayExecutor

        shared = tuple(p for p in (work_dir, output_dir) if p is not None)
        return RayExecutor(address=address, num_cpus=workers if workers > 1 else None, shared_dirs=shared)
    return LocalExecutor(workers)


__all__ = ["EXECUTORS", "Executor", "ExecutorName", "LocalExecutor", "check_executor", "make_executor", "ray_installed"]
