"""How many cores this process may use: the one figure that thread counts are derived from."""

from __future__ import annotations

import polars as pl


def available_cores() -> int:
    """The cores this process may use: the size of polars' thread pool, which Rust derives from the CPU
    affinity mask (`taskset`, a container's cpuset) and a cgroup CPU quota (`docker --cpus`, a Kubernetes
    CPU limit), unless `POLARS_MAX_THREADS` sets it. `os.cpu_count()` counts every core of the host, so a
    build limited to 2 of 64 cores would run 64 tokenizer threads on them."""
    return max(1, pl.thread_pool_size())
