"""The workers' scan of the inputs as a stream: each file's batches become known as soon as its own scan
task is done, so the batches of the first files run while later files are still being scanned."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from curate.ingest.cut import Cut
from curate.ingest.files import InputFile

Key = tuple[int, InputFile]  # (source number, input file)


class ScanStream(Mapping[Key, list[Cut]]):
    """The batches of each scanned file, by (source number, file), taken from `results` (one per key, in
    the order of `keys`: an executor's `map` over the scan tasks) only as far as a lookup needs. A file
    whose scan returned None (the driver reads it) is absent. Iterating, or asking for its size, waits
    for every scan. `on_complete` is called once with all the batches when the last scan is taken."""

    def __init__(
        self,
        keys: list[Key],
        results: Iterator[list[Cut] | None],
        on_complete: Callable[[dict[Key, list[Cut]]], None] | None = None,
    ):
        self._keys, self._results, self._on_complete = keys, results, on_complete
        self._known = set(keys)
        self._taken: dict[Key, list[Cut] | None] = {}

    def _take(self, until: Key | None = None) -> None:
        """Take results until `until` has its own (None: until all are taken)."""
        while len(self._taken) < len(self._keys) and (until is None or until not in self._taken):
            self._taken[self._keys[len(self._taken)]] = next(self._results)
            if len(self._taken) == len(self._keys) and self._on_complete is not None:
                self._on_complete(self._found())

    def _found(self) -> dict[Key, list[Cut]]:
        return {key: cuts for key, cuts in self._taken.items() if cuts is not None}

    def __getitem__(self, key: Key) -> list[Cut]:
        self._take(until=key if key in self._known else None)
        cuts = self._taken.get(key)
        if cuts is None:
            raise KeyError(key)
        return cuts

    def __iter__(self) -> Iterator[Key]:
        self._take()
        return iter(self._found())

    def __len__(self) -> int:
        self._take()
        return len(self._found())
