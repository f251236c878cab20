"""The training loop on real Fashion-MNIST subsets and generated MNIST/CIFAR-10 data."""
from pathlib import Path

import pytest

import trainer
from trainer.registry import OPTIMIZERS
from trainer.reporting import ListReporter

needs_fmnist = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                                  reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")


def _cfg(opt, **over):
    cfg = {"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": opt}, "budget": {"epochs": 2},
           "train_subset": 2048, "test_subset": 1000, "eval_every": 1000, "device": "cpu"}
    cfg.update(over)
    return cfg


@needs_fmnist
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_every_optimizer_lowers_the_loss(opt, tmp_path):
    rep = ListReporter()
    # Batch 128 for all: 64 steps, enough for tr-rmsprop's small Δ₀ = 1e-4 to grow (×1.1 per success).
    s = trainer.run(_cfg(opt, batch_size=128, budget={"epochs": 4}), rep, data_dir=tmp_path, download=False)
    assert s["status"] == "completed", s["message"]
    first, last = rep.evals[0], rep.evals[-1]
    assert first["step"] == 0 and last["step"] == s["steps"]
    assert last["train_loss"] < 0.8 * first["train_loss"], (opt, first["train_loss"], last["train_loss"])
    assert last["test_accuracy"] > 0.5
    assert s["epoch"] == pytest.approx(4.0, abs=1e-9)
    assert s["final_train_loss"] == last["train_loss"] and s["final_test_accuracy"] == last["test_accuracy"]
    assert s["final_minibatch_loss"] == rep.steps[-1]["train_loss"]


@needs_fmnist
def test_tr_records_and_cost_accounting(tmp_path):
    rep = ListReporter()
    s = trainer.run(_cfg("tr-adagrad", budget={"backprops": 60}), rep, data_dir=tmp_path, download=False)
    assert s["status"] == "completed"
    for prev, rec in zip(rep.steps, rep.steps[1:]):
        assert rec["backprops"] == rec["gradients"] + rec["hvps"]
        assert rec["hvps"] - prev["hvps"] == rec["cg_iterations"]
        assert rec["forwards"] == rec["step"]
        assert rec["radius"] == pytest.approx(prev["new_radius"])
        assert rec["epoch"] == pytest.approx(rec["step"] * 512 / 2048)
        assert rec["wall_time"] >= prev["wall_time"]
    assert s["backprops"] >= 60 and rep.steps[-2]["backprops"] < 60
    keys = {"step", "backprops", "hvps", "forwards", "epoch", "wall_time", "train_loss", "grad_norm", "step_norm",
            "radius", "rho", "cg_iterations", "cg_exit", "accepted"}
    assert keys <= set(rep.steps[0])


@needs_fmnist
def test_first_order_norms_every_n_steps(tmp_path):
    rep = ListReporter()
    trainer.run(_cfg("sgd", budget={"backprops": 7}, grad_norm_every=3), rep, data_dir=tmp_path, download=False)
    measured = [r["step"] for r in rep.steps if r["grad_norm"] is not None]
    assert measured == [1, 4, 7]
    assert all((r["step_norm"] is None) == (r["grad_norm"] is None) for r in rep.steps)
    lr = 0.1  # plain SGD: the step is lr * gradient
    for r in rep.steps:
        if r["grad_norm"] is not None:
            assert r["step_norm"] == pytest.approx(lr * r["grad_norm"], rel=1e-4)
    every = ListReporter()
    trainer.run(_cfg("sgd", budget={"backprops": 3}, grad_norm_every=1), every, data_dir=tmp_path, download=False)
    assert all(r["grad_norm"] is not None for r in every.steps)


@needs_fmnist
def test_same_seed_same_records(tmp_path):
    def records(seed):
        rep = ListReporter()
        trainer.run(_cfg("tr-rmsprop", budget={"backprops": 40}, seed=seed), rep, data_dir=tmp_path, download=False)
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in rep.steps]

    a, b, c = records(3), records(3), records(4)
    assert a == b
    assert a != c


