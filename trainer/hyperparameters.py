"""One pydantic model per optimizer: its hyperparameters' types, bounds, choices, defaults and descriptions.

Each registry entry (``trainer.registry.OPTIMIZERS``) holds its model, which validates a run's overrides
(:func:`resolve`), documents them and yields the JSON schema from which ``/api/meta`` publishes the list the
launch form and the sweeps read (:func:`spec_list`). Numbers are strict (a string or a boolean is not a number),
finite and bounded; unknown names are refused (``extra="forbid"``).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "Hyperparameters",
    "SGDHyperparameters",
    "AdagradHyperparameters",
    "RMSpropHyperparameters",
    "AdamHyperparameters",
    "TrustRegionHyperparameters",
    "TRRMSpropHyperparameters",
    "TR_NORM_DEFAULTS",
    "TR_HYPERPARAMETERS",
    "NOISE_FLOORS",
    "resolve",
    "spec_list",
]


def _integral(value: Any) -> Any:
    """``20.0`` -> ``20`` (a JSON client may send an integer as a float); anything else is left to the type."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer that also accepts integral floats; strict otherwise (no strings, no booleans).
Int = Annotated[int, BeforeValidator(_integral)]


def _lr(default: float) -> Any:
    return Field(default, gt=0.0, le=100.0, description="step size")


def _eps(default: float, description: str = "denominator floor") -> Any:
    return Field(default, gt=0.0, le=1.0, description=description)


_WD = Field(0.0, ge=0.0, le=1.0, description="L2 penalty added to the gradient")
_MOMENTUM = Field(0.0, ge=0.0, le=1.0, description="momentum factor")


