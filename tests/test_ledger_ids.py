"""Ids made unique within a source (`curate.ledger.repeated_ids`) and the warnings about shared ids."""

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.ledger import assign_unique_ids, duplicate_id_warnings, repeated_ids


def reference(rows: list[tuple[int, str, str | None]]) -> dict[int, str | None]:
    """`_row` -> id, the k-th record (in `_row` order) of a (source, id) getting `id~k` from k = 2; where
    another record of the source has that id already (ids `x`, `x`, `x~2`), the next `~k` no record has,
    in `_row` order."""
    seen: dict[tuple[str, str], int] = {}
    out: dict[int, str | None] = {}
    for row, source, id_ in sorted(rows):
        if id_ is None:
            out[row] = None
            continue
        seen[(source, id_)] = seen.get((source, id_), 0) + 1
        k = seen[(source, id_)]
        out[row] = id_ if k == 1 else f"{id_}~{k}"
    source_of = {row: source for row, source, _ in rows}
    originals = {(source, id_) for _, source, id_ in rows if id_ is not None}
    taken = originals | {(source_of[row], new) for row, new in out.items() if new is not None}
    for row, source, id_ in sorted(rows):
        new = out[row]
        if new is None or new == id_ or (source, new) not in originals:
            continue
        base, _, number = new.rpartition("~")
        k = int(number)
        while (source, f"{base}~{k}") in taken:
            k += 1
        taken.add((source, f"{base}~{k}"))
        out[row] = f"{base}~{k}"
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]), st.one_of(st.none(), st.sampled_from(["x", "y", "x~2", "x~3", "x~2~2", "z"]))
        ),
        max_size=40,
    ),
    st.randoms(use_true_random=False),
)
def test_the_kth_record_of_a_shared_id_gets_k_in_row_order(records, random):
    rows = [(row, source, id_) for row, (source, id_) in enumerate(records)]
    random.shuffle(rows)  # the ledger's own order must not matter, only `_row`
    ledger = pl.DataFrame(rows, schema={"_row": pl.Int64, "source": pl.String, "id": pl.String}, orient="row")
    repeats = repeated_ids(ledger)
    unique = assign_unique_ids(ledger, repeats)
    assert unique["_row"].to_list() == [r for r, _, _ in rows]  # row order kept
    assert dict(zip(unique["_row"], unique["id"], strict=True)) == reference(rows)
    ids = unique.drop_nulls("id")
    assert not ids.select("source", "id").is_duplicated().any()  # unique within each source
    expected: dict[str, int] = {}
    for row, source, id_ in rows:
        if reference(rows)[row] != id_:
            expected[source] = expected.get(source, 0) + 1
    assert duplicate_id_warnings(repeats) == [
        f"{s}: {n} record(s) share an id with an earlier record of the source; they got ~2, ~3, ... suffixes"
        for s, n in sorted(expected.items())
    ]


def test_no_shared_ids_no_warnings():
    ledger = pl.DataFrame({"_row": [0, 1, 2], "source": ["a", "a", "b"], "id": ["x", None, "x"]})
    repeats = repeated_ids(ledger)
    assert repeats.is_empty() and duplicate_id_warnings(repeats) == []
    assert assign_unique_ids(ledger, repeats).equals(ledger)
