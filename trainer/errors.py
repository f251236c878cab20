"""Validation errors as sentences: pydantic's and FastAPI's ``[{loc, msg}, ...]`` lists, formatted once (stdlib only).

Used by the CLI, the API's nested validators, the UI's API client and the REST example, so a field is named the
same way everywhere: ``optimizers[0] › hyperparameters: lr must be > 0.0``.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping

__all__ = ["field_path", "clean_message", "plain_message", "error_lines", "error_summary"]

# Where FastAPI found a value; not part of the field's name.
_SOURCES = ("body", "query", "path")
# Prefixes pydantic puts before the message of a ValueError / assert raised in a validator.
_PREFIXES = ("Value error, ", "Assertion failed, ")


def field_path(loc: Iterable[Any]) -> str:
    """``["body", "optimizers", 0, "hyperparameters"]`` -> ``"optimizers[0] › hyperparameters"``."""
    out: list[str] = []
    for p in loc:
        if p in _SOURCES:
            continue
        if isinstance(p, int) and out:
            out[-1] += f"[{p}]"
        else:
            out.append(str(p))
    return " › ".join(out)


def clean_message(msg: str) -> str:
    """The message without pydantic's "Value error, " (or "Assertion failed, ") prefix."""
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def _char_class(body: str) -> str:
    """``A-Za-z0-9_.:+/-`` -> ``"letters, digits and _ . : + / -"``."""
    words = []
    if "A-Z" in body or "a-z" in body:
        words.append("letters")
    if "0-9" in body:
        words.append("digits")
    rest = re.sub(r"A-Z|a-z|0-9", "", body).replace("\\", "")
    chars = " ".join(dict.fromkeys(rest))
    return ", ".join(words) + (f" and {chars}" if chars and words else chars)


def _pattern_words(pattern: str) -> str:
    """What a simple ``^[first][rest]*$`` pattern allows, in words ("" when it is not of that shape)."""
    classes = re.findall(r"\[([^\]]+)\]", pattern)
    if not classes:
        return ""
    text = f"use only {_char_class(classes[-1])} (no spaces)"
    if len(classes) > 1 and classes[0] != classes[-1]:
        first = _char_class(classes[0]).replace("letters", "a letter").replace("digits", "a digit")
        text += f", starting with {first.replace(', ', ' or ').replace(' and ', ' or ')}"
    return text


def _pattern_mismatch(item: Mapping[str, Any], ctx: Mapping[str, Any]) -> str | None:
    allowed = _pattern_words(str(ctx.get("pattern") or ""))
    return f"{item.get('input')!r} is not allowed here: {allowed}" if allowed and "input" in item else None


# pydantic error types whose message names a regex or says "Input should": the sentence a person reads instead
_PLAIN: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], str | None]] = {
    "string_pattern_mismatch": _pattern_mismatch,
    "greater_than_equal": lambda item, ctx: f"must be at least {ctx['ge']}, got {item.get('input')!r}"
    if "ge" in ctx and "input" in item else None,
    "greater_than": lambda item, ctx: f"must be more than {ctx['gt']}, got {item.get('input')!r}"
    if "gt" in ctx and "input" in item else None,
    "less_than_equal": lambda item, ctx: f"must be at most {ctx['le']}, got {item.get('input')!r}"
    if "le" in ctx and "input" in item else None,
    "less_than": lambda item, ctx: f"must be less than {ctx['lt']}, got {item.get('input')!r}"
    if "lt" in ctx and "input" in item else None,
    "string_too_long": lambda item, ctx: f"is longer than {ctx['max_length']} characters"
    if "max_length" in ctx else None,
    "too_long": lambda item, ctx: f"has more than {ctx['max_length']} entries" if "max_length" in ctx else None,
}


def plain_message(item: Mapping[str, Any]) -> str:
    """One error's message in words: pydantic's own for the types in ``_PLAIN`` (regex patterns, "Input should
    be ..."), otherwise its message without the validator prefix."""
    rewrite = _PLAIN.get(str(item.get("type") or ""))
    raw_ctx = item.get("ctx")
    ctx: Mapping[str, Any] = raw_ctx if isinstance(raw_ctx, Mapping) else {}
    text = rewrite(item, ctx) if rewrite else None
    return text or clean_message(str(item.get("msg", "invalid value")))


def error_lines(errors: Iterable[Any]) -> list[str]:
    """One sentence per error: ``"<field>: <message>"`` (just the message when it names no field).

    ``errors``: ``ValidationError.errors()`` or a 422 response's ``detail`` list; items that are not dicts are
    shown as they are.
    """
    out = []
    for item in errors:
        if isinstance(item, dict):
            where = field_path(item.get("loc") or ())
            msg = plain_message(item)
            out.append(f"{where}: {msg}" if where else msg)
        else:
            out.append(str(item))
    return out


def error_summary(errors: Iterable[Any]) -> str:
    """:func:`error_lines` on one line, separated by "; " (for a ``ValueError`` raised inside a validator)."""
    return "; ".join(error_lines(errors))
