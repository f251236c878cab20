"""Datasets as in-memory tensors: local files first, Debian's system copies next, torchvision downloads last."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from trainer.registry import DATASETS, INPUT_SCALINGS

if TYPE_CHECKING:  # torch is imported lazily: the API process checks availability without loading it
    import torch

__all__ = ["TensorData", "DatasetUnavailable", "load_dataset", "dataset_available", "find_dataset",
           "read_idx", "decoded_arrays", "DEFAULT_DATA_DIR", "cache_path", "SYSTEM_LOCATIONS", "NORMALIZATION", "CACHE_SUBDIR", "scale_inputs"]

# The dataset folder when none is configured (TRUSTLAB_DATA_DIR, the CLI's --data-dir): ./data, relative to the
# working directory; tools that run from elsewhere use it under the repository root.
DEFAULT_DATA_DIR = "data"
CACHE_SUBDIR = "cache"  # decoded-tensor cache: <data_dir>/cache/<dataset>-<key>.pt
_CACHE_FORMAT = 1  # bump when the cached layout changes; old files are then simply not found
_CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y")

# Views of the registry's entries (trainer.registry.DATASETS), kept for callers that read them by name.
SYSTEM_LOCATIONS: dict[str, tuple[str, ...]] = {n: d.system_locations for n, d in DATASETS.items()}
NORMALIZATION = {n: d.normalization for n, d in DATASETS.items()}
_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def scale_inputs(x: "torch.Tensor", dataset: str, scaling: str) -> "torch.Tensor":
    """Apply RunConfig.input_scaling (``trainer.registry.INPUT_SCALINGS``) in place to decoded pixels in [0, 1].

    ``unit`` keeps them as they are (the paper divides by 255 and nothing more); ``standardize`` subtracts the
    dataset's per-channel mean and divides by its std (``NORMALIZATION``). ``x`` is N×C×H×W float.
    """
    import torch

    if scaling == "unit":
        return x
    if scaling == "standardize":
        mean, std = DATASETS[dataset].normalization
        m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return x.sub_(m).div_(s)
    raise ValueError(f"Invalid input scaling {scaling!r}; choose one of {sorted(INPUT_SCALINGS)}")


class DatasetUnavailable(RuntimeError):
    """A dataset is neither on disk nor downloadable; the message says where we looked and what to do.

    ``public_message`` says the same without any server path (for API clients): the dataset, the
    setting that points at the data and how to get it.
    """

    def __init__(self, message: str, public_message: str | None = None) -> None:
        super().__init__(message)
        self.public_message = public_message or message


@dataclass
class TensorData:
    """Train and test splits as tensors on one device. Images are float32 N×C×H×W."""

    name: str
    train_x: "torch.Tensor"
    train_y: "torch.Tensor"
    test_x: "torch.Tensor"
    test_y: "torch.Tensor"
    source: str

    @property
    def train_size(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def test_size(self) -> int:
        return int(self.test_x.shape[0])


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped), as used by (Fashion-)MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def _idx_files(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, stem in _IDX_FILES.items():
        for cand in (folder / stem, folder / f"{stem}.gz"):
            if cand.is_file():
                found[key] = cand
                break
        else:
            return None
    return found


def _cifar_files(folder: Path) -> dict[str, Path] | None:
    names = _CIFAR_TRAIN + ("test_batch",)
    if all((folder / n).is_file() for n in names):
        return {n: folder / n for n in names}
    return None


def _candidates(name: str, data_dir: Path) -> list[Path]:
    info = DATASETS[name]
    return [data_dir / sub for sub in info.local_dirs] + [Path(p) for p in info.system_locations]


def find_dataset(name: str, data_dir: str | os.PathLike[str]) -> tuple[Path | None, list[Path]]:
    """The folder holding ``name``'s files (or None) and every folder looked in."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    looked = _candidates(name, Path(data_dir))
    check = _FORMATS[DATASETS[name].file_format][0]
    for folder in looked:
        if check(folder) is not None:
            return folder, looked
    return None, looked


def dataset_available(name: str, data_dir: str | os.PathLike[str]) -> bool:
    """Whether ``name`` is on this machine already (no download)."""
    return find_dataset(name, data_dir)[0] is not None


def _download(name: str, data_dir: Path) -> None:
    """Fetch ``name`` into ``data_dir`` with torchvision's downloader (needs network access)."""
    import torchvision

    cls = getattr(torchvision.datasets, DATASETS[name].torchvision_class)
    data_dir.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        cls(root=str(data_dir), train=train, download=True)


