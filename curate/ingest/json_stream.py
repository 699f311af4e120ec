"""Reading a `.json` file in bounded memory: a JSON array item by item, a single object, or JSON Lines
that were named `.json`.

Values are parsed by the standard library's decoder (`json.JSONDecoder.raw_decode`), the same one
`json.loads` uses, so numbers, escapes and duplicate keys come out as they would from the whole file.
The text is decoded chunk by chunk, in the encoding `json.loads` would pick for the file's bytes (UTF-8,
with or without a byte-order mark, UTF-16 or UTF-32, surrogates passed through), and parsed from a
buffer that holds the unread part of the current chunk and the item being parsed, never the whole
file: memory is about one read chunk plus the largest item.

What a file holds decides how it is read:
- `[ ... ]`: each element is a record, numbered from 1 (an element that is not an object is quarantined
  as `not_an_object`). Damage inside the array (invalid JSON, invalid UTF-8, text after the closing
  bracket) quarantines the damage as the next record, with its line and column in the reason; the
  elements before it are kept and the rest of the file is not read.
- one object: one record, line 1.
- an object followed by more text (JSON Lines in a `.json` file, a common mislabelling): the file is read
  as JSON Lines, each line on its own (a broken line is quarantined alone).
- anything else (a string, a number, invalid JSON): one quarantined record for the whole file.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Generator, Iterator
from typing import Any

from curate.ingest import files
from curate.ingest.files import InputFile, iter_chunks

_DECODER = json.JSONDecoder()
_NOT_WHITESPACE = re.compile(r"[^ \t\n\r]")
# An error this close to the end of the buffer may only mean that the value goes on in the next chunk.
_NEAR_END = 16
_NUMBER_GOES_ON = frozenset("0123456789.eE+-")


class JsonDamage(Exception):
    """The file's text stops being valid JSON (or stops decoding: `invalid_utf8`) at `line`:`column`."""

    def __init__(self, reason: str, message: str, line: int, column: int, raw: str, too_long: bool = False):
        super().__init__(f"{reason}: {message} at line {line} column {column}")
        self.reason, self.message, self.line, self.column, self.raw = reason, message, line, column, raw
        self.too_long = too_long  # the value was cut at MAX_VALUE_CHARS, not found invalid


