"""A small, safe expression language over record columns (used by `filter` and mixture groups).

    reasoning_depth >= 0.3 or kind == 'pretrain'
    cot and not ('think_block' in cot_style)
    source in ['gsm8k', 'flan'] and n_tokens < 4096
    lang is not null and lang != 'en'

Grammar (keywords are case-insensitive; `&&`, `||`, `!` are accepted for and, or, not)::

    expr       := and_expr ('or' and_expr)*
    and_expr   := not_expr ('and' not_expr)*
    not_expr   := 'not' not_expr | comparison
    comparison := operand [ ('==' | '!=' | '<' | '<=' | '>' | '>=') operand
                          | ['not'] 'in' operand
                          | 'is' ['not'] 'null' ]
    operand    := column | number | 'string' | "string" | true | false | null | '[' literals ']' | '(' expr ')'

A bare column is a condition only if it is boolean (`cot`); `x in [..]` tests membership in a list of
literals, `'a' in col` tests that a list column contains `'a'` (or that a string column contains the
substring). Null follows SQL/Kleene logic (`null or true` is true); a row whose condition is null
counts as not matching. Nothing is ever `eval`ed: the text is tokenized and parsed here and compiled
to a polars expression. Errors are `ExprError`s carrying the character position of the bad token.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import polars as pl

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_]))
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|<|>|&&|\|\||!|\(|\)|\[|\]|,|=)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
KEYWORDS = {"and", "or", "not", "in", "is", "null", "none", "true", "false"}
COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}


class ExprError(ValueError):
    """A syntax or column error, with the 0-based character position of the offending token."""

    def __init__(self, message: str, source: str, pos: int, hint: str = ""):
        self.message, self.source, self.pos, self.hint = message, source, pos, hint
        super().__init__(message, source, pos, hint)

    def __str__(self) -> str:
        hint = f"; {self.hint}" if self.hint else ""
        return f"{self.message} (character {self.pos + 1}){hint}:\n      {self.source}\n      {' ' * self.pos}^"


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, op, name, keyword, end
    text: str
    pos: int
    value: Any = None


def tokenize(source: str) -> list[Token]:
    """Split an expression into tokens; raises `ExprError` at the first character no token matches."""
    tokens, pos = [], 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if not m:
            raise ExprError(f"unexpected character {source[pos]!r}", source, pos)
        kind, text = m.lastgroup or "", m.group()
        if kind == "number":
            tokens.append(Token(kind, text, pos, float(text) if re.search(r"[.eE]", text) else int(text)))
        elif kind == "string":
            tokens.append(Token(kind, text, pos, re.sub(r"\\(.)", r"\1", text[1:-1])))
        elif kind == "name" and text.lower() in KEYWORDS:
            tokens.append(Token("keyword", text.lower(), pos))
        elif kind == "op" and text == "=":
            raise ExprError("'=' is not a comparison; use '=='", source, pos)
        elif kind != "ws":
            alias = {"&&": "and", "||": "or", "!": "not"}.get(text)
            tokens.append(Token("keyword", alias, pos) if alias else Token(kind, text, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(source)))
    return tokens


# --- syntax tree -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    start: int
    end: int


@dataclass(frozen=True)
class Column(Node):
    name: str


@dataclass(frozen=True)
class Literal(Node):
    value: Any


@dataclass(frozen=True)
class ListLiteral(Node):
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Compare(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class In(Node):
    left: Node
    right: Node
    negated: bool


@dataclass(frozen=True)
class IsNull(Node):
    operand: Node
    negated: bool


@dataclass(frozen=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # "and" | "or"
    items: tuple[Node, ...] = field(default=())


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, tok: Token | None = None) -> ExprError:
        return ExprError(message, self.source, (tok or self.tok).pos)

    def take(self, kind: str, text: str | None = None) -> Token | None:
        t = self.tok
        if t.kind == kind and (text is None or t.text == text):
            self.i += 1
            return t
        return None

    def expect(self, kind: str, text: str, what: str) -> Token:
        t = self.take(kind, text)
        if t is None:
            raise self.error(f"expected {what}, found {self.describe(self.tok)}")
        return t

    @staticmethod
    def describe(t: Token) -> str:
        return "the end of the expression" if t.kind == "end" else repr(t.text)

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise self.error("empty expression")
        node = self.or_expr()
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.describe(self.tok)}; expected 'and', 'or' or the end")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.take("keyword", "or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp(items[0].start, items[-1].end, "or", tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.take("keyword", "and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else BoolOp(items[0].start, items[-1].end, "and", tuple(items))

    def not_expr(self) -> Node:
        t = self.take("keyword", "not")
        if t:
            operand = self.not_expr()
            return Not(t.pos, operand.end, operand)
        return self.comparison()

    def comparison(self) -> Node:
        left = self.operand()
        t = self.tok
        if t.kind == "op" and t.text in COMPARISONS:
            self.i += 1
            right = self.operand()
            return Compare(left.start, right.end, t.text, left, right)
        if t.kind == "keyword" and (t.text == "in" or (t.text == "not" and self.peek_not_in())):
            negated = bool(self.take("keyword", "not"))
            self.expect("keyword", "in", "'in' after 'not'")
            right = self.operand()
            return In(left.start, right.end, left, right, negated)
        if self.take("keyword", "is"):
            negated = bool(self.take("keyword", "not"))
            end = self.expect("keyword", "null", "'null' after 'is'")
            return IsNull(left.start, end.pos + len(end.text), left, negated)
        return left

    def peek_not_in(self) -> bool:
        nxt = self.tokens[self.i + 1]
        return nxt.kind == "keyword" and nxt.text == "in"

    def operand(self) -> Node:
        t = self.tok
        if t.kind == "name":
            self.i += 1
            return Column(t.pos, t.pos + len(t.text), t.text)
        if t.kind in ("number", "string"):
            self.i += 1
            return Literal(t.pos, t.pos + len(t.text), t.value)
        if t.kind == "keyword" and t.text in ("true", "false", "null", "none"):
            self.i += 1
            value = {"true": True, "false": False}.get(t.text)
            return Literal(t.pos, t.pos + len(t.text), value)
        if self.take("op", "("):
            node = self.or_expr()
            close = self.expect("op", ")", "')'")
            return _with_span(node, t.pos, close.pos + 1)
        if self.take("op", "["):
            values = []
            while not self.take("op", "]"):
                if values:
                    self.expect("op", ",", "',' or ']'")
                    if self.take("op", "]"):
                        break
                item = self.operand()
                if not isinstance(item, Literal):
                    raise ExprError(
                        "a list holds literals only (numbers, strings, true/false)", self.source, item.start
                    )
                values.append(item.value)
            return ListLiteral(t.pos, self.tokens[self.i - 1].pos + 1, tuple(values))
        if t.kind == "keyword":
            raise self.error(f"expected a column or a value, found the keyword {t.text!r}")
        raise self.error(f"expected a column or a value, found {self.describe(t)}")


def _with_span(node: Node, start: int, end: int) -> Node:
    """The same node covering its parentheses too (so failure reasons quote them)."""
    return dataclasses.replace(node, start=start, end=end)


# --- the compiled expression -----------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """A parsed expression. `columns` lists the columns it reads; `compile(schema)` builds the polars
    expression for frames with that schema; `clauses` are the top-level `and` parts (for reasons)."""

    source: str
    tree: Node

    @classmethod
    def parse(cls, source: str) -> Expression:
        return cls(source, _Parser(source).parse())

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in self.column_positions()))

    def column_positions(self) -> list[tuple[str, int]]:
        out: list[Column] = []
        _walk_nodes(self.tree, out)
        return [(c.name, c.start) for c in out]

    def text(self, node: Node) -> str:
        """The source text of a node, whitespace collapsed."""
        return " ".join(self.source[node.start : node.end].split())

    @property
    def clauses(self) -> list[Node]:
        tree = self.tree
        return list(tree.items) if isinstance(tree, BoolOp) and tree.op == "and" else [tree]

    def compile(self, schema: pl.Schema | dict[str, pl.DataType], node: Node | None = None) -> pl.Expr:
        """The polars expression (null where the condition is unknown). Raises `ExprError` for unknown
        columns or a non-boolean column used as a condition."""
        return _Compiler(self.source, dict(schema)).condition(self.tree if node is None else node)


def _walk_nodes(node: Node, out: list[Column]) -> None:
    if isinstance(node, Column):
        out.append(node)
    for child in _children(node):
        _walk_nodes(child, out)


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Compare | In):
        return (node.left, node.right)
    if isinstance(node, IsNull | Not):
        return (node.operand,)
    if isinstance(node, BoolOp):
        return node.items
    return ()


def _type_text(dtype: pl.DataType | None) -> str:
    """'a string', 'a number', or the polars type."""
    if dtype == pl.String:
        return "a string"
    return "a number" if dtype is not None and dtype.is_numeric() else str(dtype)


class _Compiler:
    def __init__(self, source: str, schema: dict[str, pl.DataType]):
        self.source, self.schema = source, schema

    def error(self, message: str, node: Node) -> ExprError:
        return ExprError(message, self.source, node.start)

    def dtype(self, node: Node) -> pl.DataType | None:
        if isinstance(node, Column):
            return self.schema[node.name]
        return None

    def value(self, node: Node) -> pl.Expr:
        if isinstance(node, Column):
            if node.name not in self.schema:
                from curate.params import did_you_mean

                close = did_you_mean(node.name, self.schema)
                columns = f"columns: {', '.join(self.schema)}"
                raise ExprError(f"unknown column {node.name!r}{close}", self.source, node.start, columns)
            return pl.col(node.name)
        if isinstance(node, Literal):
            return pl.lit(node.value)
        if isinstance(node, ListLiteral):
            raise self.error("a list can only follow 'in'", node)
        return self.condition(node)

    def condition(self, node: Node) -> pl.Expr:
        if isinstance(node, BoolOp):
            parts = [self.condition(item) for item in node.items]
            out = parts[0]
            for part in parts[1:]:
                out = (out & part) if node.op == "and" else (out | part)
            return out
        if isinstance(node, Not):
            return ~self.condition(node.operand)
        if isinstance(node, IsNull):
            inner = self.value(node.operand)
            return inner.is_not_null() if node.negated else inner.is_null()
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, In):
            out = self.membership(node)
            return ~out if node.negated else out
        if isinstance(node, Column):
            expr = self.value(node)
            dtype = self.schema[node.name]
            if dtype not in (pl.Boolean, pl.Null):
                name = node.name
                how = f"'...' in {name}" if isinstance(dtype, pl.List) else f"{name} > 0 or {name} == '...'"
                raise self.error(f"column {name!r} is {dtype}, not a boolean; compare it (e.g. {how})", node)
            return expr
        if isinstance(node, Literal) and isinstance(node.value, bool):
            return pl.lit(node.value)
        raise self.error("expected a condition (a comparison, 'in', 'is null' or a boolean column)", node)

    def compare(self, node: Compare) -> pl.Expr:
        if any(isinstance(side, Literal) and side.value is None for side in (node.left, node.right)):
            raise self.error("compare with null using 'is null' or 'is not null'", node)
        left, right = self.value(node.left), self.value(node.right)
        for side, other in ((node.left, node.right), (node.right, node.left)):
            dtype = self.dtype(side)
            if dtype is not None and dtype.is_nested():  # polars would fail at run time, casting it
                lists = f"; test a list with 'in' (e.g. 'x' in {side.name})" if isinstance(dtype, pl.List) else ""
                raise self.error(f"column {side.name!r} is {dtype}, which cannot be compared{lists}", side)
            if dtype is None or not isinstance(other, Literal) or other.value is None:
                continue
            if dtype.is_numeric() and not isinstance(other.value, int | float):
                raise self.error(f"column {side.name!r} is a number, compared with {self.text(other)}", other)
            if dtype == pl.String and not isinstance(other.value, str):
                raise self.error(f"column {side.name!r} is a string, compared with {self.text(other)}", other)
        a, b = node.left, node.right
        types = self.dtype(a), self.dtype(b)
        string_and_other = pl.Null not in types and (types[0] == pl.String) != (types[1] == pl.String)
        if isinstance(a, Column) and isinstance(b, Column) and string_and_other:
            kinds = _type_text(types[0]), _type_text(types[1])
            raise self.error(f"column {a.name!r} is {kinds[0]}, compared with column {b.name!r}, {kinds[1]}", b)
        ops = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
        return getattr(left, ops[node.op])(right)

    def membership(self, node: In) -> pl.Expr:
        if isinstance(node.right, ListLiteral):
            return self.value(node.left).is_in(list(node.right.values))
        if isinstance(node.right, Column):
            dtype = self.dtype(node.right) if node.right.name in self.schema else None
            container = self.value(node.right)
            if not isinstance(node.left, Literal):
                raise self.error("'x in column' needs a literal on the left, e.g. 'step_list' in cot_style", node)
            if dtype == pl.Null:
                # all null; or, in the config check, a column a stage adds (typed when the data is)
                return pl.lit(None, pl.Boolean)
            if isinstance(dtype, pl.List):
                return container.list.contains(pl.lit(node.left.value))
            if dtype == pl.String and isinstance(node.left.value, str):
                return container.str.contains(node.left.value, literal=True)
            raise self.error(f"column {node.right.name!r} is {dtype}; 'in' needs a list or a string column", node)
        raise self.error("'in' needs a list [..] or a list/string column on its right", node.right)

    def text(self, node: Node) -> str:
        return self.source[node.start : node.end]


def check_columns(expr: Expression, available: set[str] | list[str]) -> list[tuple[str, int]]:
    """The (column, position) pairs an expression reads that are not in `available`."""
    return [(name, pos) for name, pos in expr.column_positions() if name not in available]
