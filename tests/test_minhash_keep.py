"""`minhash_dedup`'s keep step: cluster ids, sizes and which members beyond `keep_per_cluster` drop."""

import math

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.stages.base import DROP
from curate.stages.minhash_dedup import MinhashDedup


def keep_step(keep: int, rank_by: str):
    stage = MinhashDedup(fields="prompt", template=True, keep_per_cluster=keep, rank_by=rank_by)
    return next(s for s in stage.steps() if hasattr(s, "_keep"))


def reference(records: list[tuple[int, str | None, float | None]], labels: list[int], keep: int, ranked: bool):
    """_row -> (dup_cluster, size, drop reason), member by member in plain Python."""
    members: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(label, []).append(i)
    out = {}
    for group in members.values():
        ids = [records[i][1] for i in group if records[i][1] is not None]
        cluster = min(ids) if ids else None

        def score(i: int) -> float:
            return records[i][2] if records[i][2] is not None else -math.inf

        order = sorted(group, key=lambda i: (-score(i), records[i][0]) if ranked else records[i][0])
        for rank, i in enumerate(order):
            dropped = rank >= keep and len(group) > 1 and cluster is not None
            out[records[i][0]] = (cluster, len(group), f"near_duplicate:{cluster}" if dropped else None)
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"])),
            st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0])),
            st.integers(0, 5),
        ),
        max_size=30,
    ),
    st.integers(1, 3),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_keep_matches_a_member_by_member_reference(rows, keep, ranked, random):
    records = [(10 * i, id_, score) for i, (id_, score, _) in enumerate(rows)]
    random.shuffle(records)  # input order is `_row` order, not the frame's order
    by_row = {r: label for (r, _, _), (_, _, label) in zip(sorted(records), rows, strict=True)}
    _, labels = np.unique(np.array([by_row[r] for r, _, _ in records], dtype=np.int64), return_inverse=True)
    data = pl.DataFrame(
        records, schema={"_row": pl.Int64, "id": pl.String, "reasoning_depth": pl.Float64}, orient="row"
    )
    out = keep_step(keep, "reasoning_depth" if ranked else "")._keep(data, labels.astype(np.int64))
    assert out["_row"].to_list() == [r for r, _, _ in records]
    got = {r: (c, s, d) for r, c, s, d in out.select("_row", "dup_cluster", "dup_cluster_size", DROP).iter_rows()}
    assert got == reference(records, labels.tolist(), keep, ranked)
