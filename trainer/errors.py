"""Validation errors as sentences: pydantic's and FastAPI's ``[{loc, msg}, ...]`` lists, formatted once (stdlib only).

Used by the CLI, the API's nested validators, the UI's API client and the REST example, so a field is named the
same way everywhere: ``optimizers[0] › hyperparameters: lr must be > 0.0``.
"""
from __future__ import annotations

from typing import Any, Iterable

__all__ = ["field_path", "clean_message", "error_lines", "error_summary"]

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


def error_lines(errors: Iterable[Any]) -> list[str]:
    """One sentence per error: ``"<field>: <message>"`` (just the message when it names no field).

    ``errors``: ``ValidationError.errors()`` or a 422 response's ``detail`` list; items that are not dicts are
    shown as they are.
    """
    out = []
    for item in errors:
        if isinstance(item, dict):
            where = field_path(item.get("loc") or ())
            msg = clean_message(str(item.get("msg", "invalid value")))
            out.append(f"{where}: {msg}" if where else msg)
        else:
            out.append(str(item))
    return out


def error_summary(errors: Iterable[Any]) -> str:
    """:func:`error_lines` on one line, separated by "; " (for a ``ValueError`` raised inside a validator)."""
    return "; ".join(error_lines(errors))
