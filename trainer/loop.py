"""The training loop: one RunConfig in, per-step records, evaluations and a final status out via a Reporter."""
from __future__ import annotations

import math
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from trainer.config import RunConfig
from trainer.data import DEFAULT_DATA_DIR, DatasetUnavailable, TensorData, load_dataset
from trainer.guards import RunGuard
from trainer.models import build_model, count_parameters, loss_function, reconstruction_image, with_l2
from trainer.optim.factory import build_optimizer
from trainer.optim.trust_region import TrustRegion
from trainer.registry import MODELS
from trainer.reporting import TR_TRACE_FIELDS, NullReporter, Reporter, RunStatus, StopReason
from trainer.reporting import clean_scalar as _finite  # the one cleaning rule: non-finite floats become None

__all__ = ["run", "resolve_device", "DEFAULT_DATA_DIR", "images_png"]

_EVAL_CHUNK = 4096


def resolve_device(spec: str) -> torch.device:
    """"auto" → cuda when available, else cpu; explicit cuda requests fail clearly without a GPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available; use device \"cpu\" or \"auto\"")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} does not exist; {torch.cuda.device_count()} GPU(s) visible")
    return dev


def images_png(images: torch.Tensor, scale: int = 2) -> bytes:
    """A vertical strip of images (N×C×H×W in [0, 1]) as PNG bytes, upscaled ``scale``× (nearest)."""
    from torchvision.io import encode_png
    from torchvision.utils import make_grid

    imgs = images.detach().float().clamp(0, 1).cpu()
    if scale > 1:
        imgs = imgs.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    grid = make_grid(imgs, nrow=1, padding=2, pad_value=1.0)
    if imgs.shape[1] == 1:
        grid = grid[:1]
    return bytes(encode_png((grid * 255).round().to(torch.uint8)).numpy())


class _Evaluator:
    """Fixed evaluation sets and the loss/accuracy computation (not counted in wall time)."""

    def __init__(self, cfg: RunConfig, data: TensorData, model: torch.nn.Module,
                 loss_fn: Callable[..., torch.Tensor]) -> None:
        self.model, self.loss_fn = model, loss_fn
        self.classifier = MODELS[cfg.model].task == "classification"
        n = min(cfg.eval_train_size, data.train_size)
        self.train = (data.train_x[:n], data.train_y[:n])
        self.test = (data.test_x, data.test_y)
        k = min(cfg.num_reconstructions, data.test_size)
        self.recon_images = None if self.classifier else data.test_x[:k]
        self.to_image = reconstruction_image(cfg.autoencoder_loss)

    @torch.no_grad()
    def _measure(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float | None]:
        total, correct = 0.0, 0
        for i in range(0, x.shape[0], _EVAL_CHUNK):
            xb, yb = x[i:i + _EVAL_CHUNK], y[i:i + _EVAL_CHUNK]
            out = self.model(xb)
            total += float(self.loss_fn(out, xb, yb)) * xb.shape[0]
            if self.classifier:
                correct += int((out.argmax(1) == yb).sum())
        n = max(x.shape[0], 1)
        return total / n, (correct / n if self.classifier else None)

    def evaluate(self) -> dict[str, Any]:
        was_training = self.model.training
        self.model.eval()
        try:
            train_loss, train_acc = self._measure(*self.train)
            test_loss, test_acc = self._measure(*self.test)
        finally:
            self.model.train(was_training)
        return {"train_loss": _finite(train_loss), "test_loss": _finite(test_loss),
                "train_accuracy": train_acc, "test_accuracy": test_acc}

    @torch.no_grad()
    def reconstructions(self) -> bytes | None:
        if self.recon_images is None:
            return None
        was_training = self.model.training
        self.model.eval()
        try:
            out = self.to_image(self.model(self.recon_images))
        finally:
            self.model.train(was_training)
        return images_png(out)


def run(config: RunConfig | dict[str, Any], reporter: Reporter | None = None, *, data_dir: str | Path | None = None,
        download: bool = True) -> dict[str, Any]:
    """Train one run to its budget and return the summary (also passed to ``reporter.on_finish``).

    Failures (bad device, missing data, any exception) end with status "failed" and the error message; a
    non-finite training loss ends with "diverged" at that step, and so do the other guards of
    ``config.guards`` (trainer/guards.py; TR stalls end "failed" with the reason, unless the loss sits at its
    floor); a met floor of ``config.converged`` ends "completed" with the reason; ``reporter.should_stop()``
    (checked every step) ends with "stopped". Same config and seed → same records on the CPU (up to ``wall_time``).

    Args:
        config: a RunConfig (or its dict form).
        reporter: receives records; default discards them.
        data_dir: dataset directory (server configuration, never part of the config). Default "data".
        download: let torchvision download a missing dataset when online. Default True.
    """
    reporter = reporter or NullReporter()
    summary: dict[str, Any] = {"status": RunStatus.FAILED, "message": "", "stop_reason": StopReason.ERROR,
                               "steps": 0, "backprops": 0, "epoch": 0.0, "wall_time": 0.0}
    try:
        cfg = config if isinstance(config, RunConfig) else RunConfig.model_validate(config)
        _train(cfg, reporter, Path(data_dir or DEFAULT_DATA_DIR), summary, download=download)
    except DatasetUnavailable as exc:
        summary["status"] = RunStatus.FAILED
        summary["stop_reason"] = StopReason.ERROR
        summary["message"] = f"{type(exc).__name__}: {exc}"
        summary["public_message"] = exc.public_message  # without server paths, for API clients
    except Exception as exc:  # noqa: BLE001 - reported to the caller as status "failed" with the error
        summary["status"] = RunStatus.FAILED
        summary["stop_reason"] = StopReason.ERROR
        summary["message"] = f"{type(exc).__name__}: {exc}"
        summary["traceback"] = traceback.format_exc()
    reporter.on_finish(summary)
    return summary


def _tr_step(opt: TrustRegion, closure: Callable[[], torch.Tensor], sync: Callable[[], Any]
             ) -> tuple[float, float, dict[str, Any]]:
    """One trust-region step on the closure's minibatch: (minibatch loss, seconds of optimization, step record
    fields: the norms and the :class:`~trainer.reporting.StepTrace` internals)."""
    t0 = time.perf_counter()
    opt.step(closure)
    sync()
    seconds = time.perf_counter() - t0
    tr = opt.last_trace
    return tr["loss"], seconds, {"grad_norm": tr["grad_norm"], "step_norm": tr["step_norm"],
                                 **{k: tr[k] for k in TR_TRACE_FIELDS}}


def _first_order_step(opt: torch.optim.Optimizer, model: torch.nn.Module, loss_fn: Callable[..., torch.Tensor],
                      xb: torch.Tensor, yb: torch.Tensor, params: list[torch.Tensor], sync: Callable[[], Any], *,
                      measure: bool) -> tuple[float, float, dict[str, Any]]:
    """One first-order step (gradient, ``opt.step()``): (minibatch loss, seconds of optimization, record fields).

    With ``measure``, the gradient norm and the step norm are computed outside the timed regions (foreach ops
    keep it cheap) and read in one device sync with the loss; otherwise they are None.
    """
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(xb), xb, yb)
    loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
    sync()
    seconds = time.perf_counter() - t0
    if measure:
        with torch.no_grad():
            grads = [p.grad for p in params if p.grad is not None]
            grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            before = torch._foreach_mul(params, 1.0)
    t0 = time.perf_counter()
    opt.step()
    sync()
    seconds += time.perf_counter() - t0
    if not measure:
        return loss.item(), seconds, {"grad_norm": None, "step_norm": None}
    with torch.no_grad():
        torch._foreach_sub_(before, params)
        step_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(before)))
        loss_value, gn, sn = torch.stack((loss.detach(), grad_norm, step_norm)).tolist()
    return loss_value, seconds, {"grad_norm": gn, "step_norm": sn}


def _train(cfg: RunConfig, reporter: Reporter, data_dir: Path, summary: dict[str, Any], *, download: bool) -> None:
    device = resolve_device(cfg.device)
    task = MODELS[cfg.model].task
    data = load_dataset(cfg.dataset, data_dir, device=device, normalize=cfg.input_scaling == "standardize",
                        train_subset=cfg.train_subset, test_subset=cfg.test_subset, download=download)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.dataset).to(device)
    model.train()
    data_loss = loss_function(cfg.model, cfg.autoencoder_loss)
    hyper = cfg.optimizer.resolved()
    params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
    # The training objective: the data loss, plus the optional L2 term (RunConfig.l2; evaluations report the data
    # loss alone).
    loss_fn = data_loss if cfg.l2 == 0 else with_l2(data_loss, params, cfg.l2)
    opt = build_optimizer(cfg.optimizer.name, params, hyper, buffers=list(model.buffers()))
    is_tr = isinstance(opt, TrustRegion)
    eps = torch.finfo(params[0].dtype).eps if params and params[0].is_floating_point() else 2.0 ** -23
    guard = RunGuard(cfg.guards, is_tr=is_tr, cg_cap=hyper.get("max_cg_iters"), converged=cfg.converged, eps=eps)
    batch = cfg.effective_batch_size
    n_train = data.train_size
    # The authors' warm start: Adagrad (registry defaults) for the first warm_start_epochs, then the TR method.
    warm = build_optimizer("adagrad", params) if is_tr and cfg.warm_start_epochs > 0 else None
    warm_samples = cfg.warm_start_epochs * n_train if warm is not None else 0.0
    warm_gradients = 0
    evaluator = _Evaluator(cfg, data, model, data_loss)
    setup = getattr(reporter, "on_setup", None)  # optional hook: analyses read the weights (trainer.analysis)
    if setup is not None:
        setup(model, data, data_loss)
    gen = torch.Generator().manual_seed(cfg.seed)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    budget = cfg.budget
    summary["device"] = str(device)
    summary["num_parameters"] = count_parameters(model)
    reporter.on_start({
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "num_parameters": summary["num_parameters"], "train_size": n_train, "test_size": data.test_size,
        "batch_size": batch, "hyperparameters": hyper, "optimizer_family": cfg.optimizer.family, "task": task,
        "data_source": data.source,
    })

    step = gradients = hvps = forwards = samples = 0
    wall = 0.0
    last_loss: float | None = None
    last_eval: dict[str, Any] = {}

    def counters() -> dict[str, Any]:
        return {"step": step, "backprops": gradients + hvps, "epoch": samples / n_train, "wall_time": wall}

    def do_eval() -> None:
        nonlocal last_eval
        last_eval = {**counters(), **evaluator.evaluate()}
        reporter.on_eval(last_eval)
        png = evaluator.reconstructions()
        if png is not None:
            reporter.on_images(step, "reconstruction", png)

    if evaluator.recon_images is not None:
        reporter.on_images(0, "original", images_png(evaluator.recon_images))
    do_eval()

    eval_axis, eval_interval = cfg.eval_schedule()
    next_eval = eval_interval

    perm = torch.randperm(n_train, generator=gen).to(device)
    cursor = 0
    status, message, reason = RunStatus.COMPLETED, "budget reached", StopReason.BUDGET
    while True:
        if budget.epochs is not None and samples >= budget.epochs * n_train:
            break
        if budget.backprops is not None and gradients + hvps >= budget.backprops:
            break
        if budget.seconds is not None and wall >= budget.seconds:
            break
        if reporter.should_stop():
            status, message, reason = RunStatus.STOPPED, f"stopped on request at step {step}", StopReason.REQUESTED
            break
        if cursor >= n_train:
            perm = torch.randperm(n_train, generator=gen).to(device)
            cursor = 0
        idx = perm[cursor:cursor + batch]
        cursor += idx.numel()
        xb, yb = data.train_x[idx], data.train_y[idx]

        record: dict[str, Any]
        if is_tr and samples >= warm_samples:
            assert isinstance(opt, TrustRegion)  # is_tr
            loss_value, seconds, record = _tr_step(opt, lambda: loss_fn(model(xb), xb, yb), sync)  # noqa: B023 - used in this iteration only
            gradients, hvps, forwards = warm_gradients + opt.gradients, opt.hvps, opt.forwards
        else:
            first_order = warm if is_tr else opt  # a TR run here is in its Adagrad warm start
            assert first_order is not None  # a TR run has a warm optimizer while samples < warm_samples
            measure = step % cfg.grad_norm_every == 0  # instrumentation on the 1st, (N+1)th, ... step
            loss_value, seconds, record = _first_order_step(first_order, model, loss_fn, xb, yb, params, sync,
                                                            measure=measure)
            gradients += 1
            warm_gradients += int(is_tr)
        wall += seconds
        step += 1
        samples += int(idx.numel())
        last_loss = loss_value
        full = {**counters(), "gradients": gradients, "hvps": hvps, "forwards": forwards,
                "train_loss": _finite(loss_value), **record}
        full["grad_norm"] = _finite(full["grad_norm"])
        reporter.on_step(full)
        verdict = guard.check(step, loss_value, record)
        if verdict is not None:
            status, message, reason = verdict.status, verdict.message, verdict.reason
            break
        if full[eval_axis] >= next_eval * (1 - 1e-9):  # tolerance: fractional epochs sum in floating point
            do_eval()
            next_eval = (math.floor(full[eval_axis] / eval_interval * (1 + 1e-9)) + 1) * eval_interval
    if status != RunStatus.DIVERGED and (not last_eval or last_eval["step"] != step):
        do_eval()
    summary.update({
        "status": status, "message": message, "stop_reason": reason, "steps": step, "backprops": gradients + hvps, "gradients": gradients,
        "hvps": hvps, "forwards": forwards, "epoch": samples / n_train, "wall_time": wall,
        "final_minibatch_loss": _finite(last_loss) if last_loss is not None else None,
        # The last evaluation: train loss on the fixed training subset, test loss and accuracy.
        **{f"final_{k}": v for k, v in last_eval.items() if k in ("train_loss", "test_loss", "test_accuracy")},
    })
