"""Dataset discovery and loading: local layouts, Debian's system copy, download fallback, clear failures."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer import data as data_mod
from trainer.data import DatasetUnavailable, dataset_available, load_dataset, read_idx
from tests.trainer.conftest import write_fake_cifar, write_idx

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")


def test_idx_roundtrip_gz_and_plain(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, arr)
        np.testing.assert_array_equal(read_idx(tmp_path / name), arr)


def test_truncated_idx_is_refused(tmp_path):
    arr = np.zeros((4, 5), dtype=np.uint8)
    write_idx(tmp_path / "t", arr)
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "t")


@pytest.mark.skipif(not SYSTEM_FMNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")
def test_fashion_mnist_from_system_location(tmp_path):
    d = load_dataset("fashion-mnist", tmp_path, normalize=False, download=False)
    assert d.train_size == 60000 and d.test_size == 10000
    assert d.train_x.shape == (60000, 1, 28, 28) and d.train_x.dtype == torch.float32
    assert 0.0 <= float(d.train_x.min()) and float(d.train_x.max()) <= 1.0
    assert sorted(d.train_y.unique().tolist()) == list(range(10))
    assert d.source == str(SYSTEM_FMNIST)
    assert dataset_available("fashion-mnist", tmp_path)


def test_mnist_in_torchvision_layout(fake_mnist_dir):
    d = load_dataset("mnist", fake_mnist_dir, train_subset=50, download=False)
    assert d.train_x.shape == (50, 1, 28, 28) and d.test_size == 32
    # classifier inputs are standardized
    assert abs(float(d.train_x.mean())) < 5.0
    assert dataset_available("mnist", fake_mnist_dir)


def test_cifar_pickles(fake_cifar_dir):
    d = load_dataset("cifar10", fake_cifar_dir, normalize=False, download=False)
    assert d.train_x.shape == (100, 3, 32, 32) and d.test_x.shape == (20, 3, 32, 32)
    assert d.train_y.dtype == torch.int64


def test_missing_dataset_message_names_places_and_fix(tmp_path):
    with pytest.raises(DatasetUnavailable) as err:
        load_dataset("cifar10", tmp_path / "nowhere", download=False)
    msg = str(err.value)
    assert "'cifar10' not found" in msg and str(tmp_path / "nowhere" / "cifar-10-batches-py") in msg
    assert "/usr/share/datasets/cifar10" in msg and "download disabled" in msg and "To get it" in msg


def test_download_fallback_used_when_missing(tmp_path, monkeypatch):
    calls = []

    def fake_download(name, data_dir):
        calls.append(name)
        write_fake_cifar(Path(data_dir) / "cifar-10-batches-py", per_batch=4, test=4)

    monkeypatch.setattr(data_mod, "_download", fake_download)
    d = load_dataset("cifar10", tmp_path, download=True)
    assert calls == ["cifar10"] and d.train_size == 20


def test_download_failure_is_reported(tmp_path, monkeypatch):
    def offline(name, data_dir):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data_mod, "_download", offline)
    with pytest.raises(DatasetUnavailable, match="download failed .*network is unreachable"):
        load_dataset("mnist", tmp_path, download=True)


def test_decode_cache_is_written_once_and_reused(fake_mnist_dir, monkeypatch):
    plain = load_dataset("mnist", fake_mnist_dir, download=False, cache=False)
    assert not (fake_mnist_dir / "cache").exists()
    first = load_dataset("mnist", fake_mnist_dir, download=False)
    cached = list((fake_mnist_dir / "cache").glob("mnist-*.pt"))
    assert len(cached) == 1

    def no_decoding(*a, **k):
        raise AssertionError("decoded again despite a warm cache")

    monkeypatch.setattr(data_mod, "_read_arrays", no_decoding)
    second = load_dataset("mnist", fake_mnist_dir, download=False, train_subset=50)
    for d in (first, second):  # the cache holds raw pixels; normalisation stays a separate step
        n = len(d.train_x)
        assert torch.equal(d.train_x, plain.train_x[:n]) and torch.equal(d.train_y, plain.train_y[:n])
        assert torch.equal(d.test_x, plain.test_x) and torch.equal(d.test_y, plain.test_y)
    raw = load_dataset("mnist", fake_mnist_dir, download=False, normalize=False)
    assert float(raw.train_x.min()) >= 0.0 and float(raw.train_x.max()) <= 1.0


def test_a_changed_source_file_is_a_new_cache_entry(fake_mnist_dir):
    load_dataset("mnist", fake_mnist_dir, download=False)
    src = fake_mnist_dir / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels = read_idx(src).copy()
    labels[0] = (labels[0] + 1) % 10
    write_idx(src, labels)
    os.utime(src, ns=(1, 1))  # a different mtime even on coarse clocks
    d = load_dataset("mnist", fake_mnist_dir, download=False)
    assert int(d.train_y[0]) == int(labels[0])
    assert len(list((fake_mnist_dir / "cache").glob("mnist-*.pt"))) == 2


def test_a_corrupt_cache_is_reported_and_rebuilt(fake_mnist_dir):
    load_dataset("mnist", fake_mnist_dir, download=False)
    (path,) = (fake_mnist_dir / "cache").glob("mnist-*.pt")
    path.write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        d = load_dataset("mnist", fake_mnist_dir, download=False)
    assert d.train_size == 96
    torch.load(path, weights_only=True)  # rewritten, readable again


def test_an_unwritable_cache_folder_is_reported(fake_mnist_dir):
    (fake_mnist_dir / "cache").write_text("a file where the cache folder should be")
    with pytest.warns(RuntimeWarning, match="could not write the dataset cache"):
        d = load_dataset("mnist", fake_mnist_dir, download=False)
    assert d.train_size == 96


def test_cifar_decode_cache(fake_cifar_dir):
    a = load_dataset("cifar10", fake_cifar_dir, normalize=False, download=False)
    b = load_dataset("cifar10", fake_cifar_dir, normalize=False, download=False)
    assert torch.equal(a.train_x, b.train_x) and len(list((fake_cifar_dir / "cache").glob("cifar10-*.pt"))) == 1
def test_scale_inputs_unit_keeps_pixels_and_standardize_centres_them():
    x = torch.rand(64, 3, 4, 4)
    unit = data_mod.scale_inputs(x.clone(), "cifar10", "unit")
    assert torch.equal(unit, x)
    std = data_mod.scale_inputs(x.clone(), "cifar10", "standardize")
    mean, sd = data_mod.NORMALIZATION["cifar10"]
    ref = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(sd).view(1, 3, 1, 1)  # naive reference
    torch.testing.assert_close(std, ref)
    with pytest.raises(ValueError, match="Invalid input scaling"):
        data_mod.scale_inputs(x, "cifar10", "raw")


@pytest.mark.skipif(not SYSTEM_FMNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")
@pytest.mark.parametrize("scaling", ["unit", "standardize"])
def test_input_scaling_on_the_training_data_path(scaling, tmp_path, monkeypatch):
    # What the training loop feeds the model: capture the tensors trainer.run loads for the config.
    import trainer
    from trainer import loop

    seen = {}

    def spy(*args, **kwargs):
        seen["data"] = d = load_dataset(*args, **kwargs)
        return d

    monkeypatch.setattr(loop, "load_dataset", spy)
    s = trainer.run({"dataset": "fashion-mnist", "model": "mlp", "optimizer": {"name": "sgd"},
                     "budget": {"backprops": 1}, "train_subset": 4096, "test_subset": 100, "device": "cpu",
                     "input_scaling": scaling}, data_dir=tmp_path)
    assert s["status"] == "completed", s["message"]
    x = seen["data"].train_x
    if scaling == "unit":
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert float(x.mean()) == pytest.approx(0.286, abs=0.02)  # un-centred, as the paper trains
    else:
        assert abs(float(x.mean())) < 0.03 and float(x.std()) == pytest.approx(1.0, abs=0.03)
        assert float(x.min()) < -0.5
