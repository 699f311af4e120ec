"""Hashed n-gram sentence vectors: no model, no network, deterministic.

Text (`field`): `prompt` is the system and user turns, `response` the assistant turns, `all` every turn;
pretrain records always use `text` (the same rule as `minhash_dedup`, see `curate.minhash.shingles`).

Tokens: the lower-cased text split into runs of letters/digits (`\\w+`), except that every CJK character
is a token of its own (Chinese and Japanese have no spaces). Features: every token (unigram) and every
pair of consecutive tokens (bigram; CJK bigrams are character bigrams). Each feature is hashed to 64 bits
(polars' string hash of the token, combined and finalised with MurmurHash3's fmix64, so the value is
stable for a given polars version, as for MinHash signatures); its low 32 bits are the feature id: bit 0
is the sign and the other bits pick one of `dim` buckets (signed feature hashing keeps dot products
unbiased). A feature seen `c` times in a record weighs `1 + ln c` (sublinear tf). Rows are
L2-normalised float32; a record without tokens is the zero vector.

Frame (`frame = m`): only the first and last m tokens of a text are embedded (a boundary token keeps
head and tail bigrams apart). Instruction templates put their fixed wording around the variable part
(a passage, a question), so this view finds templates that the whole text, dominated by the passage,
hides: on P3 (benchmarks/EVAL_DIVERSITY.md) a record's nearest neighbour shares its template 68% of the
time with `frame = 8`, against 39% on the whole prompt.

Recurring features (`min_df`, `vectors_from_ids`): keeping only features found in at least `min_df`
records of the dataset (a barrier computes the counts) leaves the wording that recurs across records
and drops what is specific to one record. With `frame = 8` that is close to a template's fixed text.

No idf: words common to every record (the, of, 的) give all vectors a shared component. Scores that
compare records subtract the dataset's mean vector first (`center`), which removes that shared
component; metrics that compare datasets use the raw vectors so that figures are comparable.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from curate.minhash.shingles import field_text
from curate.minhash.signature import fmix64

TOKEN = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]|[^\W\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]+"
FIELDS = ("prompt", "response", "all")
_PAIR_MIX = np.uint64(0x9E3779B97F4A7C15)
_LOW32 = np.uint64(0xFFFFFFFF)


def text_of(field: str) -> pl.Expr:
    """Expression for the text that is embedded (see the module doc); null becomes empty."""
    return field_text(field, include_input=True).fill_null("")


def tokens(texts: pl.Series) -> pl.Series:
    """Lower-cased tokens per text (list of strings), as the module doc describes."""
    return texts.fill_null("").str.to_lowercase().str.extract_all(TOKEN)


def feature_hashes(token_lists: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every unigram and bigram, and the index of the text each belongs to."""
    lengths = token_lists.list.len().fill_null(0).to_numpy().astype(np.int64)
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    flat = token_lists.explode().drop_nulls()
    with np.errstate(over="ignore"):
        unit = fmix64(flat.hash(seed=0).to_numpy().astype(np.uint64))
        same = owner[1:] == owner[:-1] if len(owner) else np.zeros(0, dtype=bool)
        pairs = fmix64(unit[:-1][same] * _PAIR_MIX + unit[1:][same] + np.uint64(1))
    return np.concatenate([unit, pairs]), np.concatenate([owner, owner[:-1][same]])


def framed(token_lists: pl.Series, frame: int) -> pl.Series:
    """The first and last `frame` tokens of each list with a boundary token between them (lists of at
    most 2 x `frame` tokens are kept whole); `frame = 0` keeps every token."""
    if frame <= 0:
        return token_lists
    cut = pl.concat_list(pl.col("t").list.head(frame), pl.lit(["\x00"]), pl.col("t").list.tail(frame))
    whole = pl.col("t").list.len() <= 2 * frame
    return pl.DataFrame({"t": token_lists}).select(pl.when(whole).then(pl.col("t")).otherwise(cut))["t"]


def feature_ids(texts: pl.Series, frame: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """32-bit feature ids (the low half of the feature hashes) of the texts, and the text index of each
    (not sorted: unigrams of all texts, then bigrams)."""
    features, owner = feature_hashes(framed(tokens(texts), frame))
    return (features & _LOW32).astype(np.uint32), owner


def hashed_vectors(texts: pl.Series, dim: int, frame: int = 0) -> np.ndarray:
    """L2-normalised float32 vectors (len(texts) x dim) of the texts (see the module doc); with `frame`,
    of their first and last `frame` tokens only (`framed`)."""
    ids, owner = feature_ids(texts, frame)
    return vectors_from_ids(ids, owner, len(texts), dim)


def vectors_from_ids(ids: np.ndarray, owner: np.ndarray, n: int, dim: int, min_df: int = 0) -> np.ndarray:
    """Vectors of n texts from their feature ids (`feature_ids`). With `min_df`, features found in fewer
    than `min_df` of the n texts are left out: what remains is wording that recurs across records
    (template text), not what is specific to one record (a text with none is the zero vector)."""
    out = np.zeros(n * dim, dtype=np.float64)
    if len(ids):
        key = (owner.astype(np.uint64) << np.uint64(32)) | ids.astype(np.uint64)
        unique, counts = np.unique(key, return_counts=True)
        low = unique & _LOW32
        if min_df > 1:  # document frequency: unique (text, feature) pairs per feature
            _, inverse, df = np.unique(low, return_inverse=True, return_counts=True)
            keep = df[inverse] >= min_df
            unique, counts, low = unique[keep], counts[keep], low[keep]
        rows = (unique >> np.uint64(32)).astype(np.int64)
        bucket = ((low >> np.uint64(1)) % np.uint64(dim)).astype(np.int64)
        weights = (1.0 + np.log(counts)) * np.where(low & np.uint64(1), -1.0, 1.0)
        out = np.bincount(rows * dim + bucket, weights=weights, minlength=n * dim)
    return normalize(out.reshape(n, dim).astype(np.float32))


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32, in place where possible."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


def center(vectors: np.ndarray, min_norm: float = 1e-3, inplace: bool = False) -> np.ndarray:
    """Vectors minus their mean, re-normalised: removes the component every record shares.

    A record within `min_norm` of the mean (after centring) is represented by the mean's direction, so
    records that all equal the mean stay identical to each other. Zero (empty) rows stay zero. With
    `inplace`, `vectors` is overwritten (no copy of a large matrix).
    """
    if len(vectors) == 0:
        return vectors.copy()
    mean = vectors.mean(axis=0, dtype=np.float64).astype(np.float32)
    empty = ~vectors.any(axis=1)
    out = vectors if inplace else vectors.copy()
    out -= mean
    norms = np.linalg.norm(out, axis=1)
    at_mean = (norms < min_norm) & ~empty
    out = normalize(out)
    mean_norm = float(np.linalg.norm(mean))
    if at_mean.any():
        out[at_mean] = mean / mean_norm if mean_norm > 0 else 0.0
    out[empty] = 0.0
    return out
