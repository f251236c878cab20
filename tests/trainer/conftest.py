"""Shared fixtures: generated datasets in torchvision's on-disk formats (tests never download)."""
import gzip
import pickle
import struct

import numpy as np
import pytest


def write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(header + array.tobytes())


def fake_images(n, shape, seed):
    """Images from torchvision's FakeData generator, as uint8 arrays, with labels."""
    import torchvision

    ds = torchvision.datasets.FakeData(size=n, image_size=shape, num_classes=10, random_offset=seed)
    xs, ys = [], []
    for img, label in ds:
        xs.append(np.asarray(img, dtype=np.uint8))
        ys.append(int(label))
    return np.stack(xs), np.asarray(ys)


@pytest.fixture
def fake_mnist_dir(tmp_path):
    """A data directory with generated MNIST in torchvision's raw layout (uncompressed idx)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    tx, ty = fake_images(96, (1, 28, 28), 0)
    vx, vy = fake_images(32, (1, 28, 28), 1000)
    write_idx(raw / "train-images-idx3-ubyte", tx.reshape(-1, 28, 28))
    write_idx(raw / "train-labels-idx1-ubyte", ty)
    write_idx(raw / "t10k-images-idx3-ubyte", vx.reshape(-1, 28, 28))
    write_idx(raw / "t10k-labels-idx1-ubyte", vy)
    return tmp_path


def write_fake_cifar(folder, per_batch=20, test=20):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x, y = fake_images(per_batch if name != "test_batch" else test, (3, 32, 32), 100 * i)
        # FakeData yields HWC images; CIFAR stores rows of 3072 bytes in CHW order.
        chw = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": chw, b"labels": list(map(int, y))}, fh)


@pytest.fixture
def fake_cifar_dir(tmp_path):
    write_fake_cifar(tmp_path / "cifar-10-batches-py")
    return tmp_path
