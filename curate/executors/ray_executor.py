"""The Ray executor: the batch functions of a pass run as Ray tasks on a local Ray or a cluster.

Each task is one batch (`ingest_batch` / `rerun_batch` of `curate.executor`): it reads its input, runs
the map steps and writes its files into the work dir, exactly as in a local worker process, so the
output is byte-identical to the local executor's and a build that stops resumes batch by batch. The
work dir (and the output's parent folder: shards are written by tasks too) must therefore be on
storage that every Ray node sees under the same path (a shared filesystem on a cluster); `__enter__`
checks that with a probe file in each.

A task whose worker process dies (killed, out of memory, its node lost) is retried by Ray up to
`max_retries` times; an exception raised by curate's own code is never retried (it would fail the same
way again) and reaches the caller as it was raised. Ray reuses worker processes between tasks, so the
models that steps cache per process (fastText, tiktoken) load once per worker.

A barrier step that offers `parallel_work` (MinHash's band buckets) runs those tasks on the cluster
too and only their small results (the candidate pairs) come back to the driver, which combines them
(connected components, keep decisions). Other barriers and the final assembly (mixture plan,
shuffle, shards) run in the driver, as with the local executor.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from curate.errors import CurateError, FatalError

INSTALL_HINT = "the ray executor needs `pip install curate[ray]`"


def import_ray() -> ModuleType:
    """The `ray` module, or a FatalError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise FatalError(f"{INSTALL_HINT} ({exc})") from None
    return ray


def check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """Fail fast when a `host:port` cluster address does not answer (`ray.init` would wait for minutes)."""
    if not address or "://" in address or address == "auto" or ":" not in address:
        return  # `auto`, ray:// (Ray Client has its own timeout) and other forms are left to ray.init
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise FatalError(f"cannot reach the Ray cluster at {address}: {exc}") from None


def _read_probe(path: str) -> str:
    """Runs in a Ray worker: the text of the driver's probe file ('' when this node cannot see it)."""
    probe = Path(path)
    return probe.read_text() if probe.is_file() else ""


def _call(fn: Callable[[Any], Any], task: Any) -> Any:
    """The Ray task: one batch function call."""
    return fn(task)


class RayExecutor:
    """Runs batch functions as Ray tasks, results in task order, at most 2 tasks per cluster CPU in flight.

    Connects to `address` (a running cluster, or "auto"; RAY_ADDRESS is honoured as by `ray.init`), or
    starts a local Ray with `num_cpus` CPUs (default: every core) that is shut down again on exit. When
    Ray is already initialised in this process (a notebook, a test), it is used as it is.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        shared_dirs: tuple[Path, ...] = (),
        max_retries: int = 3,
    ):
        self.address = address
        self.num_cpus = num_cpus
        self.shared_dirs = shared_dirs
        self.max_retries = max_retries
        self._ray = import_ray()
        self._started = False
        self._cpus = 1  # the cluster's CPUs, known once entered

    def __enter__(self) -> RayExecutor:
        ray = self._ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"logging_level": logging.WARNING}
            if self.address is None and not os.environ.get("RAY_ADDRESS"):  # a local Ray of our own
                options.update(num_cpus=self.num_cpus, include_dashboard=False)
            check_reachable(self.address)
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise FatalError(f"cannot start or connect to Ray (address {self.address or 'local'}): {exc}") from exc
            self._started = True
        try:
            self._cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            for folder in self.shared_dirs:
                self._check_shared(folder)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @property
    def parallelism(self) -> int:
        """How many tasks run at the same time: the cluster's CPUs (known once entered)."""
        return self._cpus

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False

    def _check_shared(self, folder: Path) -> None:
        """Fail early when a Ray worker does not see a folder it writes to (it must be on shared storage)."""
        token = uuid.uuid4().hex
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".ray-probe-{token}"
        probe.write_text(token)
        try:
            seen = self._ray.get(self._ray.remote(num_cpus=1)(_read_probe).remote(str(probe)))
        finally:
            probe.unlink()
        if seen != token:
            raise FatalError(
                f"a Ray worker cannot see {folder}: with the ray executor, the work dir (--work-dir) and the "
                "output's parent folder must be on storage every Ray node mounts at the same path (a shared filesystem)"
            )

    def map(self, fn: Callable[[Any], Any], tasks: Iterator[Any]) -> Iterator[Any]:
        """`fn(task)` for every task as a Ray task, yielded in task order."""
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)(_call)
        pending: deque = deque()
        try:
            for task in tasks:
                pending.append(remote.remote(fn, task))
                if len(pending) >= 2 * self._cpus:
                    yield self._result(pending.popleft())
            while pending:
                yield self._result(pending.popleft())
        finally:
            for ref in pending:  # the build stopped: don't leave tasks running behind it
                ray.cancel(ref)

    def _result(self, ref: Any) -> Any:
        exceptions = self._ray.exceptions
        try:
            return self._ray.get(ref)
        except exceptions.RayTaskError as exc:
            if isinstance(exc.cause, CurateError):
                raise exc.cause from None  # a clean message, as with the local executor
            raise
        except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.OutOfMemoryError) as exc:
            raise FatalError(
                f"a Ray worker died {self.max_retries + 1} times on one batch ({type(exc).__name__}); "
                "the build stopped and can be resumed"
            ) from exc
