"""What `minhash_dedup` compares: the text of a record's fields, its skeleton, units and n-grams.

Text (`fields`): `prompt` is the system and user turns, `response` the assistant turns, `all` every
turn; pretrain records always use `text`. With `include_input = false` the Alpaca `input` (or Dolly
`context`) appended to the first user turn is left out.

Skeleton (`template = true`), rules applied in this order:
1. fenced code blocks (```...```) and inline code (`...`) -> `⟨code⟩`
2. URLs (http://, https://, www.) -> `⟨url⟩`; e-mail addresses -> `⟨email⟩`
3. quoted spans ("...", “...”, ‘...’, and '...' between non-letters), up to 300 characters -> `⟨quote⟩`
4. numbers (digits with `.`/`,` separators, an optional sign and `%`) -> `⟨num⟩`
5. line breaks -> `⟨nl⟩` (layout such as "Q: ... A: ..." on separate lines is part of a template)
6. case folded (lower case); every character that is not a letter, digit, `_` or a placeholder
   bracket becomes a space.
Without `template`, only step 6 applies.

Units: `word` splits the folded text on white space; `char` takes its characters (white space
removed; a placeholder stays one unit); `auto` uses characters for a text whose letters are mostly CJK
(no spaces between words) and words otherwise. With `template`, start and end markers are added as
units. N-grams: each run of `ngram` consecutive units, hashed from the units' hashes
(`signature.ngram_hashes`). A text with fewer units than `ngram` is shingled with one n-gram of all
its units, so short texts keep what distinguishes them; a text without units has no shingles and is
never clustered.
"""

from __future__ import annotations

import polars as pl

FENCED = r"```[\s\S]*?```"
INLINE_CODE = r"`[^`\n]+`"
URL = r"(?:https?://|www\.)[^\s<>\"')\]]+"
EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
QUOTED = r"\"[^\"\n]{1,300}\"|“[^”\n]{1,300}”|‘[^’\n]{1,300}’|(?:^|[^\w'])'[^'\n]{1,300}'(?:[^\w']|$)"
NUMBER = r"[-+]?\d(?:[\d,.]*\d)?%?"
CJK = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]"


def field_text(fields: str, include_input: bool) -> pl.Expr:
    """The text of the chosen fields: pretrain `text`, or the chosen turns joined by newlines."""
    role = pl.element().struct.field("role")
    content = pl.element().struct.field("content")
    roles = {"prompt": ("system", "user"), "response": ("assistant",), "all": ("system", "user", "assistant")}[fields]
    messages = pl.col("messages")
    if not include_input and "user" in roles:
        messages = _without_input(messages)
    turns = messages.list.eval(content.filter(role.is_in(roles))).list.join("\n")
    return pl.when(pl.col("kind") == "pretrain").then(pl.col("text")).otherwise(turns)


def _without_input(messages: pl.Expr) -> pl.Expr:
    """Messages whose first user turn loses the appended Alpaca `input` / Dolly `context` (kept in meta)."""
    appended = pl.coalesce(
        pl.col("meta").str.json_path_match("$.input"), pl.col("meta").str.json_path_match("$.context")
    ).fill_null("")
    first_user = messages.list.eval(pl.element().struct.field("role") == "user").list.arg_max()
    return pl.struct(messages.alias("m"), first_user.alias("i"), appended.alias("a")).map_elements(
        _strip_input, return_dtype=pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    )


def _strip_input(row: dict) -> list[dict]:
    turns = [dict(t) for t in row["m"] or []]
    i, suffix = row["i"], "\n\n" + (row["a"] or "")
    if turns and i is not None and turns[i]["content"].endswith(suffix):
        turns[i]["content"] = turns[i]["content"][: -len(suffix)]
    return turns


def fold(text: pl.Expr, template: bool) -> pl.Expr:
    """The skeleton (template) or plain folded text (see the module doc for the rules)."""
    if template:
        text = (
            text.str.replace_all(FENCED, " ⟨code⟩ ")
            .str.replace_all(INLINE_CODE, " ⟨code⟩ ")
            .str.replace_all(URL, " ⟨url⟩ ")
            .str.replace_all(EMAIL, " ⟨email⟩ ")
            .str.replace_all(QUOTED, " ⟨quote⟩ ")
            .str.replace_all(NUMBER, " ⟨num⟩ ")
            .str.replace_all("\n", " ⟨nl⟩ ")  # line breaks are layout, and layout is part of a template
        )
    return text.str.to_lowercase().str.replace_all(r"[^\w⟨⟩]+", " ").str.strip_chars()


def by_words(folded: pl.Expr, unit: str) -> pl.Expr:
    """Whether each record is split into words (else characters): `auto` picks characters when most
    of the letters are CJK."""
    if unit != "auto":
        return pl.lit(unit == "word")
    return folded.str.count_matches(CJK) * 2 <= folded.str.count_matches(r"\w")


def units(folded: pl.Expr, unit: str, split: pl.Expr | None = None) -> pl.Expr:
    """List of units per record (see the module doc); a placeholder is one unit in either mode. With
    `auto`, `split` may give `by_words` already computed (a column), else it is computed here."""

    def words(text: pl.Expr) -> pl.Expr:
        return text.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))

    def chars(text: pl.Expr) -> pl.Expr:
        return text.str.extract_all(r"⟨[a-z]+⟩|\S")

    if unit != "auto":
        return words(folded) if unit == "word" else chars(folded)
    split = by_words(folded, unit) if split is None else split  # each record is split one way only
    return pl.when(split).then(words(pl.when(split).then(folded))).otherwise(chars(pl.when(~split).then(folded)))
