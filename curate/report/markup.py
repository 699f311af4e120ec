"""A tiny HTML builder that escapes every piece of data: only `Markup` built here is emitted raw.

Record text in a report is untrusted; `h("td", text)` escapes it, `h("td", Markup(...))` does not.
"""

from __future__ import annotations

import html
from collections.abc import Iterable


class Markup(str):
    """A string that is already safe HTML (built by `h` or a helper in this package)."""


Child = str | int | float | Markup | None | Iterable["Child"]

VOID = frozenset({"br", "hr", "meta", "img", "input", "link"})


def esc(value: object) -> Markup:
    """`value` as safe HTML text (Markup passes through unchanged)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def render(children: Iterable[Child]) -> Markup:
    """Children as HTML: strings escaped, Markup kept, None skipped, nested iterables flattened."""
    parts: list[str] = []
    for child in children:
        if child is None:
            continue
        if isinstance(child, str | int | float):
            parts.append(esc(child))
        else:
            parts.append(render(child))
    return Markup("".join(parts))


def h(tag: str, *children: Child, **attrs: object) -> Markup:
    """An element; `class_` is `class`, `data_x` is `data-x`; attribute values are escaped, None skipped."""
    text = "".join(
        f' {name.rstrip("_").replace("_", "-")}="{esc(value)}"' for name, value in attrs.items() if value is not None
    )
    if tag in VOID:
        return Markup(f"<{tag}{text}>")
    return Markup(f"<{tag}{text}>{render(children)}</{tag}>")
