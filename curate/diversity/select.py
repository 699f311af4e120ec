"""Greedy diverse selection (DEITA-style) with batched matrix products.

Records are visited in the given order. A record is `too_similar` when its cosine similarity to any
already accepted record reaches `max_similarity` (within `TOLERANCE`, so `max_similarity = 1` removes
records whose vector equals an accepted one despite float rounding). Otherwise it is accepted while the
budgets allow; the first record that would exceed `max_records` or `max_tokens` ends the selection and
it and every later record are `budget`. This is exactly the sequential rule, computed in blocks: each
block of `block` candidates is compared with the accepted set in one product, then the conflicts inside
the block are resolved in order on the small block x block product. The accepted vectors live in a
matrix that grows in chunks. Cost: candidates x accepted x dim multiply-adds.
"""

from __future__ import annotations

import numpy as np

ACCEPTED, TOO_SIMILAR, BUDGET = 0, 1, 2
TOLERANCE = 1e-6
_CHUNK = 4096


def greedy_select(
    vectors: np.ndarray,
    tokens: np.ndarray,
    max_similarity: float,
    max_records: int | None = None,
    max_tokens: int | None = None,
    block: int = 1024,
) -> np.ndarray:
    """Status per record (ACCEPTED, TOO_SIMILAR or BUDGET), visiting records in array order.

    `vectors`: unit rows (float32); `tokens`: token count per record (used with `max_tokens`).
    """
    n, dim = vectors.shape
    status = np.full(n, BUDGET, dtype=np.int8)
    limit = np.float32(max_similarity - TOLERANCE)
    accepted = np.empty((min(n, _CHUNK), dim), dtype=np.float32)
    count, used = 0, 0
    record_cap = n if max_records is None else max_records
    token_cap = np.inf if max_tokens is None else max_tokens
    for start in range(0, n, block):
        rows = vectors[start : start + block]
        rejected = np.zeros(len(rows), dtype=bool)
        if count:
            rejected = (rows @ accepted[:count].T).max(axis=1) >= limit
        inner = rows @ rows.T
        for i in range(len(rows)):
            if rejected[i]:
                status[start + i] = TOO_SIMILAR
                continue
            if count >= record_cap or used + int(tokens[start + i]) > token_cap:
                return status  # this record and every later one: budget
            status[start + i] = ACCEPTED
            used += int(tokens[start + i])
            if count == len(accepted):
                accepted = np.concatenate([accepted, np.empty((_CHUNK, dim), dtype=np.float32)])
            accepted[count] = rows[i]
            count += 1
            later = inner[i, i + 1 :] >= limit
            rejected[i + 1 :] |= later
    return status


def naive_select(
    vectors: np.ndarray,
    tokens: np.ndarray,
    max_similarity: float,
    max_records: int | None = None,
    max_tokens: int | None = None,
) -> np.ndarray:
    """The same rule, one record at a time against every accepted one (O(n²); a test reference)."""
    status = np.full(len(vectors), BUDGET, dtype=np.int8)
    chosen: list[int] = []
    used = 0
    for i in range(len(vectors)):
        if any(float(vectors[i] @ vectors[j]) >= max_similarity - TOLERANCE for j in chosen):
            status[i] = TOO_SIMILAR
            continue
        if (max_records is not None and len(chosen) >= max_records) or (
            max_tokens is not None and used + int(tokens[i]) > max_tokens
        ):
            break
        status[i] = ACCEPTED
        chosen.append(i)
        used += int(tokens[i])
    return status