@needs_fmnist
def test_stop_flag_ends_run_with_stopped(tmp_path):
    rep = ListReporter(stop_after=3)
    s = trainer.run(_cfg("sgd"), rep, data_dir=tmp_path, download=False)
    assert s["status"] == "stopped" and s["steps"] == 3 and len(rep.steps) == 3


@needs_fmnist
@pytest.mark.parametrize("opt", ["sgd", "tr-uniform"])
def test_divergence_is_reported_with_step(opt, tmp_path, monkeypatch):
    import torch

    from trainer import loop

    real = loop.loss_function
    calls = {"n": 0}

    def poisoned(model, *args):
        fn = real(model, *args)

        def loss(out, x, y):
            value = fn(out, x, y)
            if torch.is_grad_enabled():  # training evaluations only: the 5th gradient sees a NaN loss
                calls["n"] += 1
                if calls["n"] >= 5:
                    return value * float("nan")
            return value
        return loss

    monkeypatch.setattr(loop, "loss_function", poisoned)
    rep = ListReporter()
    s = trainer.run(_cfg(opt), rep, data_dir=tmp_path, download=False)
    assert s["status"] == "diverged"
    assert s["steps"] == 5 and "at step 5" in s["message"]
    assert rep.steps[-1]["train_loss"] is None


def test_missing_dataset_fails_with_message(tmp_path):
    rep = ListReporter()
    s = trainer.run(_cfg("sgd", dataset="cifar10"), rep, data_dir=tmp_path, download=False)
    assert s["status"] == "failed" and "DatasetUnavailable" in s["message"] and "cifar10" in s["message"]
    assert rep.summary == s


