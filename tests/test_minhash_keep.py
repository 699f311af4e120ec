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


def reference(
    records: list[tuple[int, str | None, float | None, str]], labels: list[int], keep: int, ranked: bool
) -> dict[int, tuple[str | None, int, str | None]]:
    """_row -> (dup_cluster, size, drop reason), member by member in plain Python. A cluster is named by
    its smallest id; clusters that share a name are ordered by their representative (that id's member
    of the smallest source, then `_row`): the first keeps the name, the others get `@source`, then
    `~2`, `~3`, ... while the name is taken."""
    members: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(label, []).append(i)
    names: dict[int, str | None] = {}
    for label, group in members.items():
        ids = [records[i][1] for i in group if records[i][1] is not None]
        names[label] = min(ids) if ids else None
    taken = {name for name in names.values() if name is not None}
    shared = [label for label, name in names.items() if name is not None and list(names.values()).count(name) > 1]

    def representative(label: int) -> tuple[str, str, int]:
        name = names[label]
        return min((name, records[i][3], records[i][0]) for i in members[label] if records[i][1] == name)

    seen: set[str] = set()
    for label in sorted(shared, key=representative):
        name, source, _ = representative(label)
        if name in seen:
            candidate, k = f"{name}@{source}", 1
            while candidate in taken:
                k += 1
                candidate = f"{name}@{source}~{k}"
            taken.add(candidate)
            names[label] = candidate
        seen.add(name)
    out = {}
    for label, group in members.items():
        cluster = names[label]

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
    # ids repeat across sources (and within one, as identical records' ids do before the ledger)
    records = [(10 * i, id_, score, "ab"[i % 2]) for i, (id_, score, _) in enumerate(rows)]
    random.shuffle(records)  # input order is `_row` order, not the frame's order
    by_row = {r: label for (r, *_), (_, _, label) in zip(sorted(records), rows, strict=True)}
    _, labels = np.unique(np.array([by_row[r] for r, *_ in records], dtype=np.int64), return_inverse=True)
    schema = {"_row": pl.Int64, "id": pl.String, "reasoning_depth": pl.Float64, "source": pl.String}
    data = pl.DataFrame(records, schema=schema, orient="row")
    out = keep_step(keep, "reasoning_depth" if ranked else "")._keep(data, labels.astype(np.int64))
    assert out["_row"].to_list() == [r for r, *_ in records]
    got = {r: (c, s, d) for r, c, s, d in out.select("_row", "dup_cluster", "dup_cluster_size", DROP).iter_rows()}
    assert got == reference(records, labels.tolist(), keep, ranked)
    # what the reference encodes, as properties: one name per cluster, no name of two clusters, and
    # a cluster's smallest id as its name wherever no other cluster has that name
    names = dict(zip(out["_row"], out["dup_cluster"], strict=True))
    label_of = {r: int(label) for (r, *_), label in zip(records, labels, strict=True)}
    per_label: dict[int, set] = {}
    for r, name in names.items():
        per_label.setdefault(label_of[r], set()).add(name)
    assert all(len(found) == 1 for found in per_label.values())
    named = [next(iter(found)) for found in per_label.values() if next(iter(found)) is not None]
    assert len(named) == len(set(named))
    smallest = {
        lab: min((i for (r, i, *_) in records if label_of[r] == lab and i is not None), default=None)
        for lab in per_label
    }
    for lab, name in smallest.items():
        if name is not None and list(smallest.values()).count(name) == 1:
            assert per_label[lab] == {name}
