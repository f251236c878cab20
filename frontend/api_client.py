"""The one module through which the UI talks to the trustlab API (docs/API.md), over HTTP only."""
from __future__ import annotations

import threading
from typing import Any, Mapping, Sequence

import httpx

from frontend import run_states
from frontend.settings import get_settings
from trainer.errors import error_lines  # the one formatting of validation errors (a stdlib-only module)

__all__ = ["ApiClient", "ApiError", "ApiUnreachable", "error_messages", "get_client", "set_client"]


class ApiUnreachable(RuntimeError):
    """The API did not answer: not started, wrong URL, or too slow."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"Cannot reach the trustlab API at {url} ({reason}). Start it with `make run` (or `make api`), "
            f"or point TRUSTLAB_API_URL at the right address.")


def error_messages(detail: Any) -> list[str]:
    """Sentences for an error ``detail``: a string (404/409) or FastAPI's 422 list of {loc, msg, type}."""
    if isinstance(detail, str):
        return [detail]
    if isinstance(detail, list):
        return error_lines(detail) or ["the API refused the request without saying why"]
    if detail is None:
        return ["the API refused the request without saying why"]
    return [str(detail)]


class ApiError(RuntimeError):
    """The API answered with an error status; ``messages`` are human-readable sentences."""

    def __init__(self, status_code: int, detail: Any, method: str = "", path: str = "") -> None:
        self.status_code = status_code
        self.detail = detail
        self.messages = error_messages(detail)
        where = f" ({method} {path})" if method else ""
        super().__init__(f"API error {status_code}{where}: " + "; ".join(self.messages))


