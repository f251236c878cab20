"""An in-memory stand-in for the trustlab API, with the same methods as frontend.api_client.ApiClient."""
from __future__ import annotations

import io
import math
from typing import Any

from PIL import Image
from pydantic import ValidationError

from frontend.api_client import ApiError
from trainer.config import RunConfig
from trainer.identity import group_key
from trainer.registry import OPTIMIZERS, metadata

ACTIVE = {"queued", "running"}


def png(width: int = 8, height: int = 24, shade: int = 128) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), shade).save(out, format="PNG")
    return out.getvalue()


def metric_points(n: int, *, tr: bool, start: int = 1, scale: float = 1.0) -> list[dict[str, Any]]:
    """Synthetic step records shaped like the API's metric points."""
    pts = []
    for step in range(start, start + n):
        p = {"step": step, "backprops": step * (6 if tr else 1), "hvps": step * 5 if tr else 0, "forwards": step,
             "epoch": step / 100, "wall_time": step * 0.01, "train_loss": scale * (2.3 * math.exp(-step / 40) + 0.2),
             "grad_norm": 1.0, "step_norm": 0.1}
        if tr:
            accepted = step % 7 != 0
            p.update({"radius": 0.05 * (1.1 ** (step % 5)), "new_radius": 0.05, "rho": 0.9 if accepted else -0.3,
                      "cg_iterations": 1 + step % 9,
                      "cg_exit": ["interior", "boundary", "negative_curvature", "max_iter"][step % 4],
                      "accepted": accepted, "pred_decrease": 0.1, "actual_decrease": 0.09, "step_norm_m": 0.05})
        else:
            p.update({k: None for k in ("radius", "new_radius", "rho", "cg_iterations", "cg_exit", "accepted",
                                        "pred_decrease", "actual_decrease", "step_norm_m")})
        pts.append(p)
    return pts


def eval_points(steps: list[int], *, tr: bool, classifier: bool = True) -> list[dict[str, Any]]:
    return [{"step": s, "backprops": s * (6 if tr else 1), "epoch": s / 100, "wall_time": s * 0.01,
             "train_loss": 2.0 / (1 + s), "test_loss": 2.1 / (1 + s),
             "train_accuracy": 0.5 + s / 1000 if classifier else None,
             "test_accuracy": 0.5 + s / 1100 if classifier else None} for s in steps]


