"""The Ray executor: the batch functions of a pass run as Ray Data `map_batches` on a local Ray or a cluster.

`map(fn, tasks)` turns the tasks into a Ray Data dataset, one row per task (the pickled task), and
runs `fn` over it with `map_batches` (one task per call, Ray Data's task pool), results in task order.
A task is one batch (`ingest_batch` / `rerun_batch` of `curate.executor`), one input scan, one
barrier part or one output part: it reads its input, runs its steps and writes its files into the
work dir, exactly as in a local worker process, so the output is byte-identical to the local
executor's and a build that stops resumes batch by batch. The work dir (and the output's parent
folder: shards are written by tasks too) must therefore be on storage that every Ray node sees under
the same path (a shared filesystem on a cluster); `__enter__` checks that with a probe file in each,
which a task on every node reads and answers with a file of its own beside it.

Tasks are taken from the caller's iterator in *windows* (at most `window_tasks` tasks or
`window_bytes` of pickled tasks), one dataset per window, and the next window is pulled while the
current one runs. Batch descriptors (byte ranges, batch files) are small, so a pass is usually one
dataset; batches the driver reads itself (compressed or non-JSON-Lines inputs) carry their payloads,
and the windows keep those bounded in memory.

A task whose worker process dies (killed, out of memory, its node lost) is retried by Ray up to
`max_retries` times. An error raised by curate's own code (`CurateError`) is returned to the driver
as a result and raised there as it was raised: it is never retried (it would fail the same way
again). Ray reuses worker processes between tasks, so the models that steps cache per process
(fastText, tiktoken) load once per worker. A local Ray started here ends workers idle for 2 s
(`LOCAL_SYSTEM_CONFIG`), so a pass after a pause runs in fresh workers, which load them again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import signal
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from curate.errors import ConfigError, CurateError, FatalError, os_error_code

INSTALL_HINT = "the ray executor needs `pip install curate[ray]`"


def import_ray() -> ModuleType:
    """The `ray` module, or a FatalError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise FatalError(f"{INSTALL_HINT} ({exc})") from None
    return ray


