"""The CLI: trains, writes JSON lines, and refuses bad input with a message and a non-zero exit."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.cli import main

ROOT = Path(__file__).resolve().parents[2]
needs_fmnist = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                                  reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")


@needs_fmnist
def test_cli_trains_and_writes_jsonl(tmp_path):
    out = tmp_path / "rec.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "--dataset", "fashion-mnist", "--model", "mlp", "--optimizer", "tr-rmsprop",
         "--epochs", "1", "--train-subset", "2048", "--eval-every", "2", "--set", "eta1=0.02", "--set", "solver=lanczos",
         "--data-dir", str(tmp_path), "--no-download", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "tr-rmsprop on fashion-mnist/mlp: completed" in proc.stdout
    assert "test accuracy" in proc.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = {r["kind"] for r in rows}
    assert {"start", "step", "eval", "summary"} <= kinds
    assert rows[0]["hyperparameters"]["eta1"] == 0.02 and rows[0]["hyperparameters"]["solver"] == "lanczos"
    assert rows[-1]["kind"] == "summary" and rows[-1]["status"] == "completed"
    assert sum(r["kind"] == "step" for r in rows) == 4


@needs_fmnist
def test_cli_config_file_with_flag_override(tmp_path, capsys):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "adam"},
                               "budget": {"backprops": 3}, "train_subset": 256}))
    assert main(["--config", str(cfg), "--seed", "2", "--quiet", "--data-dir", str(tmp_path), "--no-download"]) == 0
    assert "adam on fashion-mnist/mlp: completed" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["--dataset", "fashion-mnist", "--model", "mlp", "--optimizer", "sgd"], "set a budget"),
    (["--model", "mlp", "--optimizer", "sgd", "--epochs", "1"], "missing --dataset"),
    (["--dataset", "fashion-mnist", "--model", "mlp", "--optimizer", "sgd", "--epochs", "1", "--set", "eta1=0.1"],
     "unknown hyperparameter 'eta1' for sgd"),
    (["--dataset", "fashion-mnist", "--model", "mlp", "--optimizer", "tr-uniform", "--epochs", "1", "--set", "radius"],
     "--set expects NAME=VALUE"),
    (["--dataset", "cifar10", "--model", "autoencoder", "--optimizer", "sgd", "--epochs", "1"], "does not fit"),
    (["--config", "/nonexistent.json"], "cannot read --config"),
])
def test_cli_bad_input(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and needle in err


def test_cli_missing_data_exits_nonzero(tmp_path, capsys):
    code = main(["--dataset", "cifar10", "--model", "mlp", "--optimizer", "sgd", "--epochs", "1", "--no-download",
                 "--data-dir", str(tmp_path), "--quiet"])
    assert code == 1
    assert "dataset 'cifar10' not found" in capsys.readouterr().err


def test_progress_without_a_terminal_prints_one_line_per_update():
    """Piped into a log file, the tqdm bar wrote one endless line of carriage returns."""
    import io

    from trainer.cli import _CliReporter
    from trainer.config import RunConfig

    cfg = RunConfig.model_validate({"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd"},
                                    "budget": {"epochs": 1}})
    stream = io.StringIO()  # not a TTY
    rep = _CliReporter(cfg, None, False, stream=stream)
    assert rep.bar is None
    for i in range(1, 201):
        rep.on_step({"epoch": i / 200, "backprops": i, "wall_time": 0.0, "train_loss": 2.0 - i / 200})
    rep.on_finish({"status": "completed"})
    text = stream.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) == 21  # 0%, 5%, ..., 100%
    assert lines[0].startswith("sgd:   0%") and lines[-1].startswith("sgd: 100%") and "loss 1.0000" in lines[-1]
    quiet = io.StringIO()
    _CliReporter(cfg, None, True, stream=quiet).on_step({"epoch": 1, "backprops": 1, "wall_time": 0,
                                                         "train_loss": 1.0})
    assert quiet.getvalue() == ""
