"""Process-tree memory sampling from /proc for bench_scale.py (Linux only, stdlib only)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

RAY_NAMES = ("raylet", "gcs_server", "ray::", "ray_", "dashboard")


def _proc_table() -> dict[int, tuple[int, str, int, int]]:
    """pid -> (ppid, comm, start ticks, user + system CPU ticks) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            comm = stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode("utf-8", "replace")
            rest = stat.rsplit(b")", 1)[1].split()
            table[int(entry)] = (int(rest[1]), comm, int(rest[19]), int(rest[11]) + int(rest[12]))
    return table


def _rss(pid: int, page: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * page
    except OSError:
        return 0


def _pss(pid: int) -> int:
    """Proportional set size (shared pages split between the processes mapping them), bytes."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Peak summed RSS of a process tree, its largest process, the names seen in it, the CPU seconds of
    its processes, and Ray processes started during the run outside it.

    The RSS of the tree's known processes is read every `interval`; the tree itself (a scan of all of
    /proc), PSS (smaps_rollup, which walks page tables) and the Ray processes outside it every
    `full_interval`. Sampling everything every 0.1 s took 12% of a core, which slowed the runs that
    keep every core busy (2 workers on 2 cores) by about 6%; this way it stays near 1%."""

    def __init__(
        self,
        pid: int,
        interval: float = 0.1,
        full_interval: float = 1.0,
        disk_paths: Callable[[], list[Path]] | None = None,
    ):
        super().__init__(daemon=True)
        self.disk_paths = disk_paths  # folders whose bytes are summed at every full sample (scratch disk)
        self.peak_disk = 0
        self.disk_timeline: list[tuple[float, float]] = []  # (unix time, bytes under disk_paths, MB)
        self.pid, self.interval = pid, interval
        self.full_every = max(1, round(full_interval / interval))
        self.peak_tree = self.peak_pss = self.peak_proc = self.max_procs = 0
        self.timeline: list[tuple[float, float]] = []  # (unix time, tree RSS MB)
        self.peak_proc_name = ""
        self.names: set[str] = set()
        self.ray_outside: set[str] = set()
        self._stop_event = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._start_ticks = _proc_table().get(pid, (0, "", 0, 0))[2]
        self._cpu_ticks: dict[tuple[int, int], int] = {}  # (pid, start ticks) -> last CPU ticks seen
        self._tree: dict[int, str] = {pid: "?"}  # pid -> name, as of the last full sample

    def _full_sample(self) -> None:
        """Find the tree's processes, the peak PSS, and Ray processes started outside the tree."""
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += children.get(pid, [])
        self._tree = {pid: table.get(pid, (0, "?", 0, 0))[1] for pid in tree}
        for pid in tree:
            if pid in table:
                self._cpu_ticks[(pid, table[pid][2])] = table[pid][3]
        self.names.update(self._tree.values())
        self.max_procs = max(self.max_procs, len(tree))
        self.peak_pss = max(self.peak_pss, sum(_pss(pid) for pid in tree))
        for pid, (_, name, start, _) in table.items():
            if pid not in self._tree and start >= self._start_ticks and name.startswith(RAY_NAMES):
                self.ray_outside.add(name)
        if self.disk_paths is not None:
            used = sum(tree_bytes(path) for path in self.disk_paths())
            self.peak_disk = max(self.peak_disk, used)
            self.disk_timeline.append((time.time(), used / 2**20))

    def run(self) -> None:
        tick = 0
        while not self._stop_event.is_set():
            if tick % self.full_every == 0:
                self._full_sample()
            tick += 1
            total = 0
            for pid, name in self._tree.items():
                rss = _rss(pid, self._page)
                total += rss
                if rss > self.peak_proc:
                    self.peak_proc, self.peak_proc_name = rss, name
            self.peak_tree = max(self.peak_tree, total)
            self.timeline.append((time.time(), total / 2**20))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    @property
    def cpu_seconds(self) -> float:
        """User + system seconds of every process seen in the tree, as of its last full sample (each
        process's last second or less before it exits is missed: a lower bound, counted the same way
        for every run, Ray's workers included)."""
        return sum(self._cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")


def tree_bytes(path: Path) -> int:
    """Bytes of the files under `path` (or of `path` itself), as they are while a build writes and removes
    them: files that vanish during the walk are skipped."""
    try:
        if not path.is_dir():
            return path.stat().st_size if path.exists() else 0
        total = 0
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        total += tree_bytes(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
        return total
    except OSError:
        return 0


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0