#: The start of an HTTP/2 connection (the preface and an empty SETTINGS frame): a Ray cluster's GCS, a
#: gRPC server, answers with its own SETTINGS frame; the dashboard (an HTTP/1 server) with HTTP/1.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """Fail fast when a `host:port` cluster address does not answer, or answers as an HTTP/1 server (the
    dashboard's port): `ray.init` would wait for minutes. A reply that is neither (TLS, say) is left
    to `ray.init`."""
    if not address or "://" in address or address == "auto" or ":" not in address:
        return  # `auto`, ray:// (Ray Client has its own timeout) and other forms are left to ray.init
    host, _, port = address.rpartition(":")
    try:
        connection = socket.create_connection((host, int(port)), timeout=timeout)
    except (OSError, ValueError) as exc:  # refused, no route, no answer within `timeout`, a bad port
        raise FatalError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    with connection:
        try:
            connection.sendall(_HTTP2_PREFACE)
            reply = connection.recv(64)
        except OSError:  # connected, but no reply (or the connection dropped): left to ray.init
            return
    if reply.startswith(b"HTTP/") or b"<html" in reply.lower() or b"<!doctype" in reply.lower():
        raise FatalError(
            f"{address} answers as a web server, not as a Ray cluster (the dashboard's port?); give the "
            "address `ray start --head` prints (HEAD:6379), or `auto` on a node of the cluster"
        )


def start_local_ray(ray: ModuleType, options: dict[str, Any]) -> None:
    """`ray.init(**options)` for a local Ray of our own; if it fails or is interrupted (Ctrl-C) part way,
    what it started is stopped (Ray's agent processes would otherwise outlive the build)."""
    token_notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = token_notice.level
    token_notice.setLevel(logging.ERROR)  # "token authentication is enabled": for a Ray we start and stop
    before = set(processes_of_our_ray())  # an earlier Ray of this process (a notebook's, a test's): not ours
    try:
        ray.init(**options)
    except BaseException:
        ray.shutdown()
        # what this call started before Ray knew of it, which shutdown misses
        stop_processes([pid for pid in processes_of_our_ray() if pid not in before])
        raise
    finally:
        token_notice.setLevel(level)


def processes_of_our_ray() -> list[int]:
    """The processes of a local Ray that this process started (Linux; elsewhere none are found). Ray
    names its session folder after the process that starts it (`session_<date>_<microseconds>_<pid>`),
    and each of its processes has that folder in its command line or open files (the agents rename
    themselves `ray::DashboardAgent`, but keep their logs open there). Only our own children (the GCS,
    the raylet) and processes named `ray::...` (agents, workers; once the raylet has died they belong to
    init) count: a log shipper or a `tail -F` of the session's logs does not."""
    mark = re.compile(rf"/session_\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{{6}}_{os.getpid()}(?=/|\s|$)")
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        if int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent != os.getpid() and not command.startswith("ray::"):
                continue
            names = [command, *(os.readlink(fd) for fd in (entry / "fd").iterdir())]
        except (OSError, IndexError, ValueError):  # gone, or another user's
            continue
        if any(mark.search(name) for name in names):
            found.append(int(entry.name))
    return found


def stop_processes(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM `pids`, then SIGKILL those still running after `grace` s, through pidfds (Linux), so that
    a pid the kernel gives to a new process in between is not signalled."""
    handles = []
    for pid in pids:
        with contextlib.suppress(OSError, AttributeError):  # gone already; no pidfds on this system
            handles.append(os.pidfd_open(pid))
    try:
        for fd in handles:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGTERM)
        deadline = time.monotonic() + grace
        running = handles
        while running and (left := deadline - time.monotonic()) > 0:
            ended = select.select(running, [], [], left)[0]  # a pidfd reads once its process has ended
            running = [fd for fd in running if fd not in ended]
        for fd in running:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        for fd in handles:
            os.close(fd)


def init_with_deadline(ray: ModuleType, options: dict[str, Any], timeout: float) -> None:
    """`ray.init(**options)` to a running cluster, or a FatalError after `timeout` s: a port that is no
    Ray cluster's (Ray Client's without ray://, a silent one) keeps `ray.init` retrying for minutes.
    It runs in a daemon thread, since a connecting Ray cannot be interrupted; on a timeout the thread
    is left behind and shuts down the connection should it still succeed. Ray's SIGTERM handler (exit,
    so that `finally` blocks and the shutdown run), which it sets only from the main thread, is set
    here."""
    outcome: list[BaseException | None] = []
    gave_up = threading.Event()

    def connect() -> None:
        try:
            ray.init(**options)
        except BaseException as exc:  # handed to the caller's thread, raised there
            outcome.append(exc)
            return
        outcome.append(None)
        if gave_up.is_set():  # too late: the build has stopped
            ray.shutdown()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))  # as ray.init sets it there
    notice = _DropMessage("SIGTERM handler is not set")
    worker_log = logging.getLogger("ray._private.worker")
    worker_log.addFilter(notice)
    try:
        thread = threading.Thread(target=connect, name="curate-ray-init", daemon=True)
        thread.start()
        thread.join(timeout)
    finally:
        worker_log.removeFilter(notice)
    if not outcome:
        gave_up.set()
        raise FatalError(
            f"Ray did not connect to {options.get('address')} within {timeout:g} s; check that it is the "
            "address `ray start --head` printed (HEAD:6379; the dashboard's 8265 and Ray Client's 10001 "
            "are other ports), or `auto` on a node of the cluster"
        )
    if outcome[0] is not None:
        raise outcome[0]


class _DropMessage(logging.Filter):
    """Drops the log records whose message starts with `prefix`."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def _probe_node(path: str, token: str, name: str) -> str:
    """Runs in a Ray task on one node: '' when it sees the driver's probe file and wrote its own beside
    it (`<probe>-<name>`, holding the token), else what went wrong there."""
    probe = Path(path)
    try:
        if not probe.is_file() or probe.read_text() != token:
            return "does not see it"
        (probe.parent / f"{probe.name}-{name}").write_text(token)
    except OSError as exc:
        return f"cannot write into it ({exc.strerror or exc})"
    return ""


def pinned_to(task: Any, node_id: str) -> Any:
    """A Ray remote function's options to run it on node `node_id` only, holding no CPU (a probe)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return task.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, False))


def _remove_probe_answer(path: str) -> str:
    """Runs in a Ray task on a node that wrote its probe answer into a folder of its own: delete it
    there (the driver cannot see it). '' when done, else why not."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def curate_error_in(exc: BaseException | None) -> bool:
    """Whether `exc` is a CurateError, or a Ray task's error around one (a RayTaskError's `cause`)."""
    return isinstance(exc, CurateError) or isinstance(getattr(exc, "cause", None), CurateError)


#: Ray's own errors that `task_failures_as_fatal` reports as one line of curate's: a worker that died
#: more often than Ray retries, data lost with a node, Ray itself failing under the build.
DIED = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError")
LOST = ("ObjectLostError",)
BROKEN = ("LocalRayletDiedError", "RaySystemError")


def reported_by_curate(exc: BaseException | None) -> bool:
    """Whether curate reports `exc` as its own one-line error: a CurateError (`curate_error_in`) or one
    of Ray's errors `task_failures_as_fatal` turns into one (or a subclass: OwnerDiedError is an
    ObjectLostError)."""
    if exc is None or curate_error_in(exc):
        return exc is not None
    return any(t.__module__.startswith("ray.") and t.__name__ in (*DIED, *LOST, *BROKEN) for t in type(exc).__mro__)


class _DropCurateErrorLogs(logging.Filter):
    """Drops the log records about an error curate reports itself (`reported_by_curate`): the record's
    exception, or the one being handled where it is logged. With `raise_original_map_exception`
    (`curate_dataset`), Ray Data takes a CurateError for a bug of its own, and it logs a worker that died
    too often, each with tracebacks ("An exception was raised from a task of operator ...", "Exception
    occurred in Ray Data or Ray Core internal code ...") before the driver raises it; curate prints one
    line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        logged = record.exc_info[1] if record.exc_info else None
        return not (reported_by_curate(logged) or reported_by_curate(sys.exc_info()[1]))


@contextmanager
def quiet_ray_data() -> Iterator[None]:
    """Ray Data's log at WARNING and up inside the block (where datasets run): its per-dataset INFO
    lines would cut through curate's progress bars. On its console (not its log file), the records
    about a CurateError that a function raised are dropped (`_DropCurateErrorLogs`)."""
    log = logging.getLogger("ray.data")
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    console = [h for h in log.handlers if type(h).__name__ != "SessionFileHandler"]  # Ray Data's file log
    drop = _DropCurateErrorLogs()
    for handler in console:
        handler.addFilter(drop)
    try:
        yield
    finally:
        for handler in console:
            handler.removeFilter(drop)
        log.setLevel(level)


@contextmanager
def task_failures_as_fatal(ray: ModuleType, max_retries: int) -> Iterator[None]:
    """Failures of Ray tasks that are no bug of curate's stop the build with a FatalError that says it
    can be resumed: a worker that died more often than Ray retries its task (killed, out of memory,
    node lost), and an object lost with its node. (A task that cannot read or write a file reports it
    itself: `run_tasks`.)"""
    exceptions = ray.exceptions
    try:
        yield
    except exceptions.RayTaskError as exc:  # raised in a barrier's Ray task or Ray Data function
        cause = getattr(exc, "cause", None)
        if not isinstance(cause, CurateError):
            raise
        raise without_ray_data_note(cause) from None
    except tuple(getattr(exceptions, name) for name in DIED) as exc:
        raise FatalError(
            f"a Ray worker died {max_retries + 1} times on one task ({type(exc).__name__}); "
            "the build stopped and can be resumed"
        ) from exc
    except tuple(getattr(exceptions, name) for name in LOST) as exc:
        raise FatalError(
            f"Ray lost data of this build ({type(exc).__name__}: a node left the cluster?); "
            "the build stopped and can be resumed"
        ) from exc
    except tuple(getattr(exceptions, name) for name in BROKEN) as exc:  # Ray itself, not a task
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise FatalError(
            f"Ray stopped working under this build ({type(exc).__name__}: {first}); the build stopped and can "
            "be resumed"
        ) from exc


#: How Ray Data's note on a failed function begins; it appends the note to the error's first argument.
RAY_DATA_NOTE = "\nFailed to apply UDF transform"


def without_ray_data_note(error: CurateError) -> CurateError:
    """A CurateError from a Ray Data function as it was raised: Ray Data appends a note about its own
    retry settings to the message, which a user of curate cannot act on."""
    if error.args and isinstance(error.args[0], str) and RAY_DATA_NOTE in error.args[0]:
        error.args = (error.args[0].split(RAY_DATA_NOTE)[0], *error.args[1:])
    return error


def reporting_file_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, a barrier's Ray task or Ray Data function that reads the work dir, with an OSError it raises
    turned into `_file_error_here`'s FatalError naming the node; `task_failures_as_fatal` raises it on
    the driver without Ray's traceback."""

    def reporting(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            raise _file_error_here(exc) from None
        except CurateError as exc:
            raise _naming_node(exc) from None

    reporting.__name__ = reporting.__qualname__ = fn.__name__  # Ray Data names its operators after it
    return reporting


def strict_dataset(dataset: Any) -> None:
    """Settings every curate dataset runs with (on its own context, not the process's): no progress bars
    (curate has its own), no task left out on errors, and no CPUs held back for operators downstream
    (28 tasks of 0.4 s on 2 CPUs took 9.0 s with that reservation, 6.1 s without; 5.8 s as plain tasks)."""
    options = dataset.context
    options.enable_progress_bars = False
    options.print_on_execution_start = False
    options.max_errored_blocks = 0
    options.op_resource_reservation_enabled = False


MAX_RETRIES = 3  # times Ray retries a task whose worker died, before the build stops
PROBE_TIMEOUT_S = 120.0  # for every node to run the shared-storage probe
PROBE_CLEANUP_S = 10.0  # for nodes that wrote their answer into a folder of their own to delete it
#: Ray connects to a cluster with token authentication only when told to: a head started where a token
#: exists (~/.ray/auth_token) uses one, and the driver's `ray.init` fails after 20 s of InvalidAuthToken.
TOKEN_AUTH_HINT = (
    "; if Ray's log above says InvalidAuthToken, the cluster uses token authentication: set RAY_AUTH_MODE=token "
    "and give its token (~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)"
)


def _may_need_a_token(address: str | None) -> bool:
    """True when a failed connection may have been refused for want of a token: the driver joined a
    cluster at HOST:PORT (not `auto`, which reads the token as `ray start` left it, nor Ray Client's
    ray://) without RAY_AUTH_MODE=token."""
    if not address or address in ("local", "auto") or "://" in address:
        return False
    return os.environ.get("RAY_AUTH_MODE", "").lower() != "token"


CONNECT_TIMEOUT_S = 60.0  # for ray.init to join a running cluster (a GCS reopening its state may take long)


def curate_dataset(rows: list[dict[str, Any]], curate_errors: bool = False) -> Any:
    """A Ray Data dataset of `rows`, one block per row, with `strict_dataset`'s settings and sort-based
    shuffles, which run as plain tasks (the hash shuffle's aggregator actors took 10 s to start on 2
    CPUs, 20k records: 10.9 s against 2.9 s, and stalled there once). Derived datasets inherit both.

    With `curate_errors` (a barrier whose functions raise CurateErrors: `reporting_file_errors`), a
    function's error is raised as itself, not as a UserCodeException that keeps only its traceback.
    Not for other datasets: Ray Data then reports any other error (a bug) as one of its own."""
    import ray.data
    from ray.data.context import ShuffleStrategy

    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    strict_dataset(dataset)
    dataset.context.raise_original_map_exception = curate_errors
    dataset.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    return dataset


def with_retries(
    operation: Callable[..., Any], fn: Callable[..., Any], max_retries: int = MAX_RETRIES, **options: Any
) -> Any:
    """`operation(fn, **options)`, a Ray Data `map_batches` or `map_groups`, in tasks of 1 CPU that Ray
    retries `max_retries` times after a worker death."""
    with warnings.catch_warnings():  # Ray Data names max_retries a deprecated remote argument; it has no other
        warnings.simplefilter("ignore", DeprecationWarning)
        return operation(fn, num_cpus=1, max_retries=max_retries, **options)


def results_of(dataset: Any, batch_format: str) -> Iterable[Any]:
    """A dataset's blocks as batches, fetched one at a time: fewer Ray Data threads to outlive an
    iteration that stops early (`join_ray_data_threads` waits for the rest)."""
    return dataset.iter_batches(batch_format=batch_format, batch_size=None, prefetch_batches=0)


@contextmanager
def closing(results: Iterable[Any]) -> Iterator[Iterator[Any]]:
    """An iterator over a dataset's results, closed on leaving: a dataset consumed only in part (the
    build stopped) shuts its execution down, so its queued and running tasks stop."""
    iterator = iter(results)
    try:
        yield iterator
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def pickled_windows(
    tasks: Iterator[Any], max_tasks: int, max_bytes: int, stop: threading.Event | None = None
) -> Iterator[list[bytes]]:
    """The tasks pickled, in consecutive lists: a list ends after `max_tasks` tasks, or with the task
    that brings it to `max_bytes` or more. Pulling ends early once `stop` is set."""
    from ray import cloudpickle

    window: list[bytes] = []
    size = 0
    for task in tasks:
        if stop is not None and stop.is_set():
            return
        blob = cloudpickle.dumps(task)
        window.append(blob)
        size += len(blob)
        if len(window) >= max_tasks or size >= max_bytes:
            yield window
            window, size = [], 0
    if window:
        yield window


def run_tasks(batch: dict[str, Any], fn: Callable[[Any], Any]) -> dict[str, Any]:
    """The `map_batches` function, in a Ray worker: unpickles each task of the batch, calls `fn` on it and
    returns the pickled results; a CurateError is returned (`ok` False) rather than raised, and so is an
    OSError, as a FatalError naming the node (the code is curate's: it is the node's storage). A function,
    not a class: Ray Data runs it as plain Ray tasks, whose worker processes (and the models cached
    in them) live on from one dataset to the next while they are kept busy (on a local Ray of our
    own, until idle for 2 s), where a class would get new actors per dataset."""
    from ray import cloudpickle

    ok, values = [], []
    for blob in batch["task"]:
        try:
            value, good = fn(cloudpickle.loads(blob)), True
        except CurateError as exc:
            value, good = _naming_node(exc), False
        except OSError as exc:  # a node that does not mount the work dir or the output's folder (writable)
            value, good = _file_error_here(exc), False
        ok.append(good)
        values.append(cloudpickle.dumps(value))
    return {"index": batch["index"], "ok": ok, "value": values}


def _file_error_here(exc: OSError) -> FatalError:
    """What a task that could not read or write a file reports, naming its node (and, for a missing
    file or a refused write, the shared storage every node needs)."""
    import errno

    hint = ""
    if os_error_code(exc) in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "; every Ray node must mount the work dir and the output's parent folder at the same path, writable"
    return FatalError(
        f"a Ray task on node {_this_node()} could not read or write a file: "
        f"{type(exc).__name__}: {exc}{hint}; the build stopped and can be resumed"
    )


def _naming_node(error: CurateError) -> CurateError:
    """`error`, raised in a Ray task, with the task's node added to its message when a file error caused
    it (a spilled batch that cannot be read back, say: that node may not mount the work dir)."""
    if isinstance(error.__cause__, OSError) and error.args and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]} (on Ray node {_this_node()})", *error.args[1:])
    return error


