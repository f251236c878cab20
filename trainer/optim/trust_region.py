"""Stochastic trust-region optimizer with spherical or ellipsoidal (Adagrad/RMSprop) norms (DESIGN.md)."""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch.autograd.graph import increment_version
from torch.optim import Optimizer

from trainer.hyperparameters import TR_HYPERPARAMETERS, TrustRegionHyperparameters
from trainer.optim import fused as kernels
from trainer.optim.hvp import GradientWithHVP, unflatten_into
from trainer.optim.krylov import SOLVERS, SubproblemResult, Workspace
from trainer.optim.norms import DiagonalNorm, make_norm
from trainer.optim.radius import radius_update, reduction_ratio

__all__ = ["TrustRegion", "radius_update", "TR_DEFAULTS", "tr_defaults"]


def tr_defaults(norm: str) -> dict[str, Any]:
    """The authors' Table 1 configuration for ``norm``: the registry's tr-<norm> hyperparameter defaults (for a plugin
    norm: the shared values), i.e. the base values overlaid with ``TR_NORM_DEFAULTS[norm]`` (RMSprop: Δ₀ = 1e-4,
    γ₂ = 1.75). Defined once in trainer/hyperparameters.py; TrustRegion's keyword defaults resolve through it."""
    return {"norm": norm, **TR_HYPERPARAMETERS.get(norm, TrustRegionHyperparameters).model_validate({}).model_dump()}


# The uniform norm's defaults (every key a TrustRegion accepts).
TR_DEFAULTS: dict[str, Any] = tr_defaults("uniform")
_D = TR_DEFAULTS