def _read_cifar(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    files = _cifar_files(folder)
    if files is None:
        raise DatasetUnavailable(f"CIFAR batches vanished from {folder}")

    def load(n: str) -> tuple[np.ndarray, np.ndarray]:
        with open(files[n], "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return x, np.asarray(d[b"labels"], dtype=np.int64)

    parts = [load(n) for n in _CIFAR_TRAIN]
    tx, ty = load("test_batch")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), tx, ty


def _read_idx_set(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    files = _idx_files(folder)
    if files is None:
        raise DatasetUnavailable(f"idx files vanished from {folder}")
    arr = {k: read_idx(p) for k, p in files.items()}
    return (arr["train_x"][:, None], arr["train_y"].astype(np.int64), arr["test_x"][:, None],
            arr["test_y"].astype(np.int64))


# DatasetInfo.file_format -> (files of a folder or None, decode a folder into (train_x, train_y, test_x, test_y)).
_FORMATS: dict[str, tuple[Callable[[Path], dict[str, Path] | None],
                          Callable[[Path], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]] = {
    "idx": (_idx_files, _read_idx_set),
    "cifar-pickle": (_cifar_files, _read_cifar),
}


def _read_arrays(name: str, folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return _FORMATS[DATASETS[name].file_format][1](folder)


def _source_files(name: str, folder: Path) -> list[Path]:
    files = _FORMATS[DATASETS[name].file_format][0](folder)
    if files is None:
        raise DatasetUnavailable(f"dataset {name!r}: files vanished from {folder}")
    return [files[k] for k in sorted(files)]


def cache_path(name: str, folder: Path, cache_dir: Path) -> Path:
    """Where ``name``'s decoded tensors from ``folder`` are cached: keyed by a hash of the source files' paths,
    sizes and modification times (a changed or replaced file is a new dataset version)."""
    stat = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in _source_files(name, folder)]
    key = hashlib.sha256(json.dumps([_CACHE_FORMAT, name, stat]).encode()).hexdigest()[:20]
    return cache_dir / f"{name}-{key}.pt"


def decoded_arrays(name: str, folder: Path, cache_dir: Path | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x uint8 N×C×H×W, train_y int64, test_x, test_y), decoded once per dataset version.

    The first call decodes the source files (gunzip, unpickle) and saves the tensors with ``torch.save`` to
    :func:`cache_path` (written to a temporary file, then renamed: concurrent workers never read half a file);
    later calls read it back with ``torch.load(weights_only=True, mmap=True)``. No normalisation here: the
    cache holds the raw pixels. An unreadable cache file is reported (warning) and rebuilt; a cache folder
    that cannot be written is reported and the decoded arrays are used without caching.
    """
    import torch

    if cache_dir is None:
        return _read_arrays(name, folder)
    path = cache_path(name, folder, cache_dir)
    if path.is_file():
        try:
            saved = torch.load(path, weights_only=True, mmap=True, map_location="cpu")
            arrays = tuple(saved[k].numpy() for k in _CACHE_KEYS)
            if arrays[0].dtype != np.uint8 or arrays[0].ndim != 4 or len(arrays[0]) != len(arrays[1]):
                raise ValueError(f"unexpected layout {arrays[0].dtype} {arrays[0].shape}")
            return arrays
        except Exception as exc:  # noqa: BLE001 - any unreadable cache is rebuilt from the sources, said aloud
            warnings.warn(f"dataset cache {path} unreadable ({type(exc).__name__}: {exc}); decoding {name} again",
                          RuntimeWarning, stacklevel=2)
    arrays = _read_arrays(name, folder)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        torch.save({k: torch.from_numpy(np.require(a, requirements=["C", "W"])) for k, a in zip(_CACHE_KEYS, arrays)}, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp.exists():
            tmp.unlink()
        warnings.warn(f"could not write the dataset cache {path} ({exc}); {name} is decoded at every start",
                      RuntimeWarning, stacklevel=2)
    return arrays


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str],
    *,
    device: "torch.device | str" = "cpu",
    normalize: bool = True,
    train_subset: int | None = None,
    test_subset: int | None = None,
    download: bool = True,
    cache: bool = True,
) -> TensorData:
    """Load ``name`` into tensors on ``device``.

    Looks in ``data_dir`` (our layout and torchvision's), then in system locations (Debian's
    ``dataset-fashion-mnist`` installs /usr/share/datasets/fashion-mnist/), then, if ``download``, lets
    torchvision download into ``data_dir``.

    Args:
        normalize: input scaling (:func:`scale_inputs`): True = "standardize" per channel, False = "unit"
            (pixels in [0, 1], the paper's choice and what autoencoders need).
        train_subset / test_subset: keep only the first N samples.
        cache: decode once per dataset version into ``<data_dir>/cache/`` (see :func:`decoded_arrays`).

    Raises:
        DatasetUnavailable: naming the dataset, every place looked and how to get it.
    """
    data_dir = Path(data_dir)
    folder, looked = find_dataset(name, data_dir)
    download_error = None
    if folder is None and download:
        try:
            _download(name, data_dir)
        except Exception as exc:  # noqa: BLE001 - any failure means "not downloadable"; reported below
            download_error = f"{type(exc).__name__}: {exc}"
        folder, looked = find_dataset(name, data_dir)
    if folder is None:
        info = DATASETS[name]
        where = ", ".join(str(p) for p in looked)
        dl = (f"; download failed ({download_error})" if download_error else
              "; download disabled" if not download else "")
        raise DatasetUnavailable(
            f"dataset {name!r} not found. Looked in: {where}{dl}. To get it: {info.how_to_get}.",
            f"dataset {name!r} is not on the server{'; download failed' if download_error else ''}. "
            f"The server's administrator can put it in the data folder (setting TRUSTLAB_DATA_DIR; CLI --data-dir) "
            f"or allow a download; to get it: {info.how_to_get}.")
    import torch

    train_x, train_y, test_x, test_y = decoded_arrays(name, folder, data_dir / CACHE_SUBDIR if cache else None)
    if train_subset is not None:
        train_x, train_y = train_x[:train_subset], train_y[:train_subset]
    if test_subset is not None:
        test_x, test_y = test_x[:test_subset], test_y[:test_subset]

    def prep(x: np.ndarray) -> "torch.Tensor":
        t = torch.from_numpy(np.array(x, copy=True)).to(device=device, dtype=torch.float32).div_(255.0)
        return scale_inputs(t, name, "standardize" if normalize else "unit")

    return TensorData(
        name=name,
        train_x=prep(train_x),
        train_y=torch.from_numpy(train_y).to(device),
        test_x=prep(test_x),
        test_y=torch.from_numpy(test_y).to(device),
        source=str(folder),
    )
