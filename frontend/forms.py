"""Launch-form logic without Streamlit: widget state for presets, the request body, errors in words."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from frontend.api_client import error_messages

__all__ = [
    "BUDGET_KINDS",
    "DEVICES",
    "DEFAULT_SCALING",
    "input_scaling_options",
    "K",
    "hp_key",
    "default_state",
    "preset_state",
    "parse_seeds",
    "hyperparameter_overrides",
    "LaunchRequest",
    "build_request",
    "explain_errors",
    "EVAL_UNITS",
    "EVAL_DEFAULTS",
    "eval_every_value",
    "dataset_problem",
    "MAX_SEEDS",
    "LONG_RUN_SECONDS",
    "Estimate",
    "estimate_durations",
]

BUDGET_KINDS: dict[str, str] = {"epochs": "Epochs", "backprops": "Backprops", "seconds": "Seconds"}
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_SCALING = "default"  # the API picks: standardize for classifiers, unit for autoencoders


def input_scaling_options(meta: Mapping[str, Any]) -> list[str]:
    """Choices of the input-scaling widget: the model's default, then ``meta["input_scalings"]``."""
    return [DEFAULT_SCALING] + [s["name"] for s in meta.get("input_scalings") or []]

# evaluation cadence units: "auto" lets the API spread ~50 evaluations over the budget
EVAL_UNITS: dict[str, str] = {"auto": "Auto (~50 per run)", "epochs": "Epochs", "backprops": "Backprops",
                              "steps": "Optimizer steps"}
EVAL_DEFAULTS = {"epochs": 0.1, "backprops": 1000.0, "steps": 50.0}  # the number box when a unit is picked


class K:
    """Session-state keys of the launch form's widgets."""

    name = "launch_name"
    dataset = "launch_dataset"
    model = "launch_model"
    optimizers = "launch_optimizers"
    budget_kind = "launch_budget_kind"
    seeds = "launch_seeds"
    bs_first = "launch_bs_first"
    bs_second = "launch_bs_second"
    eval_every = "launch_eval_every"
    eval_unit = "launch_eval_unit"
    train_subset = "launch_train_subset"
    test_subset = "launch_test_subset"
    device = "launch_device"
    preset = "launch_preset"
    input_scaling = "launch_input_scaling"

    @staticmethod
    def budget(kind: str) -> str:
        return f"launch_budget_{kind}"


def hp_key(optimizer: str, name: str) -> str:
    """Widget key of one optimizer's hyperparameter."""
    return f"launch_hp:{optimizer}:{name}"


_BUDGET_DEFAULTS = {"epochs": 1.0, "backprops": 2000, "seconds": 60.0}