def test_cuda_request_without_gpu_fails_clearly(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    s = trainer.run(_cfg("sgd", device="cuda"), ListReporter(), data_dir=tmp_path, download=False)
    assert s["status"] == "failed" and "CUDA is not available" in s["message"]


def test_autoencoder_on_generated_mnist_emits_png_strips(fake_mnist_dir):
    rep = ListReporter()
    s = trainer.run(_cfg("tr-uniform", dataset="mnist", model="autoencoder", batch_size=32, budget={"backprops": 12},
                         eval_every=2, num_reconstructions=8), rep, data_dir=fake_mnist_dir, download=False)
    assert s["status"] == "completed", s["message"]
    kinds = [k for _, k, _ in rep.images]
    assert kinds[0] == "original" and kinds.count("reconstruction") == len(rep.evals)
    png = rep.images[0][2]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test_accuracy" in rep.evals[0] and rep.evals[0]["test_accuracy"] is None


@pytest.mark.parametrize("model", ["mlp", "conv-autoencoder"])
def test_cifar_code_path_on_generated_data(fake_cifar_dir, model):
    rep = ListReporter()
    s = trainer.run(_cfg("adam", dataset="cifar10", model=model, batch_size=16, budget={"backprops": 5}),
                    rep, data_dir=fake_cifar_dir, download=False)
    assert s["status"] == "completed", s["message"]
    assert s["num_parameters"] == (411_146 if model == "mlp" else s["num_parameters"])
    assert len(rep.steps) == 5


@pytest.mark.parametrize("opt,batch", [("sgd", 8), ("tr-uniform", 32)])
def test_eval_every_in_epochs_gives_every_run_the_same_eval_points(fake_mnist_dir, opt, batch):
    """Evaluations at fixed epochs whatever the batch size (in steps, TR at batch 32 would get 4x fewer)."""
    rep = ListReporter()
    s = trainer.run(_cfg(opt, dataset="mnist", train_subset=64, test_subset=64, batch_size=batch,
                         budget={"epochs": 2}, eval_every={"epochs": 0.5}), rep, data_dir=fake_mnist_dir)
    assert s["status"] == "completed", s["message"]
    assert [e["epoch"] for e in rep.evals] == pytest.approx([0, 0.5, 1.0, 1.5, 2.0])


def test_eval_every_in_backprops_and_default_of_about_50(fake_mnist_dir):
    rep = ListReporter()
    s = trainer.run(_cfg("tr-uniform", dataset="mnist", train_subset=256, test_subset=64, batch_size=64,
                         budget={"backprops": 60}, eval_every={"backprops": 20}), rep, data_dir=fake_mnist_dir)
    bps = [e["backprops"] for e in rep.evals]
    assert bps[0] == 0 and bps[-1] == s["backprops"]
    # a TR step costs 1 gradient + several HVPs: evaluate at the first step reaching each multiple of 20
    assert all(b >= 20 * i for i, b in enumerate(bps[:-1])) and len(bps) >= 3
    rep = ListReporter()
    cfg = _cfg("sgd", dataset="mnist", train_subset=256, test_subset=64, batch_size=8, budget={"backprops": 100})
    del cfg["eval_every"]
    trainer.run(cfg, rep, data_dir=fake_mnist_dir)
    assert [e["step"] for e in rep.evals] == list(range(0, 101, 2))  # 50 evaluations + the one at step 0
@needs_fmnist
def test_warm_start_runs_adagrad_first_and_counts_its_steps(tmp_path):
    rep = ListReporter()
    # 2048 samples, batch 512: warm_start_epochs 0.5 = the first 2 steps are Adagrad steps.
    s = trainer.run(_cfg("tr-adagrad", budget={"epochs": 1.5}, warm_start_epochs=0.5), rep, data_dir=tmp_path)
    assert s["status"] == "completed", s["message"]
    warm, tr = rep.steps[:2], rep.steps[2:]
    assert all(r.get("cg_iterations") is None and r["hvps"] == 0 for r in warm)
    assert [r["gradients"] for r in warm] == [1, 2] and warm[-1]["backprops"] == 2
    assert tr and all(r["cg_iterations"] is not None for r in tr)
    for _prev, rec in zip(rep.steps, rep.steps[1:]):
        assert rec["backprops"] == rec["gradients"] + rec["hvps"]
        assert rec["epoch"] == pytest.approx(rec["step"] * 512 / 2048)
    assert tr[0]["gradients"] == 3  # the TR method's gradient count continues after the warm start
    assert s["backprops"] == rep.steps[-1]["backprops"] and s["epoch"] == pytest.approx(1.5)


def test_autoencoder_mse_variant_on_generated_mnist(fake_mnist_dir):
    rep = ListReporter()
    s = trainer.run(_cfg("tr-uniform", dataset="mnist", model="autoencoder", batch_size=32, budget={"backprops": 6},
                         eval_every=3, autoencoder_loss="mse"), rep, data_dir=fake_mnist_dir)
    assert s["status"] == "completed", s["message"]
    assert rep.images and rep.images[-1][1] == "reconstruction"
    assert rep.evals[0]["train_loss"] < 1.0  # an MSE on [0, 1] pixels, not a BCE (≥ the pixels' entropy)


@needs_fmnist
def test_l2_counts_in_the_training_loss_not_in_evaluations(tmp_path):
    runs = {}
    for l2 in (0.0, 0.01):
        rep = ListReporter()
        s = trainer.run(_cfg("sgd", l2=l2, budget={"backprops": 2}, train_subset=256, test_subset=100,
                             eval_train_size=256), rep, data_dir=tmp_path, download=False)
        assert s["status"] == "completed", s["message"]
        runs[l2] = rep
    plain, penalized = runs[0.0], runs[0.01]
    assert plain.evals[0]["train_loss"] == penalized.evals[0]["train_loss"]  # same seed, same weights, data loss
    assert penalized.steps[0]["train_loss"] > plain.steps[0]["train_loss"] + 0.01  # Σw² of the MLP is > 1