class _GlobalCounter:
    """A counter kept in the optimizer's global state entry (the first parameter's ``self.state``), read and
    written as an attribute: one definition for ``gradients``, ``hvps`` and ``forwards``."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return int(obj._global_state()[self.name])

    def __set__(self, obj: Any, value: int) -> None:
        obj._global_state()[self.name] = value


class TrustRegion(Optimizer):
    """Stochastic second-order trust-region method (Kohler, Adolphs & Lucchi; DESIGN.md "The algorithm").

    Per ``step(closure)``: one gradient with ``create_graph=True`` on the closure's minibatch; update the
    diagonal norm M; solve min gᵀs + ½sᵀHs s.t. ‖s‖_M ≤ Δ with a Krylov solver (preconditioned by M);
    evaluate the loss at w + s on the same minibatch; ρ = (L - L_new)/pred decides acceptance and the
    radius. A rejected step restores the parameters bit-exactly.

    The closure must re-evaluate the same minibatch and return the loss tensor *without* calling
    ``backward`` (the optimizer differentiates it); it is called twice per step: once with gradients
    enabled, once under ``torch.no_grad`` for ρ.

    Args:
        params: parameters (a single parameter group).
        norm: "uniform" (sphere), "adagrad" or "rmsprop" (ellipsoids). Default "uniform".
        solver: "cg" (Steihaug-Toint) or "lanczos" (GLTR). Default "cg".
        radius: initial trust radius Δ₀ in M-units. Default (None): per norm, 0.05, and 1e-4 for rmsprop
            (``TR_NORM_DEFAULTS``, the same table as the registry's tr-rmsprop).
        max_radius: Δ_max. Default 10.
        eta1, eta2: acceptance / very-successful thresholds. Defaults 0.01, 0.95.
        gamma1: growth factor. Default 1.1. gamma2: shrink divisor. Default (None): per norm, 1.5, and 1.75 for
            rmsprop.
        krylov_tol, theta: stopping rule ‖r‖ ≤ ‖g‖·min(κ, ‖g‖^θ). Defaults 0.1, 0.5.
        max_cg_iters: Krylov iteration cap (= HVPs per step). Default 50.
        beta: RMSprop decay. Default 0.8. eps: floor of M. Default 1e-10.
        norm_update: "every" — M absorbs every minibatch gradient (as Adagrad/RMSprop do); "accepted" —
            the gradient of a rejected step is rolled back out of M. Default "every".
        noise_floor, noise_floor_ulps: the noise floor of ρ (:func:`~trainer.optim.radius.reduction_ratio`):
            "relative" — predicted and actual decreases both within ``noise_floor_ulps`` machine epsilons (of the
            loss's dtype) of |L| count as agreement, ρ := 1; "authors" — ρ := 1 when the predicted decrease is
            below 1e-15 (the authors' code); "off" — the plain ratio. Defaults "relative", 4.
        buffers: the model's buffers (e.g. BatchNorm running_mean/var and num_batches_tracked; not a
            hyperparameter). The gradient's forward pass updates them once, as in any training step; the ρ
            forward pass leaves them as it found them; a rejected step restores them to their state before
            the step, so the model (parameters and buffers) is exactly as it was. Default: none.
        fused: the vector work (norm update, CG, saving and stepping the parameters) in the fused CPU kernels of
            :mod:`trainer.optim.fused` (True: required, ValueError if the parameters cannot take them), in
            PyTorch's operations (False: any device), or whichever the parameters allow (None, the default: fused
            for contiguous float32/float64 CPU parameters). Resolved once, here, as torch.optim's ``fused`` flag
            (:func:`trainer.optim.fused.resolve`); the result is ``self.fused``. Not part of the state.

    State, as torch.optim keeps it: ``param_groups[0]`` holds the hyperparameters (its ``radius`` is Δ₀), and the
    global state lives, as LBFGS keeps its own, in the first parameter's ``self.state`` entry: the live radius
    (``radius``), the counters ``gradients``, ``hvps`` and ``forwards``, and the norm's state (``norm``). The
    attributes of those names read and write that entry, so ``state_dict``/``load_state_dict`` are torch.optim's
    own and a state dict round-trips any number of times (loading copies its tensors; the argument is never
    changed).

    After each step, ``last_trace`` holds: radius (before), new_radius, rho, cg_iterations, cg_exit,
    accepted, pred_decrease, actual_decrease, step_norm_m, step_norm, loss, grad_norm; and the counters
    ``gradients``, ``hvps``, ``forwards`` accumulate.
    """

    def __init__(self, params: Iterable[torch.Tensor], *, norm: str = _D["norm"], solver: str = _D["solver"],
                 radius: float | None = None, max_radius: float = _D["max_radius"], eta1: float = _D["eta1"],
                 eta2: float = _D["eta2"], gamma1: float = _D["gamma1"], gamma2: float | None = None,
                 krylov_tol: float = _D["krylov_tol"], theta: float = _D["theta"],
                 max_cg_iters: int = _D["max_cg_iters"], beta: float = _D["beta"], eps: float = _D["eps"],
                 norm_update: str = _D["norm_update"], noise_floor: str = _D["noise_floor"],
                 noise_floor_ulps: float = _D["noise_floor_ulps"], buffers: Iterable[torch.Tensor] = (),
                 fused: bool | None = None,                  **unknown: Any) -> None:
        if unknown:  # torch.optim would raise TypeError; a ValueError names the options that exist
            raise ValueError(f"Invalid trust-region option(s): {sorted(unknown)}; known: {sorted(TR_DEFAULTS)}")
        per_norm = tr_defaults(norm)  # the None sentinels: the norm's Table 1 values (TR_NORM_DEFAULTS)
        radius = per_norm["radius"] if radius is None else radius
        gamma2 = per_norm["gamma2"] if gamma2 is None else gamma2
        if noise_floor not in ("relative", "authors", "off"):
            raise ValueError(f"Invalid noise_floor: {noise_floor!r}; choose 'relative', 'authors' or 'off'")
        if not 0.0 <= noise_floor_ulps <= 1e6:
            raise ValueError(f"Invalid noise_floor_ulps: {noise_floor_ulps}; need 0 <= noise_floor_ulps <= 1e6")
        if not 0.0 < radius < math.inf:
            raise ValueError(f"Invalid trust radius: {radius}")
        if not radius <= max_radius < math.inf:
            raise ValueError(f"Invalid max radius: {max_radius}; need radius ({radius}) <= max_radius < inf")
        if not 0.0 <= eta1 <= eta2 <= 1.0:
            raise ValueError(f"Invalid thresholds: need 0 <= eta1 <= eta2 <= 1, got {eta1}, {eta2}")
        if not 1.0 <= gamma1 < math.inf:
            raise ValueError(f"Invalid gamma1: {gamma1}")
        if not 1.0 < gamma2 < math.inf:
            raise ValueError(f"Invalid gamma2: {gamma2}")
        if not 0.0 < krylov_tol < math.inf:
            raise ValueError(f"Invalid krylov_tol: {krylov_tol}")
        if not 0.0 <= theta < math.inf:
            raise ValueError(f"Invalid theta: {theta}")
        if solver not in SOLVERS:
            raise ValueError(f"Invalid solver: {solver!r}; choose one of {sorted(SOLVERS)}")
        if norm_update not in ("every", "accepted"):
            raise ValueError(f"Invalid norm_update: {norm_update!r}; choose 'every' or 'accepted'")
        if isinstance(max_cg_iters, bool) or int(max_cg_iters) != max_cg_iters or max_cg_iters < 1:
            raise ValueError(f"Invalid max_cg_iters: {max_cg_iters}")
        defaults = dict(norm=norm, solver=solver, radius=radius, max_radius=max_radius, eta1=eta1, eta2=eta2,
                        gamma1=gamma1, gamma2=gamma2, krylov_tol=krylov_tol, theta=theta,
                        max_cg_iters=int(max_cg_iters), beta=beta, eps=eps, norm_update=norm_update,
                        noise_floor=noise_floor, noise_floor_ulps=float(noise_floor_ulps))
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("TrustRegion supports a single parameter group")
        group = self.param_groups[0]
        if not group["params"]:
            raise ValueError("TrustRegion needs at least one parameter")
        self.fused: bool = kernels.resolve(fused, *[p.detach() for p in self._params()])
        self.norm: DiagonalNorm = make_norm(group["norm"], beta=group["beta"], eps=group["eps"], fused=self.fused)
        self.last_trace: dict[str, Any] = {}
        self._buffers = [b for b in buffers if torch.is_tensor(b)]
        self._workspace = Workspace()  # the solver's vectors, reused across steps
        self._backup: list[torch.Tensor] | None = None  # the parameters before a step, reused across steps
        self._views: tuple[tuple[Any, ...], Any] | None = None  # see _fused_views
        self.register_state_dict_post_hook(_detach_global_state)
        self.register_load_state_dict_pre_hook(_refuse_old_format)
        self.register_load_state_dict_post_hook(_adopt_loaded_state)

    def _global_state(self) -> dict[str, Any]:
        """The global state (the first parameter's ``self.state`` entry), begun from ``param_groups`` if empty."""
        state = self.state[self.param_groups[0]["params"][0]]
        if "radius" not in state:
            state.update(radius=float(self.param_groups[0]["radius"]), gradients=0, hvps=0, forwards=0,
                         norm=self.norm.state_dict())
        return state

    @property
    def radius(self) -> float:
        """The live trust radius Δ (in the state; ``param_groups[0]["radius"]`` is Δ₀)."""
        return float(self._global_state()["radius"])

    @radius.setter
    def radius(self, value: float) -> None:
        self._global_state()["radius"] = float(value)

    gradients = _GlobalCounter("Gradients computed (one per step), in the state.")
    hvps = _GlobalCounter("Hessian-vector products computed, in the state.")
    forwards = _GlobalCounter("Forward-only evaluations (the ρ checks), in the state.")

    def _copy_buffers(self) -> list[torch.Tensor]:
        return [b.detach().clone() for b in self._buffers]

    def _restore_buffers(self, saved: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for b, v in zip(self._buffers, saved):
                b.copy_(v)

    def _fused_views(self, params: list[torch.Tensor], backup: list[torch.Tensor], step: torch.Tensor
                     ) -> tuple[list[Any], list[Any], Any] | None:
        """Flat NumPy views of the parameters, their backups and the step for :func:`kernels.save_and_add`, or None
        on the PyTorch path (``fused`` False). Kept while the parameters keep their memory (checked every step)."""
        if not self.fused:
            return None
        key = (step.data_ptr(), step.numel(), *[(p.data_ptr(), p.numel()) for p in params],
               *[b.data_ptr() for b in backup])
        cached = self._views
        if cached is not None and cached[0] == key:
            return cached[1]
        if not (sum(p.numel() for p in params) == step.numel()
                and kernels.takes(step, *[p.detach() for p in params], *backup)):
            raise ValueError("Invalid parameters for fused=True: they are no longer contiguous float CPU tensors of "
                             "one dtype (were they moved or replaced after the optimizer was built?); build the "
                             "optimizer after placing the model, or pass fused=False")
        flat = [t.detach().view(-1) for t in (*params, *backup)]  # contiguous: views of the same memory
        views = (kernels.views(*flat[:len(params)]), kernels.views(*flat[len(params):]), kernels.views(step)[0])
        self._views = (key, views)
        return views

    def _params(self) -> list[torch.Tensor]:
        return [p for p in self.param_groups[0]["params"] if p.requires_grad]

    # The closure is required (torch.optim's signature makes it optional).
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """One trust-region iteration on the closure's minibatch; returns the loss before the step.

        torch.optim wraps it as any optimizer's step: its step hooks (``register_step_pre_hook``,
        ``register_step_post_hook`` and the global ones) run around it, and a profiler sees it as
        ``Optimizer.step#TrustRegion.step``.
        """
        if closure is None:
            raise ValueError("TrustRegion.step needs a closure that returns the minibatch loss")
        group = self.param_groups[0]
        params = self._params()
        buffers_before = self._copy_buffers() if self._buffers else None
        with torch.enable_grad():
            loss = closure()
        if not torch.is_tensor(loss) or loss.dim() != 0:
            raise ValueError("the closure must return a scalar loss tensor")
        loss_before = loss.detach()  # returned: the value without the graph
        loss_value = float(loss_before)
        self.gradients += 1
        if not math.isfinite(loss_value):
            self.last_trace = {"loss": loss_value, "radius": self.radius, "new_radius": self.radius, "rho": None,
                               "cg_iterations": 0, "cg_exit": None, "accepted": False, "pred_decrease": None,
                               "actual_decrease": None, "step_norm_m": 0.0, "step_norm": 0.0, "grad_norm": None}
            if buffers_before is not None:  # the step is not taken: leave the model as it was
                self._restore_buffers(buffers_before)
            self._global_state()["norm"] = self.norm.state_dict()
            return loss.detach()
        op = GradientWithHVP(loss, params)
        grad = op.grad
        snapshot = self.norm.state_dict() if group["norm_update"] == "accepted" else None
        if snapshot is not None:
            snapshot = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in snapshot.items()}
        self.norm.update(grad)
        precond = self.norm.matrix(grad)
        solve = SOLVERS[group["solver"]]
        result: SubproblemResult = solve(
            grad, op.hvp, self.radius, precond=precond, tol=group["krylov_tol"], theta=group["theta"],
            max_iter=int(group["max_cg_iters"]), workspace=self._workspace, fused=self.fused,
        )
        op.release()
        self.hvps += result.iterations
        del op, loss

        buffers_after = self._copy_buffers() if self._buffers else None
        with torch.no_grad():
            if self._backup is None or len(self._backup) != len(params):
                self._backup = [torch.empty_like(p) for p in params]
            backup = self._backup
            # Exact copies, restored bit-for-bit on rejection. (Pointing the parameters at spare storage holding
            # w + s instead saves a pass but was slower in place: the ρ forward then reads cold memory.)
            views = self._fused_views(params, backup, result.step)
            if views is not None:  # CPU: copy and step in one pass per parameter
                kernels.save_and_add(views[0], views[1], views[2])
                increment_version(params)  # as an in-place PyTorch op would (autograd's in-place checks)
            else:
                torch._foreach_copy_(backup, params)
                torch._foreach_add_(params, unflatten_into(result.step, params))
            new_loss = float(closure())
        if buffers_after is not None:  # the ρ forward pass must not count in the running statistics
            self._restore_buffers(buffers_after)
        self.forwards += 1
        step_norm, grad_norm = result.step_norm, result.grad_norm
        pred = result.model_decrease
        actual = loss_value - new_loss
        rho = reduction_ratio(actual, pred, loss_value, rule=group["noise_floor"], ulps=group["noise_floor_ulps"],
                              eps=torch.finfo(grad.dtype).eps)
        accepted, new_radius = radius_update(
            rho, self.radius, eta1=group["eta1"], eta2=group["eta2"], gamma1=group["gamma1"],
            gamma2=group["gamma2"], max_radius=group["max_radius"],
        )
        if not accepted:
            with torch.no_grad():
                torch._foreach_copy_(params, backup)
            if buffers_before is not None:
                self._restore_buffers(buffers_before)
            if snapshot is not None:
                self.norm.load_state_dict(snapshot)
        self.last_trace = {
            "loss": loss_value,
            "radius": self.radius,
            "new_radius": new_radius,
            "rho": rho if math.isfinite(rho) else None,
            "cg_iterations": result.iterations,
            "cg_exit": result.exit.value,
            "accepted": accepted,
            "pred_decrease": pred,
            "actual_decrease": actual if math.isfinite(actual) else None,
            "step_norm_m": result.step_norm_m,
            "step_norm": step_norm,
            "grad_norm": grad_norm,
        }
        self.radius = new_radius
        self._global_state()["norm"] = self.norm.state_dict()
        return loss_before


def _detach_global_state(optimizer: Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    """State-dict post-hook: the global entry is a copy (torch.optim hands out its live per-parameter dicts, and
    this one's radius and counters are rebound every step); its tensors are shared, as torch.optim's are."""
    state = state_dict["state"]
    for key, entry in state.items():
        if "norm" in entry:
            state[key] = {**entry, "norm": dict(entry["norm"])}
    return state_dict


def _refuse_old_format(optimizer: Optimizer, state_dict: dict[str, Any]) -> None:
    """Load pre-hook: a state dict of the old layout (a top-level "trust_region" entry) would load without it."""
    if "trust_region" in state_dict:
        raise ValueError("Invalid TrustRegion state dict: it has the old top-level 'trust_region' entry; the radius, "
                         "counters and norm now live in the first parameter's state (save it again from this version)")


def _adopt_loaded_state(optimizer: Optimizer) -> None:
    """Load post-hook: the loaded global state gets its own tensors (torch.optim's load keeps the caller's where
    device and dtype match, and the norm updates its accumulator in place), and the norm takes it over."""
    assert isinstance(optimizer, TrustRegion)  # registered by TrustRegion.__init__ only
    group = optimizer.param_groups[0]
    state = optimizer.state.get(group["params"][0])
    if state is None or "norm" not in state:  # saved before any step: the state begins again from param_groups
        optimizer.norm = make_norm(group["norm"], beta=group["beta"], eps=group["eps"], fused=optimizer.fused)
        return
    state["norm"] = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in state["norm"].items()}
    optimizer.norm.load_state_dict(state["norm"])