class TextBuffer:
    """The decoded text of a file with a read position, refilled from `chunks` on demand.

    Consumed text is dropped when the buffer is refilled, so the buffer holds the unparsed rest of the
    last chunks only. Line and column numbers stay those of the whole file. Bytes that do not decode
    end the text: what precedes them is parsed, and reading past them raises JsonDamage."""

    def __init__(self, chunks: Generator[bytes, None, None]):
        self._chunks = chunks
        self.text = ""
        self.pos = 0
        self.eof = False  # no more text will come (the file ended, or its bytes stopped decoding)
        self._decoder: codecs.IncrementalDecoder | None = None  # chosen from the first bytes
        self._head = b""  # the first bytes, until there are enough to choose the encoding
        self._bytes_read = 0  # bytes of the file read so far
        self._bad_bytes: str | None = None  # why the text ended early
        self._lines_before = 0  # newlines in text dropped from the buffer
        self._line_start = 0  # offset (from the buffer start, may be negative) where the current line began

    def fill(self, at_least: int = 1) -> bool:
        """Read until `at_least` more characters are buffered past the position, or the text ends;
        False when nothing more could be read. Raises JsonDamage when that was because of bytes that
        do not decode."""
        self._drop_consumed()
        pieces, added = [self.text], 0
        while not self.eof and added < at_least:
            chunk = next(self._chunks, None)
            self._bytes_read += len(chunk or b"")
            piece = self._decode(chunk or b"", final=chunk is None)
            pieces.append(piece)
            added += len(piece)
        if added:
            self.text = "".join(pieces)  # once per fill: a long value is not copied chunk by chunk
        elif self._bad_bytes is not None:
            line, column = self.line_column(len(self.text))
            raise JsonDamage("invalid_utf8", self._bad_bytes, line, column, _excerpt(self.text[-80:]))
        return added > 0

    def _decode(self, chunk: bytes, final: bool) -> str:
        self.eof = final
        if self._decoder is None:  # json.loads's choice of encoding needs the first 4 bytes
            self._head += chunk
            if len(self._head) < 4 and not final:
                return ""
            encoding = json.detect_encoding(self._head)
            self._decoder = codecs.getincrementaldecoder(encoding)("surrogatepass")
            chunk, self._head = self._head, b""
        state = self._decoder.getstate()
        try:
            return self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            buffered = len(state[0])  # bytes of a character cut by the previous chunk's end
            self._bad_bytes = f"byte {self._bytes_read - len(chunk) - buffered + exc.start} is not valid " + (
                f"{exc.encoding.upper()} ({exc.reason})"
            )
            self.eof = True
            self._decoder.setstate(state)
            return self._decoder.decode(chunk[: max(0, exc.start - buffered)], final=False)

    def close(self) -> None:
        """Stop reading: close the file behind the chunks."""
        self._chunks.close()

    def _drop_consumed(self) -> None:
        if self.pos == 0:
            return
        newlines = self.text.count("\n", 0, self.pos)
        if newlines:
            self._lines_before += newlines
            self._line_start = self.text.rindex("\n", 0, self.pos) + 1
        self._line_start -= self.pos
        self.text, self.pos = self.text[self.pos :], 0

    def skip_whitespace(self) -> str:
        """The next character that is not whitespace ('' at the end of the text), not consumed."""
        while True:
            found = _NOT_WHITESPACE.search(self.text, self.pos)
            if found is not None:
                self.pos = found.start()
                return self.text[self.pos]
            self.pos = len(self.text)
            if not self.fill():
                return ""

    def line_column(self, offset: int) -> tuple[int, int]:
        """1-based line and column of buffer offset `offset` in the whole file."""
        newlines = self.text.count("\n", 0, offset)
        line = self._lines_before + newlines + 1
        start = self.text.rindex("\n", 0, offset) + 1 if newlines else self._line_start
        return line, offset - start + 1

    def damage(self, message: str, offset: int, too_long: bool = False) -> JsonDamage:
        """The JsonDamage for invalid JSON at buffer offset `offset`, with the text around it."""
        line, column = self.line_column(offset)
        raw = _excerpt(self.text[max(0, offset - 80) : offset + 80])
        return JsonDamage("invalid_json", message, line, column, raw, too_long)

    def _complete(self, value: Any, end: int) -> bool:
        """False when a number parsed up to `end` may go on in text not read yet (`12` of `12.5` at the
        buffer's end); any other value ends with its own last character."""
        if not isinstance(value, int | float) or (self.eof and self._bad_bytes is None):
            return True
        return end < len(self.text) - _NEAR_END or (end < len(self.text) and self.text[end] not in _NUMBER_GOES_ON)

    def value(self) -> Any:
        """Parse the JSON value at the position and move past it. Raises JsonDamage when it is invalid."""
        want = max(1 << 16, len(self.text) - self.pos)
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                may_go_on = exc.pos >= len(self.text) - _NEAR_END or exc.msg.startswith("Unterminated string")
                if (self.eof and self._bad_bytes is None) or not may_go_on:
                    raise self.damage(exc.msg, exc.pos) from None
            except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits, nesting too deep
                raise self.damage(f"cannot parse the value ({type(exc).__name__}: {exc})", self.pos) from None
            else:
                if self._complete(value, end):
                    self.pos = end
                    return value
            held = len(self.text) - self.pos
            if held >= files.MAX_VALUE_CHARS:  # memory stays bounded in a damaged file too
                raise self.damage(
                    f"a value of over {files.MAX_VALUE_CHARS:,} characters (an unterminated string?); "
                    "curate reads values up to that size",
                    self.pos,
                    too_long=True,
                )
            self.fill(min(want, files.MAX_VALUE_CHARS - held))  # keeps the text from the position on
            want *= 2  # a long value is re-parsed a few times only


def iter_json(path: InputFile, problem: Callable[..., Any], jsonl: Callable[[InputFile], Iterator]) -> Iterator:
    """Records of a `.json` file as (number, payload) pairs (see the module doc); `problem(reason, raw)`
    makes a quarantined item and `jsonl(path)` reads the file as JSON Lines."""
    chunks = iter_chunks(path)
    try:
        yield from _read_json(path, TextBuffer(chunks), problem, jsonl)
    finally:
        chunks.close()  # the file, when the caller stops early (format detection reads a few items)