class ApiClient:
    """Thin typed wrapper over the REST routes; returns the JSON the API sends (dicts and lists).

    Args:
        base_url: e.g. ``http://127.0.0.1:8000`` (the ``/api`` prefix is added here).
        timeout: seconds per request (default 10).
        transport: an ``httpx`` transport, for tests (e.g. ``httpx.MockTransport``).
        token: a user's bearer token, sent as ``Authorization: Bearer``. Default: none. The UI passes each
            browser session's own token through ``with_token`` (it holds none itself).
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None,
                 token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token or None
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def with_token(self, token: str | None) -> "ApiClient":
        """This client acting for one signed-in session: same connections, that session's token."""
        other = object.__new__(ApiClient)
        other.__dict__.update(self.__dict__)
        other._token = token or None
        return other

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                 json: Any = None) -> httpx.Response:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
            resp = self._http.request(method, "/api" + path, params=clean or None, json=json, headers=headers)
        except httpx.TimeoutException:
            raise ApiUnreachable(self.base_url, "timed out") from None
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.base_url, type(exc).__name__ + (f": {exc}" if str(exc) else "")) from None
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail")
            except (ValueError, AttributeError):
                detail = resp.text.strip() or resp.reason_phrase
            raise ApiError(resp.status_code, detail, method, path)
        return resp

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._request(method, path, **kw).json()

    # -- routes ---------------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._json("GET", "/health")

    def auth(self) -> dict[str, Any]:
        """GET /api/auth: ``{"required": bool, "user": {"name", "role"} | None}``; a wrong token → ApiError 401."""
        return self._json("GET", "/auth")

    def meta(self) -> dict[str, Any]:
        """GET /api/meta; also adopts its ``run_states`` (frontend.run_states)."""
        body = self._json("GET", "/meta")
        if isinstance(body, dict):
            run_states.update(body.get("run_states"))
        return body

    def throughput(self) -> dict[str, Any]:
        """GET /api/throughput: this server's measured seconds per backprop / per sample, per setting."""
        return self._json("GET", "/throughput")

    def list_runs(self, *, status: str | None = None, comparison_id: int | None = None, limit: int = 200,
                  offset: int = 0, owner: str | None = None) -> dict[str, Any]:
        return self._json("GET", "/runs", params={"status": status, "comparison_id": comparison_id,
                                                  "limit": limit, "offset": offset, "owner": owner})

    def get_run(self, run_id: int) -> dict[str, Any]:
        return self._json("GET", f"/runs/{run_id}")

    def create_run(self, config: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/runs", json=config)

    def cancel_run(self, run_id: int) -> dict[str, Any]:
        return self._json("POST", f"/runs/{run_id}/cancel")

    def delete_run(self, run_id: int) -> None:
        self._request("DELETE", f"/runs/{run_id}")

    def metrics(self, run_id: int, *, since_step: int | None = None, max_points: int | None = None,
                until_step: int | None = None, fields: Sequence[str] | None = None,
                columns: bool = False) -> dict[str, Any]:
        """One run's points (``since_step`` < step <= ``until_step``), row-wise or, with ``columns``, column-wise."""
        return self._json("GET", f"/runs/{run_id}/metrics",
                          params={"since_step": since_step, "max_points": max_points, "until_step": until_step,
                                  "fields": ",".join(fields) if fields else None,
                                  "format": "columns" if columns else None})

    def metrics_batch(self, cursors: Sequence[Mapping[str, Any]], *, comparison_id: int | None = None,
                      fields: Sequence[str] | None = None, max_points: int = 2000,
                      evals: bool = True) -> dict[str, Any]:
        """New points of many runs in one request (POST /api/metrics/batch), column-wise.

        Args:
            cursors: per run ``{"id", "since_step", "eval_since_step", "fields"}`` (all but id optional).
            comparison_id: also every run of this comparison (those without a cursor from the start).
            fields: metric fields for runs whose cursor names none (``step`` is always sent).
        """
        body: dict[str, Any] = {"runs": [{k: v for k, v in c.items() if v is not None} for c in cursors],
                                "max_points": max_points, "evals": evals}
        if comparison_id is not None:
            body["comparison_id"] = comparison_id
        if fields is not None:
            body["fields"] = list(fields)
        return self._json("POST", "/metrics/batch", json=body)

    def evals(self, run_id: int, *, since_step: int | None = None) -> dict[str, Any]:
        return self._json("GET", f"/runs/{run_id}/evals", params={"since_step": since_step})

    def reconstructions(self, run_id: int) -> dict[str, Any]:
        return self._json("GET", f"/runs/{run_id}/reconstructions")

    def reconstruction_png(self, run_id: int, which: int | str) -> bytes:
        """PNG bytes of a reconstruction strip: ``which`` is a step, ``"latest"`` or ``"original"``."""
        return self._request("GET", f"/runs/{run_id}/reconstructions/{which}.png").content

    def export(self, run_id: int, fmt: str = "csv") -> bytes:
        return self._request("GET", f"/runs/{run_id}/export", params={"format": fmt}).content

    def create_comparison(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/comparisons", json=spec)

    def list_comparisons(self) -> dict[str, Any]:
        return self._json("GET", "/comparisons")

    def get_comparison(self, comparison_id: int) -> dict[str, Any]:
        return self._json("GET", f"/comparisons/{comparison_id}")

    def delete_comparison(self, comparison_id: int) -> None:
        self._request("DELETE", f"/comparisons/{comparison_id}")

    # -- results and sweeps (issue 9) -----------------------------------------------------------------------
    def comparison_results(self, comparison_id: int, *, reference: str | None = None,
                           targets: list[float] | None = None, k: int | None = None, level: float | None = None,
                           fmt: str = "json") -> Any:
        """The results table (a dict), or the CSV / Markdown export as text with ``fmt="csv"|"markdown"``."""
        resp = self._request("GET", f"/comparisons/{comparison_id}/results",
                             params={"reference": reference, "targets": targets or None, "k": k, "level": level,
                                     "format": fmt})
        return resp.json() if fmt == "json" else resp.text

    def paired_curves(self, comparison_id: int, *, reference: str | None = None, axis: str = "backprops",
                      points: int | None = None) -> dict[str, Any]:
        return self._json("GET", f"/comparisons/{comparison_id}/paired-curves",
                          params={"reference": reference, "axis": axis, "points": points})

    def create_sweep(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/sweeps", json=spec)

    def list_sweeps(self) -> dict[str, Any]:
        return self._json("GET", "/sweeps")

    def get_sweep(self, sweep_id: int) -> dict[str, Any]:
        return self._json("GET", f"/sweeps/{sweep_id}")

    def promote_sweep(self, sweep_id: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._json("POST", f"/sweeps/{sweep_id}/promote", json=body or {})

    def rerun_sweep(self, sweep_id: int) -> dict[str, Any]:
        """Re-run the sweep's grid points without a result (interrupted, cancelled or failed tuning runs)."""
        return self._json("POST", f"/sweeps/{sweep_id}/rerun")

    def annotate_run(self, run_id: int, *, tags: list[str] | None = None, note: str | None = None
                     ) -> dict[str, Any]:
        """PATCH a run's tags and/or note (``None``: unchanged)."""
        body = {k: v for k, v in (("tags", tags), ("note", note)) if v is not None}
        return self._json("PATCH", f"/runs/{run_id}", json=body)

    def annotate_comparison(self, comparison_id: int, *, tags: list[str] | None = None, note: str | None = None
                            ) -> dict[str, Any]:
        """PATCH a comparison's tags and/or note (``None``: unchanged)."""
        body = {k: v for k, v in (("tags", tags), ("note", note)) if v is not None}
        return self._json("PATCH", f"/comparisons/{comparison_id}", json=body)

    def export_evals_csv(self, run_id: int) -> bytes:
        """A run's evaluations as CSV (``export`` gives the step metrics or the whole JSON document)."""
        return self._request("GET", f"/runs/{run_id}/export", params={"format": "csv", "table": "evals"}).content
    # -- analyses (Hessian structure, paper Fig. 2) ---------------------------------------------------------
    def create_hessian_analysis(self, run_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """Queue a Hessian analysis: ``body`` has ``steps`` or ``fractions`` plus optional ``batch_size``,
        ``heatmap_size``, ``random_draws``."""
        return self._json("POST", f"/runs/{run_id}/analyses/hessian", json=body)

    def list_analyses(self, run_id: int) -> dict[str, Any]:
        return self._json("GET", f"/runs/{run_id}/analyses")

    def get_analysis(self, run_id: int, analysis_id: int) -> dict[str, Any]:
        return self._json("GET", f"/runs/{run_id}/analyses/{analysis_id}")


_lock = threading.Lock()
_client: ApiClient | None = None


def get_client() -> ApiClient:
    """The process-wide client for ``Settings.api_url``, with no token (tests replace it with ``set_client``);
    pages use ``frontend.ui.client()``, which adds the browser session's token."""
    global _client
    with _lock:
        if _client is None:
            s = get_settings()
            _client = ApiClient(s.api_url, timeout=s.request_timeout)
        return _client


def set_client(client: Any) -> None:
    """Replace the process-wide client (a stub in tests); ``None`` rebuilds it from the settings."""
    global _client
    with _lock:
        _client = client
