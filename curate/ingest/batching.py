"""How a file's items are cut into batches: the one rule the driver's reader and the workers' scans
share (so both give the same batches)."""

from __future__ import annotations

from collections.abc import Iterator

from curate.ingest.readers import Payload


def payload_size(payload: Payload) -> int:
    if isinstance(payload, bytes | str):
        return len(payload)
    if isinstance(payload, dict):
        return sum(len(v) for v in payload.values() if isinstance(v, str))
    return 0


def chunks(items: Iterator[tuple[int, Payload]], max_items: int, max_bytes: int) -> Iterator[list]:
    """Consecutive items, cut at `max_items` or once `max_bytes` of payload is reached."""
    chunk: list = []
    size = 0
    for item in items:
        chunk.append(item)
        size += payload_size(item[1])
        if len(chunk) >= max_items or size >= max_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def file_batches(
    items: Iterator[tuple[int, Payload]], batch_size: int, batch_bytes: int
) -> Iterator[tuple[list[int], list[Payload]]]:
    """One file's items as batches of (lines, payloads), cut by `chunks`. A negative line (a problem
    with the file as a whole, found after its last record) becomes the line after the last one seen."""
    last_line = 0
    for chunk in chunks(items, batch_size, batch_bytes):
        lines = []
        for line, _ in chunk:
            if line < 0:
                line = last_line + 1
            lines.append(line)
            last_line = max(last_line, line)
        yield lines, [payload for _, payload in chunk]