class Hyperparameters(BaseModel):
    """Base of the per-optimizer models: unknown names refused, numbers strict and finite, values frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class SGDHyperparameters(Hyperparameters):
    """torch.optim.SGD."""

    lr: float = _lr(0.1)
    momentum: float = _MOMENTUM
    nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0)")
    weight_decay: float = _WD

    @model_validator(mode="after")
    def _nesterov(self) -> "SGDHyperparameters":
        if self.nesterov and self.momentum <= 0:
            raise ValueError("nesterov requires momentum > 0 for sgd")
        return self


class AdagradHyperparameters(Hyperparameters):
    """torch.optim.Adagrad."""

    lr: float = _lr(0.01)
    lr_decay: float = Field(0.0, ge=0.0, le=1.0, description="learning-rate decay")
    eps: float = _eps(1e-10)
    weight_decay: float = _WD


class RMSpropHyperparameters(Hyperparameters):
    """torch.optim.RMSprop."""

    lr: float = _lr(0.001)
    alpha: float = Field(0.99, ge=0.0, le=1.0, description="smoothing constant")
    eps: float = _eps(1e-8)
    momentum: float = _MOMENTUM
    weight_decay: float = _WD


class AdamHyperparameters(Hyperparameters):
    """torch.optim.Adam (``beta1``, ``beta2`` become torch's ``betas``)."""

    lr: float = _lr(0.001)
    beta1: float = Field(0.9, ge=0.0, le=1.0, description="first-moment decay")
    beta2: float = Field(0.999, ge=0.0, le=1.0, description="second-moment decay")
    eps: float = _eps(1e-8)
    weight_decay: float = _WD


# The trust-region defaults that depend on the norm (Table 1: RMSprop's Δ₀ = 1e-4 and γ₂ = 1.75; every other value is
# shared). The one table: the registry's tr-* hyperparameter models below and ``TrustRegion``'s keyword defaults
# (trainer.optim.trust_region.tr_defaults) both read it, so the two cannot drift.
TR_NORM_DEFAULTS: dict[str, dict[str, float]] = {
    "uniform": {},
    "adagrad": {},
    "rmsprop": {"radius": 1e-4, "gamma2": 1.75},
}

# The ratio ρ's noise floor (DESIGN.md "Converged is not failed"; trainer.optim.radius.reduction_ratio):
#   "relative": a step whose predicted and actual decreases are both ≤ noise_floor_ulps × ε × max(|L|, tiny) (ε the
#               machine epsilon of the loss's dtype: 1.19e-7 for float32) counts as agreement, ρ := 1 (accepted);
#   "authors":  the authors' code: ρ := 1 whenever the predicted decrease is below 1e-15 (an absolute threshold);
#   "off":      the plain ratio (below the loss's resolution ρ is rounding noise, and steps get rejected).
NOISE_FLOORS: dict[str, str] = {
    "relative": "ρ := 1 when |pred| and |actual| ≤ noise_floor_ulps·ε·max(|L|, tiny) (ε of the loss's dtype)",
    "authors": "ρ := 1 when pred < 1e-15 (the authors' code, an absolute threshold)",
    "off": "the plain ratio ρ = actual / pred",
}


def _radius(default: float) -> Any:
    return Field(default, gt=0.0, le=1e6, description="initial trust radius Δ₀ (in M-units)")


def _gamma2(default: float) -> Any:
    return Field(default, gt=1.0, le=100.0, description="radius shrink divisor γ₂ (ρ < η₁)")


class TrustRegionHyperparameters(Hyperparameters):
    """trainer.optim.trust_region.TrustRegion with the authors' Table 1 defaults (DESIGN.md)."""

    radius: float = _radius(0.05)
    max_radius: float = Field(10.0, gt=0.0, le=1e8, description="largest trust radius Δ_max")
    eta1: float = Field(0.01, ge=0.0, le=1.0, description="acceptance threshold η₁ on ρ")
    eta2: float = Field(0.95, ge=0.0, le=1.0, description="very-successful threshold η₂ on ρ (radius grows)")
    gamma1: float = Field(1.1, ge=1.0, le=100.0, description="radius growth factor γ₁ (ρ ≥ η₂)")
    gamma2: float = _gamma2(1.5)
    krylov_tol: float = Field(0.1, gt=0.0, le=1.0,
                              description="Krylov tolerance κ of the stopping rule ‖r‖ ≤ ‖g‖·min(κ, ‖g‖^θ)")
    theta: float = Field(0.5, ge=0.0, le=10.0, description="exponent θ of the Krylov stopping rule")
    max_cg_iters: Int = Field(50, ge=1, le=10000, description="cap on Krylov iterations (= HVPs) per step")
    solver: Literal["cg", "lanczos"] = Field("cg", description="subproblem solver: Steihaug-Toint CG or Lanczos (GLTR)")
    beta: float = Field(0.8, ge=0.0, le=1.0, description="RMSprop decay β of the norm matrix")
    eps: float = _eps(1e-10, "floor ε of the norm matrix (kept at every step)")
    norm_update: Literal["every", "accepted"] = Field(
        "every", description="update the norm matrix on every minibatch gradient ('every') or only after accepted "
                             "steps ('accepted')")
    noise_floor: Literal["relative", "authors", "off"] = Field(
        "relative", description="noise floor of ρ: 'relative' — a step whose predicted and actual decreases are both "
                                "within noise_floor_ulps ulps of the loss counts as agreement (ρ := 1); 'authors' — "
                                "ρ := 1 when the predicted decrease is below 1e-15 (the authors' code); 'off' — the "
                                "plain ratio")
    noise_floor_ulps: float = Field(
        4.0, ge=0.0, le=1e6, description="'relative' noise floor: tolerance in machine epsilons of the loss's dtype, "
                                         "relative to |L| (4 ≈ 4.8e-7·|L| in float32)")

    @model_validator(mode="after")
    def _ordered(self) -> "TrustRegionHyperparameters":
        if self.eta1 > self.eta2:
            raise ValueError(f"eta1 ({self.eta1}) must not exceed eta2 ({self.eta2})")
        if self.radius > self.max_radius:
            raise ValueError(f"radius ({self.radius}) must not exceed max_radius ({self.max_radius})")
        return self


class TRRMSpropHyperparameters(TrustRegionHyperparameters):
    """TrustRegion with the RMSprop norm: Table 1's Δ₀ = 1e-4 and γ₂ = 1.75 (``TR_NORM_DEFAULTS``)."""

    radius: float = _radius(TR_NORM_DEFAULTS["rmsprop"]["radius"])
    gamma2: float = _gamma2(TR_NORM_DEFAULTS["rmsprop"]["gamma2"])


# The hyperparameter model of each built-in norm (the registry's tr-<norm>); each one's defaults are the base
# model's overlaid with TR_NORM_DEFAULTS[norm] (tests/trainer/test_hyperparameters.py checks it).
TR_HYPERPARAMETERS: dict[str, type[TrustRegionHyperparameters]] = {
    "uniform": TrustRegionHyperparameters,
    "adagrad": TrustRegionHyperparameters,
    "rmsprop": TRRMSpropHyperparameters,
}


# pydantic error type -> the sentence after the field's name ({v}: the value given, {c}: the bound or choices).
_SENTENCES: dict[str, str] = {
    "greater_than": "must be > {c[gt]}, got {v}",
    "greater_than_equal": "must be >= {c[ge]}, got {v}",
    "less_than": "must be < {c[lt]}, got {v}",
    "less_than_equal": "must be <= {c[le]}, got {v}",
    "finite_number": "must be finite, got {v}",
    "float_type": "must be a number, got {v!r}",
    "int_type": "must be an integer, got {v!r}",
    "int_from_float": "must be an integer, got {v!r}",
    "bool_type": "must be true or false, got {v!r}",
    "literal_error": "must be one of {c[choices]}, got {v!r}",
}


def _sentence(optimizer: str, model: type[Hyperparameters], error: Mapping[str, Any]) -> str:
    """One pydantic error as the sentence the API, the CLI and the UI show: it names the field and the fix."""
    loc = error.get("loc") or ()
    if not loc:  # a cross-field rule (model validator): its message already names the fields
        return str(error.get("msg", "")).removeprefix("Value error, ")
    name = str(loc[0])
    if error["type"] == "extra_forbidden":
        return f"unknown hyperparameter {name!r} for {optimizer}; allowed: {list(model.model_fields)}"
    template = _SENTENCES.get(error["type"])
    if template is None:
        return f"{name}: {error.get('msg')}"
    ctx = dict(error.get("ctx") or {})
    if error["type"] == "literal_error":
        ctx["choices"] = list(model.model_json_schema()["properties"][name]["enum"])
    return f"{name} " + template.format(v=error.get("input"), c=ctx)


def resolve(optimizer: str, model: type[Hyperparameters], given: dict[str, Any]) -> dict[str, Any]:
    """The model's defaults overlaid with the validated ``given`` values, as a plain dict.

    Raises:
        ValueError: an unknown name, a value of the wrong type or out of range, or a broken cross-field rule;
            the message names each field and what it must be (several errors are joined by "; ").
    """
    if not isinstance(given, dict):
        raise ValueError(f"hyperparameters of {optimizer} must be an object of name: value, got {given!r}")
    try:
        return model.model_validate(given).model_dump()
    except ValidationError as exc:
        raise ValueError("; ".join(_sentence(optimizer, model, e) for e in exc.errors(include_url=False))) from None


_TYPES = {"number": "float", "integer": "int", "string": "str", "boolean": "bool"}


def spec_list(model: type[Hyperparameters]) -> list[dict[str, Any]]:
    """The hyperparameters as ``/api/meta`` publishes them, derived from the model's JSON schema: per field its
    name, type (float|int|str|bool), default, description, minimum, maximum, exclusive_minimum and choices."""
    out = []
    for name, prop in model.model_json_schema()["properties"].items():
        exclusive = "exclusiveMinimum" in prop
        out.append({
            "name": name,
            "type": _TYPES[prop["type"]],
            "default": prop.get("default"),
            "description": prop.get("description", ""),
            "minimum": prop["exclusiveMinimum"] if exclusive else prop.get("minimum"),
            "maximum": prop.get("maximum"),
            "exclusive_minimum": exclusive,
            "choices": list(prop["enum"]) if "enum" in prop else None,
        })
    return out
