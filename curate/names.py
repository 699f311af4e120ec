"""Names made unique by a `~k` suffix: record ids in the ledger, near-duplicate cluster names."""

from __future__ import annotations


def free_name(stem: str, taken: set[str], first: int = 2, plain: bool = True) -> str:
    """`stem` itself when `plain` and no name in `taken` is it, else `stem~k` for the smallest free
    k >= `first`; the name returned is added to `taken`."""
    name, k = stem, first
    if not plain or name in taken:
        while (name := f"{stem}~{k}") in taken:
            k += 1
    taken.add(name)
    return name