class FakeApi:
    """Holds runs, comparisons and points; records calls in ``calls``."""

    base_url = "http://fake-api:8000"

    def __init__(self) -> None:
        self.runs: dict[int, dict[str, Any]] = {}
        self.comparisons: dict[int, dict[str, Any]] = {}
        self.points: dict[int, list[dict[str, Any]]] = {}
        self.eval_records: dict[int, list[dict[str, Any]]] = {}
        self.recons: dict[int, dict[str, Any]] = {}
        self.sweeps: dict[int, dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []
        self._next_run = 1
        self._next_cmp = 1
        # sign-in: token -> {"name", "role"}; empty means the API needs no credentials (open loopback)
        self.users: dict[str, dict[str, str]] = {}
        self.token: str | None = None
        self.owner = "local"  # who creates runs through this client

    def with_token(self, token: str | None) -> "FakeApi":
        """The session's client: same state, that token (``frontend.ui.client`` calls this)."""
        return _TokenView(self, token)  # type: ignore[return-value]

    # -- building state -------------------------------------------------------------------------------------
    def add_run(self, optimizer: str, *, status: str = "completed", seed: int = 0, comparison_id: int | None = None,
                model: str = "mlp", steps: int = 0, error: str | None = None, progress: float | None = None,
                hyperparameters: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
        rid = self._next_run
        self._next_run += 1
        tr = optimizer.startswith("tr-")
        config = RunConfig.model_validate({"dataset": "fashion-mnist", "model": model, "seed": seed,
                                           "optimizer": {"name": optimizer, "hyperparameters": hyperparameters or {}},
                                           "budget": {"epochs": 1}, **settings})
        cfg = config.model_dump()
        run = {"id": rid, "status": status, "comparison_id": comparison_id, "config": cfg, "optimizer": optimizer,
               "family": OPTIMIZERS[optimizer].family, "label": f"{OPTIMIZERS[optimizer].label} (seed {seed})", "seed": seed, "device": "cpu",
               "group_key": group_key(config), "error": error, "summary": None,
               "progress": progress if progress is not None else (1.0 if status == "completed" else 0.3),
               "last_step": steps or None, "created_at": "2026-01-02T10:00:00Z",
               "started_at": None if status == "queued" else "2026-01-02T10:00:01Z", "finished_at": None,
               "tags": [], "note": "", "owner": self.owner}
        self.runs[rid] = run
        self.points[rid] = metric_points(steps, tr=tr) if steps else []
        classifier = model in ("mlp", "resnet18")
        self.eval_records[rid] = eval_points([s for s in range(0, steps + 1, 20)], tr=tr,
                                             classifier=classifier) if steps else []
        if not classifier and steps:
            evals = self.eval_records[rid]
            self.recons[rid] = {"steps": [e["step"] for e in evals], "backprops": [e["backprops"] for e in evals],
                                "has_original": True}
        return run

    def add_comparison(self, name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
        cid = self._next_cmp
        self._next_cmp += 1
        for r in runs:
            r["comparison_id"] = cid
        self.comparisons[cid] = {"id": cid, "name": name, "created_at": "2026-01-02T10:00:00Z",
                                 "run_ids": [r["id"] for r in runs], "status": self._cmp_status(runs), "spec": {},
                                 "tags": [], "note": ""}
        return self.comparisons[cid]

    @staticmethod
    def _cmp_status(runs: list[dict[str, Any]]) -> str:
        statuses = {r["status"] for r in runs}
        if statuses & {"running"}:
            return "running"
        if statuses & {"queued"}:
            return "queued"
        return "completed" if statuses == {"completed"} else sorted(statuses)[0]

    def _run(self, rid: int) -> dict[str, Any]:
        if rid not in self.runs:
            raise ApiError(404, f"run {rid} not found")
        return self.runs[rid]

    # -- the ApiClient surface ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {"status": "ok"}

    def auth(self) -> dict[str, Any]:
        self.calls.append(("auth", self.token))
        if not self.users:
            return {"required": False, "user": {"name": "local", "role": "admin"}}
        if self.token is None:
            return {"required": True, "user": None}
        if self.token not in self.users:
            raise ApiError(401, "missing or wrong token", "GET", "/auth")
        return {"required": True, "user": self.users[self.token]}

    def _signed_in(self) -> None:
        """Like the API's gate: with users configured, every call needs a known token."""
        if self.users and self.token not in self.users:
            raise ApiError(401, "missing or wrong token")

    def meta(self) -> dict[str, Any]:
        self.calls.append(("meta", None))
        return metadata({"fashion-mnist": True, "mnist": False, "cifar10": False})

    throughput_items: list[dict[str, Any]] = []  # GET /api/throughput's items (tests set them)

    def throughput(self) -> dict[str, Any]:
        self.calls.append(("throughput", None))
        return {"items": list(self.throughput_items), "runs_used": sum(i["runs"] for i in self.throughput_items)}

    def list_runs(self, *, status=None, comparison_id=None, limit=200, offset=0, owner=None) -> dict[str, Any]:
        self.calls.append(("list_runs", status))
        self._signed_in()
        items = [r for r in self.runs.values() if (status is None or r["status"] == status)
                 and (comparison_id is None or r["comparison_id"] == comparison_id)
                 and (owner is None or r.get("owner") == owner)]
        return {"items": items[offset:offset + limit], "total": len(items)}

    def get_run(self, run_id: int) -> dict[str, Any]:
        self.calls.append(("get_run", run_id))
        return self._run(run_id)

    def create_run(self, config: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create_run", config))
        try:
            cfg = RunConfig.model_validate(config)
        except ValidationError as exc:
            raise ApiError(422, [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                                 for e in exc.errors()]) from None
        run = self.add_run(cfg.optimizer.name, status="queued", seed=cfg.seed, model=cfg.model)
        return run

    def create_comparison(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create_comparison", spec))
        errors = []
        for i, opt in enumerate(spec.get("optimizers") or []):
            cfg = {k: spec[k] for k in ("dataset", "model", "budget") if k in spec}
            try:
                RunConfig.model_validate({**cfg, "optimizer": opt})
            except ValidationError as exc:
                errors += [{"loc": ["body", "optimizers", i, *e["loc"][1:]], "msg": e["msg"], "type": e["type"]}
                           for e in exc.errors()]
        if errors:
            raise ApiError(422, errors)
        runs = [self.add_run(o["name"], status="queued", seed=s, model=spec["model"])
                for o in spec["optimizers"] for s in spec.get("seeds", [0])]
        cmp = self.add_comparison(spec.get("name", "comparison"), runs)
        cmp["spec"] = spec
        return {"id": cmp["id"], "run_ids": cmp["run_ids"]}

    def cancel_run(self, run_id: int) -> dict[str, Any]:
        self.calls.append(("cancel_run", run_id))
        run = self._run(run_id)
        if run["status"] in ACTIVE:
            run["status"] = "cancelled"
        return run

    def delete_run(self, run_id: int) -> None:
        self.calls.append(("delete_run", run_id))
        run = self._run(run_id)
        if run["status"] in ACTIVE:
            raise ApiError(409, f"run {run_id} is {run['status']}; cancel it first")
        del self.runs[run_id]

    def metrics(self, run_id: int, *, since_step=None, max_points=None, until_step=None, fields=None,
                columns=False) -> dict[str, Any]:
        self.calls.append(("metrics", (run_id, since_step)))
        self._run(run_id)
        pts = [p for p in self.points.get(run_id, []) if (since_step is None or p["step"] > since_step)
               and (until_step is None or p["step"] <= until_step)]
        last = self.points[run_id][-1]["step"] if self.points.get(run_id) else None
        page = {"points": pts, "last_step": last, "total": len(pts), "downsampled": False}
        return _columns(page, fields) if columns else page

    def metrics_batch(self, cursors, *, comparison_id=None, fields=None, max_points=2000, evals=True):
        """POST /api/metrics/batch over the fake points (no downsampling)."""
        self.calls.append(("metrics_batch", tuple((c["id"], c.get("since_step")) for c in cursors)))
        out = []
        for c in cursors:
            run = self._run(c["id"])
            pts = [p for p in self.points.get(c["id"], []) if c.get("since_step") is None or p["step"] > c["since_step"]]
            last = self.points[c["id"]][-1]["step"] if self.points.get(c["id"]) else None
            item = {"id": c["id"], "status": run["status"], "last_step": last, "total": len(pts), "downsampled": False,
                    **_columns({"points": pts}, c.get("fields") or fields)}
            if evals:
                epts = [p for p in self.eval_records.get(c["id"], [])
                        if c.get("eval_since_step") is None or p["step"] > c["eval_since_step"]]
                item["evals"] = _columns({"points": epts}, None)
            out.append(item)
        return {"runs": out}

    def evals(self, run_id: int, *, since_step=None) -> dict[str, Any]:
        self.calls.append(("evals", (run_id, since_step)))
        return {"points": [p for p in self.eval_records.get(run_id, [])
                           if since_step is None or p["step"] > since_step]}

    def reconstructions(self, run_id: int) -> dict[str, Any]:
        self.calls.append(("reconstructions", run_id))
        return self.recons.get(run_id, {"steps": [], "backprops": [], "has_original": False})

    def reconstruction_png(self, run_id: int, which) -> bytes:
        self.calls.append(("reconstruction_png", (run_id, which)))
        return png(shade=40 if which == "original" else 200)

    def export(self, run_id: int, fmt: str = "csv") -> bytes:
        self.calls.append(("export", (run_id, fmt)))
        self._run(run_id)
        return b"step,train_loss\n" if fmt == "csv" else b'{"run": {}, "metrics": [], "evaluations": []}'

    def export_evals_csv(self, run_id: int) -> bytes:
        self.calls.append(("export_evals_csv", run_id))
        return b"step,test_loss\n"

    def annotate_run(self, run_id: int, *, tags=None, note=None) -> dict[str, Any]:
        self.calls.append(("annotate_run", (run_id, tags, note)))
        run = self._run(run_id)
        if tags is not None:
            bad = [t for t in tags if not t or " " in t or len(t) > 40]
            if bad:
                pattern = "^[A-Za-z0-9][A-Za-z0-9_.:+/-]*$"  # what the API answers (backend.schemas.Tag)
                raise ApiError(422, [{"loc": ["body", "tags", 0], "type": "string_pattern_mismatch",
                                      "msg": f"String should match pattern '{pattern}'", "input": bad[0],
                                      "ctx": {"pattern": pattern}}])
            run["tags"] = list(dict.fromkeys(tags))
        if note is not None:
            run["note"] = note
        return run

    def annotate_comparison(self, comparison_id: int, *, tags=None, note=None) -> dict[str, Any]:
        self.calls.append(("annotate_comparison", (comparison_id, tags, note)))
        c = self.comparisons[comparison_id]
        if tags is not None:
            c["tags"] = list(dict.fromkeys(tags))
        if note is not None:
            c["note"] = note
        return c

    def list_comparisons(self) -> dict[str, Any]:
        self.calls.append(("list_comparisons", None))
        for c in self.comparisons.values():
            c["status"] = self._cmp_status([self.runs[i] for i in c["run_ids"] if i in self.runs])
        return {"items": list(self.comparisons.values()), "total": len(self.comparisons)}

    def get_comparison(self, comparison_id: int) -> dict[str, Any]:
        self.calls.append(("get_comparison", comparison_id))
        if comparison_id not in self.comparisons:
            raise ApiError(404, f"comparison {comparison_id} not found")
        c = self.comparisons[comparison_id]
        return {**c, "runs": [self.runs[i] for i in c["run_ids"] if i in self.runs]}

    def delete_comparison(self, comparison_id: int) -> None:
        self.calls.append(("delete_comparison", comparison_id))
        c = self.comparisons.get(comparison_id)
        if c is None:
            raise ApiError(404, f"comparison {comparison_id} not found")
        if any(self.runs[i]["status"] in ACTIVE for i in c["run_ids"] if i in self.runs):
            raise ApiError(409, f"comparison {comparison_id} has active runs; cancel them first")
        for i in c["run_ids"]:
            self.runs.pop(i, None)
        del self.comparisons[comparison_id]

    # -- results and sweeps (issue 9): the real statistics over the fake's evaluations -----------------------
    def _stat_runs(self, comparison_id: int) -> list[dict[str, Any]]:
        from backend.results import group_name

        c = self.get_comparison(comparison_id)
        return [{"group": r["group_key"], "name": group_name(r["label"]), "optimizer": r["optimizer"], "seed": r["seed"],
                 "status": r["status"], "run_id": r["id"], "budget": r["config"]["budget"],
                 "evals": self.eval_records.get(r["id"], [])} for r in c["runs"]]

    def comparison_results(self, comparison_id: int, *, reference=None, targets=None, k=None, level=None,
                           fmt: str = "json") -> Any:
        from backend import stats

        self.calls.append(("comparison_results", (comparison_id, reference, fmt)))
        res = stats.results(self._stat_runs(comparison_id), reference=reference, targets=targets or [], k=k or 3,
                            level=level or 0.95, n_boot=500)
        return {"json": res, "csv": stats.results_csv(res) if fmt == "csv" else None,
                "markdown": stats.results_markdown(res) if fmt == "markdown" else None}[fmt]

    def paired_curves(self, comparison_id: int, *, reference=None, axis="backprops", points=None) -> dict[str, Any]:
        from backend import stats

        self.calls.append(("paired_curves", (comparison_id, reference, axis)))
        data = self._stat_runs(comparison_id)
        return stats.paired_curves(data, reference=reference or data[0]["group"], axis=axis, n_boot=200)

    def add_sweep(self, view: dict[str, Any]) -> dict[str, Any]:
        """Store a sweep view as GET /api/sweeps/{id} returns it (tests build it)."""
        self.sweeps[view["id"]] = view
        return view

    def create_sweep(self, spec: dict[str, Any]) -> dict[str, Any]:
        from backend.sweeps import SweepCreate

        self.calls.append(("create_sweep", spec))
        try:
            body = SweepCreate.model_validate(spec)
        except ValidationError as exc:
            raise ApiError(422, [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                                 for e in exc.errors()]) from None
        sid = len(self.sweeps) + 1
        runs = [self.add_run(cfg.optimizer.name, status="queued", seed=cfg.seed, model=cfg.model)
                for _, _, cfg, _ in body.run_configs()]
        cmp = self.add_comparison(f"sweep: {body.name}", runs)
        self.add_sweep({"id": sid, "name": body.name, "comparison_id": cmp["id"], "promoted_comparison_id": None,
                        "status": "queued", "runs_total": len(runs), "runs_finished": 0,
                        "criterion": {**body.criterion.model_dump(), "label": body.criterion.label},
                        "spec": body.model_dump(mode="json"), "optimizers": []})
        return {"id": sid, "comparison_id": cmp["id"], "run_ids": [r["id"] for r in runs]}

    def list_sweeps(self) -> dict[str, Any]:
        self.calls.append(("list_sweeps", None))
        return {"items": list(self.sweeps.values()), "total": len(self.sweeps)}

    def get_sweep(self, sweep_id: int) -> dict[str, Any]:
        self.calls.append(("get_sweep", sweep_id))
        if sweep_id not in self.sweeps:
            raise ApiError(404, f"sweep {sweep_id} not found")
        return self.sweeps[sweep_id]

    def promote_sweep(self, sweep_id: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append(("promote_sweep", (sweep_id, body)))
        sweep = self.get_sweep(sweep_id)
        if sweep["status"] in ACTIVE:
            raise ApiError(409, f"sweep {sweep_id} still has active runs; wait until it finishes")
        body = body or {}
        seeds = list(range(1, 1 + body.get("n_seeds", 5)))
        names = [o["name"] for o in sweep["optimizers"]] + [o["name"] for o in body.get("extra_optimizers", [])]
        runs = [self.add_run(n, status="queued", seed=s) for s in seeds for n in names]
        cmp = self.add_comparison(f"{sweep['name']}: winners", runs)
        sweep["promoted_comparison_id"] = cmp["id"]
        return {"id": cmp["id"], "run_ids": [r["id"] for r in runs]}

    def rerun_sweep(self, sweep_id: int) -> dict[str, Any]:
        self.calls.append(("rerun_sweep", sweep_id))
        sweep = self.get_sweep(sweep_id)
        todo = [p for o in sweep["optimizers"] for p in o["points"] if p.get("needs_rerun")]
        if not todo:
            raise ApiError(409, f"sweep {sweep_id} has no interrupted, cancelled or failed tuning run")
        runs = []
        for point in todo:
            runs += [self.add_run(o["name"], status="queued") for o in sweep["optimizers"] if point in o["points"]]
            point.update(needs_rerun=False, note="running", statuses=["queued"])
        sweep["status"] = "queued"
        return {"run_ids": [r["id"] for r in runs], "replaced_run_ids": [i for p in todo for i in p["run_ids"]]}


def _columns(page: dict[str, Any], fields) -> dict[str, Any]:
    """A row-wise fake page column-wise, as the API's format=columns (step first, then the selected fields)."""
    pts = page.pop("points")
    names = list(dict.fromkeys(["step", *(fields or [k for p in pts for k in p])]))
    return {**page, "fields": names, "columns": {f: [p.get(f) for p in pts] for f in names}}


class _TokenView:
    """A FakeApi seen through one session's token: every attribute is the fake's, ``token`` is the session's."""

    def __init__(self, fake: FakeApi, token: str | None) -> None:
        object.__setattr__(self, "_fake", fake)
        object.__setattr__(self, "_token", token)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._fake, name)
        if not callable(attr) or name.startswith("__"):
            return attr
        fake, token = self._fake, self._token

        def call(*args: Any, **kwargs: Any) -> Any:
            before = fake.token
            fake.token = token
            try:
                return attr(*args, **kwargs)
            finally:
                fake.token = before

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._fake, name, value)