def _read_json(
    path: InputFile, text: TextBuffer, problem: Callable[..., Any], jsonl: Callable[[InputFile], Iterator]
) -> Iterator:
    first = ""
    try:
        first = text.skip_whitespace()
        if first == "":
            return
        if first == "[":
            text.pos += 1
            yield from _array_items(text, problem)
            return
        value = text.value()
        if text.skip_whitespace():
            raise text.damage("Extra data", text.pos)
    except JsonDamage as exc:
        if not exc.too_long and _looks_like_lines(path):  # JSON Lines named .json: each line on its own
            text.close()
            yield from jsonl(path)
        elif exc.reason == "invalid_utf8":
            yield 1, problem(f"invalid_utf8: {exc.message}; file not read")
        else:
            yield exc.line, problem(f"invalid_json: {exc.message} at line {exc.line} column {exc.column}", exc.raw)
        return
    if isinstance(value, dict):
        yield 1, value
    else:
        kind = json_type(value)
        yield 1, problem(f"not_an_object: the file holds a JSON {kind}, not an array of objects")


# After an array element: whitespace, then the comma or the closing bracket, then whitespace.
_AFTER_ITEM = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")


def _array_items(text: TextBuffer, problem: Callable[..., Any]) -> Iterator:
    number = 0
    try:
        if text.skip_whitespace() == "]":
            text.pos += 1
        else:
            while True:
                # Fast path, for the elements that end well inside the buffer: one parse and one match each.
                buffer, pos, limit, closed = text.text, text.pos, len(text.text) - _NEAR_END, False
                while True:
                    try:
                        item, end = _DECODER.raw_decode(buffer, pos)
                    except (ValueError, RecursionError):  # left to `value`, which tells why
                        break
                    after = _AFTER_ITEM.match(buffer, end)
                    if end >= limit or after is None or after.end() >= limit:
                        break
                    number += 1
                    yield number, item if type(item) is dict else _record(item, problem)
                    pos, closed = after.end(), after.group(1) == "]"
                    if closed:
                        break
                text.pos = pos
                if closed:
                    break
                # The element at the buffer's end (or a damaged one): parsed with refills and checks.
                item = text.value()
                number += 1
                yield number, _record(item, problem)
                after_item = text.skip_whitespace()
                if after_item not in (",", "]"):  # "" at the end of the file
                    raise text.damage("Expecting ',' delimiter", text.pos)
                text.pos += 1
                if after_item == "]":
                    break
                text.skip_whitespace()
        if text.skip_whitespace():
            raise text.damage("Extra data", text.pos)
    except JsonDamage as exc:
        where = f"at line {exc.line} column {exc.column}"
        rest = "the rest of the file was not read" if number else "file not read"
        message = f"{exc.reason}: {exc.message} {where}; {rest}"
        if exc.reason == "invalid_utf8":
            message = f"invalid_utf8: {exc.message} (line {exc.line}); {rest}"
        yield number + 1, problem(message, exc.raw)


def _record(item: Any, problem: Callable[..., Any]) -> Any:
    """An array element as a record: the object, or a quarantined item for any other value."""
    if isinstance(item, dict):
        return item
    return problem(f"not_an_object: record is a JSON {json_type(item)}, expected an object", json.dumps(item)[:2000])


def _looks_like_lines(path: InputFile) -> bool:
    """The rule by which a `.json` file that is not one JSON value (nor an array) is read as JSON Lines:
    its bytes start with `{` and have a newline followed by more than whitespace. Reads the file up to
    that point only."""
    state = "leading"  # then "first line", then "after it"
    for chunk in iter_chunks(path):
        if state == "leading":
            chunk = chunk.lstrip()
            if chunk and not chunk.startswith(b"{"):
                return False
            state = "first line" if chunk else state
        if state == "first line":
            at = chunk.find(b"\n")
            if at < 0:
                continue
            state, chunk = "after it", chunk[at:]
        if state == "after it" and chunk.strip():
            return True
    return False


def _excerpt(text: str) -> str:
    """Text for a quarantine row: surrogates (decoded with `surrogatepass`) written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
