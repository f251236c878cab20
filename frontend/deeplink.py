"""Deep links: the Compare page's view state <-> URL query parameters (parsed defensively, written compactly).

A pasted or reloaded URL such as ``?cmp=3&x=epochs&log=0&smooth=0.6&bands=1&tr=7,9&xr=0,2.5`` shows the
same view. Every value from the URL is validated here; anything malformed is dropped (the view falls back
to its default) rather than trusted.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

__all__ = ["VIEW_KEYS", "parse_view", "format_view", "MAX_IDS"]

MAX_IDS = 200  # ids taken from one parameter
VIEW_KEYS = ("cmp", "runs", "x", "log", "logx", "bands", "smooth", "tr", "xr")


def _first(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else ""
    return str(value)[:4000]


def _ids(value: Any) -> list[int] | None:
    out: list[int] = []
    for part in _first(value).split(","):
        part = part.strip().lstrip("#")
        if not part:
            continue
        if not (part.isascii() and part.isdigit()) or len(part) > 18:  # "²".isdigit() is true, int("²") fails
            return None
        if int(part) not in out:
            out.append(int(part))
    return out[:MAX_IDS] if out else None


def _flag(value: Any) -> bool | None:
    return {"1": True, "true": True, "0": False, "false": False}.get(_first(value).strip().lower())


def _number(value: Any) -> float | None:
    try:
        x = float(_first(value))
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def parse_view(params: Mapping[str, Any], *, axes: Iterable[str]) -> dict[str, Any]:
    """The valid view settings in ``params`` (query parameters); invalid or missing ones are left out.

    Returns a dict with any of: ``comparison`` (int), ``runs`` (list of ints), ``axis`` (one of ``axes``),
    ``log``/``log_x``/``bands`` (bool), ``smoothing`` (float in [0, 0.99]), ``tr_runs`` (list of ints),
    ``xrange`` ([lo, hi] with lo < hi).
    """
    view: dict[str, Any] = {}
    if "cmp" in params and (ids := _ids(params["cmp"])):
        view["comparison"] = ids[0]
    if "runs" in params and (ids := _ids(params["runs"])):
        view["runs"] = ids
    if "x" in params and _first(params["x"]) in set(axes):
        view["axis"] = _first(params["x"])
    for key, name in (("log", "log"), ("logx", "log_x"), ("bands", "bands")):
        if key in params and (flag := _flag(params[key])) is not None:
            view[name] = flag
    if "smooth" in params and (s := _number(params["smooth"])) is not None and 0 <= s <= 0.99:
        view["smoothing"] = round(s, 2)
    if "tr" in params and (ids := _ids(params["tr"])):
        view["tr_runs"] = ids
    if "xr" in params:
        parts = _first(params["xr"]).split(",")
        if len(parts) == 2:
            lo, hi = _number(parts[0]), _number(parts[1])
            if lo is not None and hi is not None and lo < hi:
                view["xrange"] = [lo, hi]
    return view


def format_view(view: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters for ``view`` (keys as :func:`parse_view` returns them), leaving out default values."""
    out: dict[str, str] = {}
    if view.get("comparison") is not None:
        out["cmp"] = str(int(view["comparison"]))
    if view.get("runs"):
        out["runs"] = ",".join(str(int(i)) for i in view["runs"])
    for name, key in (("axis", "x"), ("log", "log"), ("log_x", "logx"), ("bands", "bands"), ("smoothing", "smooth")):
        value = view.get(name)
        if value is None or value == defaults.get(name):
            continue
        out[key] = ("1" if value else "0") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) \
            else str(value)
    if view.get("tr_runs"):
        out["tr"] = ",".join(str(int(i)) for i in view["tr_runs"])
    if view.get("xrange"):
        lo, hi = view["xrange"]
        out["xr"] = f"{float(lo):.6g},{float(hi):.6g}"
    return out