def _optimizer(meta: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for o in meta["optimizers"]:
        if o["name"] == name:
            return o
    raise ValueError(f"unknown optimizer {name!r}")


def _family_batch(meta: Mapping[str, Any], family: str, fallback: int) -> int:
    return next((o["default_batch_size"] for o in meta["optimizers"] if o["family"] == family), fallback)


def _hp_widget_value(spec: Mapping[str, Any], value: Any) -> Any:
    if spec["type"] == "float":
        return float(value)
    if spec["type"] == "int":
        return int(value)
    return value


def default_state(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Initial widget values: the first dataset/model pair, TR RMSprop vs Adam, 1 epoch, seed 0."""
    datasets = [d["name"] for d in meta["datasets"]]
    dataset = datasets[0]
    models = [m["name"] for m in meta["models"] if dataset in m["datasets"]]
    names = [o["name"] for o in meta["optimizers"]]
    chosen = [n for n in ("tr-rmsprop", "adam") if n in names] or names[:1]
    state: dict[str, Any] = {
        K.name: "", K.dataset: dataset, K.model: models[0], K.optimizers: chosen, K.budget_kind: "epochs",
        K.seeds: "0", K.bs_first: _family_batch(meta, "first-order", 128),
        K.bs_second: _family_batch(meta, "second-order", 512), K.eval_unit: "auto", K.eval_every: 0.1,
        K.train_subset: 0,
        K.test_subset: 0, K.device: "auto", K.input_scaling: DEFAULT_SCALING,
    }
    for kind, v in _BUDGET_DEFAULTS.items():
        state[K.budget(kind)] = v
    for o in meta["optimizers"]:
        for h in o["hyperparameters"]:
            state[hp_key(o["name"], h["name"])] = _hp_widget_value(h, h["default"])
    return state


def preset_state(meta: Mapping[str, Any], preset_name: str) -> dict[str, Any]:
    """Widget values that reproduce one of the paper's experiments (``meta["presets"]``)."""
    preset = next((p for p in meta["presets"] if p["name"] == preset_name), None)
    if preset is None:
        raise ValueError(f"unknown preset {preset_name!r}; choose one of {[p['name'] for p in meta['presets']]}")
    state = default_state(meta)
    state[K.name] = preset.get("label", preset_name)
    state[K.dataset] = preset["dataset"]
    state[K.model] = preset["model"]
    state[K.optimizers] = [o["name"] for o in preset["optimizers"]]
    budget = preset.get("budget") or {}
    kind = next((k for k in BUDGET_KINDS if budget.get(k) is not None), "epochs")
    state[K.budget_kind] = kind
    if kind in budget:
        state[K.budget(kind)] = float(budget[kind]) if kind != "backprops" else int(budget[kind])
    sizes = preset.get("batch_sizes") or {}
    if "first-order" in sizes:
        state[K.bs_first] = int(sizes["first-order"])
    if "second-order" in sizes:
        state[K.bs_second] = int(sizes["second-order"])
    for entry in preset["optimizers"]:
        specs = {h["name"]: h for h in _optimizer(meta, entry["name"])["hyperparameters"]}
        for hname, value in (entry.get("hyperparameters") or {}).items():
            if hname in specs:
                state[hp_key(entry["name"], hname)] = _hp_widget_value(specs[hname], value)
    state[K.input_scaling] = preset.get("input_scaling") or DEFAULT_SCALING
    state[K.preset] = preset_name
    return state


MAX_SEEDS = 100  # seeds per launch: the API's cap (a comparison's ``seeds`` list holds at most 100)


def parse_seeds(text: str) -> list[int]:
    """``"0, 1, 2"`` or ``"0-4"`` -> list of distinct non-negative seeds, in order.

    Raises:
        ValueError: in words, when the text is empty, not a list of non-negative integers, or more than
            ``MAX_SEEDS`` seeds.
    """
    seeds: list[int] = []
    for part in str(text).replace(";", ",").replace(" ", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                if hi - lo + 1 > MAX_SEEDS:
                    raise OverflowError(f"seeds: the range {part!r} is {hi - lo + 1:,} seeds; one launch takes at "
                                        f"most {MAX_SEEDS} (e.g. '0-{MAX_SEEDS - 1}')")
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except OverflowError as exc:
            raise ValueError(str(exc)) from None
        except ValueError:
            raise ValueError(f"seeds: {part!r} is not a seed; write integers like '0, 1, 2' or a range '0-4'") from None
    if len(set(seeds)) > MAX_SEEDS:
        raise ValueError(f"seeds: {len(set(seeds)):,} seeds; one launch takes at most {MAX_SEEDS}")
    if not seeds:
        raise ValueError("seeds: give at least one seed, e.g. '0' or '0, 1, 2'")
    if any(s < 0 for s in seeds):
        raise ValueError("seeds: seeds must be 0 or larger")
    return list(dict.fromkeys(seeds))


def hyperparameter_overrides(spec: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of one optimizer (``values``: name -> widget value) that differ from its defaults."""
    out = {}
    for h in spec["hyperparameters"]:
        if h["name"] not in values:
            continue
        v = values[h["name"]]
        default = h["default"]
        if h["type"] in ("float", "int") and isinstance(v, (int, float)) and not isinstance(v, bool):
            if default is not None and abs(float(v) - float(default)) <= 1e-12 * max(1.0, abs(float(default))):
                continue
            v = int(v) if h["type"] == "int" else float(v)
        elif v == default:
            continue
        out[h["name"]] = v
    return out


@dataclass(frozen=True)
class LaunchRequest:
    """What to POST: ``kind`` is ``"run"`` (POST /api/runs) or ``"comparison"`` (POST /api/comparisons)."""

    kind: str
    payload: dict[str, Any]
    optimizer_labels: tuple[str, ...]


def build_request(meta: Mapping[str, Any], state: Mapping[str, Any]) -> LaunchRequest:
    """The request body for the form's current values (``state``: widget key -> value).

    One optimizer and one seed make a single run; anything more is a comparison.

    Raises:
        ValueError: in words, for what can be checked before asking the API (no optimizer, bad seeds).
    """
    names: list[str] = list(state.get(K.optimizers) or [])
    if not names:
        raise ValueError("optimizers: pick at least one optimizer")
    seeds = parse_seeds(state.get(K.seeds, "0"))
    kind = state.get(K.budget_kind, "epochs")
    if kind not in BUDGET_KINDS:
        raise ValueError(f"budget: choose one of {list(BUDGET_KINDS)}")
    value = state.get(K.budget(kind))
    if value is None:
        raise ValueError(f"budget: enter a number of {kind}")
    budget = {kind: int(value) if kind == "backprops" else float(value)}
    specs = {o["name"]: o for o in meta["optimizers"]}
    optimizers = []
    for n in names:
        spec = specs[n]
        values = {h["name"]: state[hp_key(n, h["name"])] for h in spec["hyperparameters"] if hp_key(n, h["name"]) in state}
        optimizers.append({"name": n, "hyperparameters": hyperparameter_overrides(spec, values)})
    batch = {"first-order": state.get(K.bs_first), "second-order": state.get(K.bs_second)}
    for family, size in batch.items():
        if size is not None and int(size) < 1:
            raise ValueError(f"batch size, {'first-order' if family == 'first-order' else 'trust region'}: must be "
                             f"at least 1, got {size}")
    common: dict[str, Any] = {
        "dataset": state[K.dataset], "model": state[K.model], "budget": budget,
        "device": state.get(K.device) or "auto",
    }
    eval_every = eval_every_value(state.get(K.eval_unit, "auto"), state.get(K.eval_every))
    if eval_every is not None:
        common["eval_every"] = eval_every
    if state.get(K.train_subset):
        common["train_subset"] = int(state[K.train_subset])
    if state.get(K.test_subset):
        common["test_subset"] = int(state[K.test_subset])
    if state.get(K.input_scaling) not in (None, DEFAULT_SCALING):
        common["input_scaling"] = state[K.input_scaling]
    labels = tuple(specs[n]["label"] for n in names)
    if len(names) == 1 and len(seeds) == 1:
        bs = batch.get(specs[names[0]]["family"])
        payload = {**common, "optimizer": optimizers[0], "seed": seeds[0]}
        if bs:
            payload["batch_size"] = int(bs)
        return LaunchRequest("run", payload, labels)
    name = str(state.get(K.name) or "").strip() or " vs ".join(labels)
    payload = {"name": name, **common, "seeds": seeds, "optimizers": optimizers,
               "batch_sizes": {k: int(v) for k, v in batch.items() if v}}
    return LaunchRequest("comparison", payload, labels)


def eval_every_value(unit: str, value: Any) -> int | dict[str, float | int] | None:
    """The request's ``eval_every`` for the form's unit and number (``None``: the API's ~50 per run).

    Steps stay a plain integer (the API's original form); backprops and epochs give every run of a
    comparison the same evaluation points whatever its batch size.

    Raises:
        ValueError: in words, for an unknown unit or a number that is not positive.
    """
    if unit == "auto":
        return None
    if unit not in EVAL_UNITS:
        raise ValueError(f"evaluate every: choose one of {list(EVAL_UNITS)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"evaluate every: enter a number of {unit}") from None
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError(f"evaluate every: {unit} must be a positive number")
    if unit == "epochs":
        return {"epochs": number}
    if number < 1 or number != int(number):
        raise ValueError(f"evaluate every: {unit} must be a whole number of at least 1")
    return int(number) if unit == "steps" else {"backprops": int(number)}


def dataset_problem(meta: Mapping[str, Any], dataset: str) -> str | None:
    """Why a run on ``dataset`` cannot start now (the API reports it missing), in words; ``None`` if it can."""
    ds = next((d for d in meta["datasets"] if d["name"] == dataset), None)
    if ds is None or ds.get("available") is not False:
        return None
    how = str(ds.get("how_to_get") or "").strip()
    how = how[:1].upper() + how[1:] if how else ""
    return f"{ds.get('label', dataset)} is not in the API's data directory, so a run would fail at once. {how}".strip()


def explain_errors(detail: Any, request: LaunchRequest | None = None) -> list[str]:
    """API error ``detail`` as sentences, with ``optimizers[i]`` replaced by the optimizer's label."""
    if not isinstance(detail, list) or request is None:
        return error_messages(detail)
    out = []
    for item in detail:
        if not isinstance(item, dict):
            out.extend(error_messages([item]))
            continue
        loc = [p for p in (item.get("loc") or []) if p not in ("body", "query", "path")]
        if len(loc) >= 2 and loc[0] == "optimizers" and isinstance(loc[1], int) and loc[1] < len(request.optimizer_labels):
            rest = [p for p in loc[2:] if not isinstance(p, str) or not p.startswith("function-")]
            item = {**item, "loc": [request.optimizer_labels[loc[1]], *rest]}
        elif loc and loc[0] == "optimizer" and request.optimizer_labels:
            item = {**item, "loc": [request.optimizer_labels[0], *loc[1:]]}
        out.extend(error_messages([item]))
    return out


def summarize(request: LaunchRequest) -> str:
    """One line describing what the Launch button will start."""
    p = request.payload
    budget = ", ".join(f"{v:g} {k}" for k, v in p["budget"].items())
    if request.kind == "run":
        return f"1 run: {request.optimizer_labels[0]} on {p['dataset']} / {p['model']}, budget {budget}."
    n = len(p["optimizers"]) * len(p["seeds"])
    return (f"A comparison of {len(p['optimizers'])} optimizer(s) × {len(p['seeds'])} seed(s) = {n} runs on "
            f"{p['dataset']} / {p['model']}, budget {budget} each.")


def option_labels(items: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """name -> label for a meta list (datasets, models, optimizers)."""
    return {i["name"]: i.get("label", i["name"]) for i in items}


LONG_RUN_SECONDS = 3600.0  # an estimate above this gets a warning before launch


@dataclass(frozen=True)
class Estimate:
    """One optimizer's planned run: its estimated optimization time (``None``: nothing measured to go by)."""

    label: str
    seconds: float | None
    runs_measured: int


def _planned_batch(request: LaunchRequest, spec: Mapping[str, Any]) -> int | None:
    p = request.payload
    if request.kind == "run":
        return p.get("batch_size") or spec.get("default_batch_size")
    return (p.get("batch_sizes") or {}).get(spec["family"]) or spec.get("default_batch_size")


def estimate_durations(meta: Mapping[str, Any], request: LaunchRequest, measured: Mapping[str, Any]
                       ) -> list[Estimate]:
    """Estimated optimization time of each optimizer's run in ``request`` from this server's measured speed
    (``GET /api/throughput``): seconds per backprop (a backprops budget; scaled by the batch size when only another
    batch size was measured) or per training sample (an epochs budget). A seconds budget is its own duration.
    Evaluations come on top."""
    p = request.payload
    specs = {o["name"]: o for o in meta["optimizers"]}
    sizes = {d["name"]: d.get("train_size") for d in meta.get("datasets") or []}
    budget = p["budget"]
    items = [i for i in measured.get("items") or [] if i.get("dataset") == p["dataset"] and i.get("model") == p["model"]]
    opts = [p["optimizer"]] if request.kind == "run" else p["optimizers"]
    out = []
    for label, opt in zip(request.optimizer_labels, opts):
        spec = specs[opt["name"]]
        if "seconds" in budget:
            out.append(Estimate(label, float(budget["seconds"]), 0))
            continue
        batch = _planned_batch(request, spec)
        same = [i for i in items if i.get("optimizer") == opt["name"]]
        exact = [i for i in same if i.get("batch_size") == batch] or same
        if not exact:
            out.append(Estimate(label, None, 0))
            continue
        m = max(exact, key=lambda i: i.get("runs") or 0)
        seconds = None
        if "backprops" in budget and m.get("seconds_per_backprop"):
            scale = batch / m["batch_size"] if batch and m.get("batch_size") else 1.0
            seconds = float(budget["backprops"]) * float(m["seconds_per_backprop"]) * scale
        elif "epochs" in budget and m.get("seconds_per_sample"):
            n_train = p.get("train_subset") or sizes.get(p["dataset"])
            seconds = float(budget["epochs"]) * float(n_train or 0) * float(m["seconds_per_sample"]) or None
        out.append(Estimate(label, seconds, int(m.get("runs") or 0)))
    return out