def _this_node() -> str:
    """The node a Ray task runs on, as `node_label` names it."""
    import ray.util

    return node_label(ray.util.get_node_ip_address(), ray.get_runtime_context().get_node_id(), socket.gethostname())


def node_label(address: str, node_id: str | None, host: str | None) -> str:
    """A Ray node as errors name it: its IP address, which several nodes may share (nodes on one machine,
    pods behind one address), then its host name and the node ID `ray status` lists."""
    details = [f"host {host}"] if host and host != address else []
    if node_id:
        details.append(f"ID {node_id}")
    return f"{address} ({', '.join(details)})" if details else address


# A local Ray of our own ends idle workers after a few seconds (Ray's default keeps one per CPU for
# good). A worker keeps the object-store pages it touched and its grown heap for as long as it lives:
# after the MinHash LSH shuffles that was 2.5 GB of object-store pages and 2.0 GB of heap in two
# workers, carried through the output writing. Workers busy within a pass stay; a pass after a pause
# starts fresh ones (at 100k records no measurable cost).
LOCAL_SYSTEM_CONFIG = {"num_workers_soft_limit": 0, "idle_worker_killing_time_threshold_ms": 2000}


def join_ray_data_threads(timeout: float = 5.0) -> None:
    """Wait for the threads with which Ray Data iterates a dataset's results (`iter_threaded`) to end:
    after an iteration that stopped early (an error) they run on for a moment, and a `ray.shutdown()`
    then ends the whole process, before the error is printed."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name == "iter_threaded" and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


def stop_autoscaler_monitor(ray: Any) -> None:
    """Stop the autoscaler monitor of a local Ray started here (it has nothing to scale) before
    `ray.shutdown()`. That stops the monitor last, after the GCS, and the monitor then spends its whole
    1 s grace period trying to report its own end to the stopped GCS: the shutdown took 1.33 s, 0.33 s
    with the monitor stopped first. This uses Ray's internal node API; where a Ray version lacks it,
    the plain shutdown runs."""
    node = getattr(getattr(getattr(ray, "_private", None), "worker", None), "_global_node", None)
    kill_monitor = getattr(node, "kill_monitor", None)
    if node is not None and getattr(node, "head", False) and callable(kill_monitor):
        kill_monitor(check_alive=False)


class RayExecutor:
    """Runs batch functions with Ray Data `map_batches`, results in task order, tasks in bounded windows.

    Connects to `address` (a running cluster, or "auto"; RAY_ADDRESS is honoured as by `ray.init`), or
    starts a local Ray with `num_cpus` CPUs (default: every core) that is shut down again on exit. When
    Ray is already initialised in this process (a notebook, a test), it is used as it is.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        shared_dirs: tuple[Path, ...] = (),
        max_retries: int = MAX_RETRIES,
        window_tasks: int = 4096,
        window_bytes: int = 256 * 2**20,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ):
        self.address = address or None  # `--address ""`: none, as if not given
        self.num_cpus = num_cpus
        self.shared_dirs = shared_dirs
        self.max_retries = max_retries
        self.window_tasks = window_tasks
        self.window_bytes = window_bytes
        self.connect_timeout = connect_timeout
        self._ray = import_ray()
        self._started = False
        self._own_local_ray = False  # started here, with `address="local"`
        self._cpus = 1  # the cluster's CPUs, known once entered

    def __enter__(self) -> RayExecutor:
        ray = self._ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"logging_level": logging.WARNING}
            if self.address is None and not os.environ.get("RAY_ADDRESS"):  # a local Ray of our own
                # "local": a new Ray, never one that `ray start` left running on this machine (that is
                # `--address auto`, and it would refuse the system config)
                options.update(
                    address="local", num_cpus=self.num_cpus, include_dashboard=False, _system_config=LOCAL_SYSTEM_CONFIG
                )
            address = self.address or os.environ.get("RAY_ADDRESS")  # ray.init takes RAY_ADDRESS too
            check_reachable(address)
            try:
                if options.get("address") == "local":
                    start_local_ray(ray, options)
                else:
                    init_with_deadline(ray, {"address": address, **options}, self.connect_timeout)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                if isinstance(exc, ValueError) and "address" in str(exc).lower():  # "Invalid address format: foo"
                    raise ConfigError(
                        [f"address: {exc}; give HOST:PORT of a Ray head, auto, or ray://HOST:PORT"]
                    ) from exc
                hint = TOKEN_AUTH_HINT if _may_need_a_token(address) else ""
                raise FatalError(f"cannot start or connect to Ray (address {address or 'local'}): {exc}{hint}") from exc
            self._started = True
            self._own_local_ray = options.get("address") == "local"
        from ray.util.debug import log_once

        log_once("ray_data_progress_manager_disabled")  # curate shows its own progress: skip Ray Data's notice
        log_once("cpu_warning")  # "no available CPUs, the Dataset job will hang": curate's own tasks hold them
        try:
            self._cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            # the workers of a Ray started here run on this machine: they see its folders
            deadline = time.monotonic() + PROBE_TIMEOUT_S  # for the probes of every folder together
            folders = () if self._own_local_ray else self.shared_dirs
            unshared = [p for f in folders if (p := self._shared_problems(f, deadline))]
            if unshared:
                raise FatalError(
                    "; ".join(unshared) + ". With the ray executor, the work dir (--work-dir) and the output's "
                    "parent folder must be on storage every Ray node mounts at the same path, writable (a shared "
                    "filesystem)"
                )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    on_ray = True

    @property
    def parallelism(self) -> int:
        """How many tasks run at the same time: the cluster's CPUs (known once entered)."""
        return self._cpus

    def __exit__(self, *exc: object) -> None:
        if self._started:
            if self._own_local_ray:
                stop_autoscaler_monitor(self._ray)
            join_ray_data_threads()
            self._ray.shutdown()
            self._started = False
            self._own_local_ray = False

    def _shared_problems(self, folder: Path, deadline: float) -> str:
        """What is wrong with a folder the build writes to ("" when nothing): every Ray node with CPUs must
        see it and write into it where the driver sees it (shared storage). A probe task pinned to each
        node reads the driver's probe file and writes its own, which the driver reads back. With no node
        with CPUs yet (an autoscaling cluster), one probe goes wherever a CPU comes up. Probes not answered
        by `deadline` (`time.monotonic()`) are cancelled."""
        ray, token = self._ray, uuid.uuid4().hex
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".ray-probe-{token}"
        probe.write_text(token)
        task = ray.remote(max_retries=0)(_probe_node)
        try:
            pinned = [(n, pinned_to(task, n["NodeID"])) for n in nodes] or [(None, task.options(num_cpus=1))]
            refs = [(node, call.remote(str(probe), token, f"n{i}")) for i, (node, call) in enumerate(pinned)]
            problems, private = [], []
            for i, (node, ref) in enumerate(refs):
                try:
                    answer = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
                except ray.exceptions.GetTimeoutError:
                    ray.cancel(ref, force=True)
                    answer = f"did not run the probe within {PROBE_TIMEOUT_S:g} s"
                except ray.exceptions.RayError as exc:  # the node left, or cannot take the task
                    answer = f"could not run the probe ({type(exc).__name__})"
                written = probe.parent / f"{probe.name}-n{i}"
                if not answer and not (written.is_file() and written.read_text() == token):
                    answer = "writes into a folder of its own at that path, which the driver does not see"
                    if node is not None:  # its answer is there: delete it on that node
                        private.append((node["NodeID"], str(written), len(problems)))
                if answer:
                    if node is None:
                        problems.append(f"a Ray node {answer}")
                    else:
                        where = node_label(
                            node.get("NodeManagerAddress", "?"), node["NodeID"], node.get("NodeManagerHostname")
                        )
                        problems.append(f"Ray node {where} {answer}")
            if private:
                self._remove_private_answers(private, problems)
        finally:
            for left in [probe, *folder.glob(f"{probe.name}-*")]:
                left.unlink(missing_ok=True)
        return f"{folder}: " + "; ".join(problems) if problems else ""

    def _remove_private_answers(self, private: list[tuple[str, str, int]], problems: list[str]) -> None:
        """Delete the probe answers that nodes wrote into folders of their own ((node ID, path, index of
        the node's problem)), each by a task pinned to its node; a file left there is added to its problem."""
        ray = self._ray
        remove = ray.remote(max_retries=0)(_remove_probe_answer)
        refs = [pinned_to(remove, node_id).remote(path) for node_id, path, _ in private]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=PROBE_CLEANUP_S)
        for (_, path, at), ref in zip(private, refs, strict=True):
            try:
                left = ray.get(ref) if ref in done else f"not deleted within {PROBE_CLEANUP_S:g} s"
            except ray.exceptions.RayError as exc:  # the node left
                left = type(exc).__name__
            if left:
                problems[at] += f" (its probe answer {path} is left there: {left})"

    def map(self, fn: Callable[[Any], Any], tasks: Iterator[Any]) -> Iterator[Any]:
        """`fn(task)` for every task, through Ray Data `map_batches`, yielded in task order."""
        stop = threading.Event()
        with ThreadPoolExecutor(1, thread_name_prefix="curate-window") as reader:
            windows = pickled_windows(tasks, self.window_tasks, self.window_bytes, stop)
            upcoming = reader.submit(next, windows, None)
            try:
                first = 0
                while (window := upcoming.result()) is not None:
                    upcoming = reader.submit(next, windows, None)  # pulled while this window runs
                    yield from self._run_window(fn, window, first)
                    first += len(window)
            finally:
                stop.set()  # the build stopped (or all is done): the reader stops after its current task

    def _run_window(self, fn: Callable[[Any], Any], window: list[bytes], first: int) -> Iterator[Any]:
        """One dataset: a row per pickled task, `fn` applied by `map_batches`, results in row order."""
        from ray import cloudpickle

        rows = [{"index": first + i, "task": blob} for i, blob in enumerate(window)]
        dataset = curate_dataset(rows)
        dataset.context.execution_options.preserve_order = True
        dataset = with_retries(
            dataset.map_batches,
            run_tasks,
            self.max_retries,
            fn_kwargs={"fn": fn},
            batch_size=1,
            batch_format="numpy",
        )
        expected = first
        with (
            quiet_ray_data(),  # first in, last out: closing the results logs "execution finished"
            closing(results_of(dataset, "numpy")) as batches,
            task_failures_as_fatal(self._ray, self.max_retries),
        ):
            for batch in batches:
                for index, ok, blob in zip(batch["index"], batch["ok"], batch["value"], strict=True):
                    if index != expected:
                        raise FatalError(f"Ray Data returned task {index} where task {expected} was due")
                    value = cloudpickle.loads(blob)
                    if not ok:
                        raise value  # a CurateError, as the local executor raises it
                    expected += 1
                    yield value
        if expected != first + len(window):
            raise FatalError(f"Ray Data returned {expected - first} results for {len(window)} tasks")
