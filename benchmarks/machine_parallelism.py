"""How much faster this machine runs two CPU-bound processes at once than one: context for t(w1)/t(w2).

    .venv/bin/python benchmarks/machine_parallelism.py [--repeats 5]

Two workloads, each a fixed amount of single-threaded work:

- `python`: a pure-Python integer loop (the interpreter, no memory traffic to speak of);
- `tiktoken`: `encode_ordinary` over a fixed text (this repository's README, repeated), the work that
  dominates a curate build's CPU (token counts, the output's tokens).

Each is run alone (one process) and as a pair (two processes released together by a barrier), `--repeats`
times, interleaved. The pair's speedup is 2 x t(alone) / t(pair), where t(pair) is the time until both
processes are done: 2.0 on two idle cores; less where the two virtual CPUs share a physical core or the
host is busy (a hypervisor's steal time is not always reported inside the VM). Two curate workers cannot
beat this figure, while one curate worker already runs parts of a build on both cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOOP = 60_000_000  # python: iterations (about 2 s on the development machine)
TEXT_BYTES = 24_000_000  # tiktoken: about this much text, in README copies (about 2 s)


def _python_work() -> None:
    total = 0
    for i in range(LOOP):
        total += i


def _tiktoken_work() -> None:
    from curate.tokens import DEFAULT_ENCODING, get_encoding

    enc = get_encoding(DEFAULT_ENCODING)
    text = (ROOT / "README.md").read_text()
    for _ in range(max(1, TEXT_BYTES // len(text.encode()))):
        enc.encode_ordinary(text)


WORKLOADS = {"python": _python_work, "tiktoken": _tiktoken_work}


def _timed(name: str, barrier: Any, queue: Any) -> None:
    """In a child: warm up (imports, encoding load), wait for the others, time the work."""
    if name == "tiktoken":
        from curate.tokens import DEFAULT_ENCODING, get_encoding

        get_encoding(DEFAULT_ENCODING).encode_ordinary("warm up")
    barrier.wait()
    started = time.perf_counter()
    WORKLOADS[name]()
    queue.put(time.perf_counter() - started)


def run_together(name: str, processes: int) -> float:
    """Seconds until all `processes` copies of the workload are done (each started in a fresh process)."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(processes), ctx.Queue()
    children = [ctx.Process(target=_timed, args=(name, barrier, queue)) for _ in range(processes)]
    for child in children:
        child.start()
    times = [queue.get() for _ in children]
    for child in children:
        child.join()
        if child.exitcode:
            raise RuntimeError(f"{name}: a timing process failed (exit code {child.exitcode})")
    return max(times)


def measure(repeats: int = 5) -> dict[str, Any]:
    """Per workload: every alone and pair time, and the pair's speedup (from the medians)."""
    out: dict[str, Any] = {}
    for name in WORKLOADS:
        alone, pair = [], []
        for _ in range(repeats):
            alone.append(run_together(name, 1))
            pair.append(run_together(name, 2))
        out[name] = {
            "alone_s": [round(t, 3) for t in alone],
            "pair_s": [round(t, 3) for t in pair],
            "speedup": round(2 * statistics.median(alone) / statistics.median(pair), 3),
        }
    return out


def summary(figures: dict[str, Any]) -> str:
    """One line: `python 1.93x, tiktoken 1.71x`."""
    return ", ".join(f"{name} {f['speedup']:.2f}x" for name, f in figures.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    figures = measure(args.repeats)
    print(json.dumps(figures, indent=2))
    print("two processes at once against one:", summary(figures))


if __name__ == "__main__":
    main()
