"""Common ground-truth dataset object, errors and the on-disk cache.

All three datasets of the paper (Sec. 4: dSprites, 3D faces, cars3d) are full
factorial grids stored in C order: image ``i`` has the factor classes
``np.unravel_index(i, factor_sizes)``.  This module holds what they share.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

CACHE_ENV = "ISA_VAE_CACHE"
CACHE_FORMAT = 1  # bump to invalidate every cache entry written by older code


# --------------------------------------------------------------------------- errors
class DatasetError(Exception):
    """Base class of every dataset problem; carries the file and what is wrong."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DatasetFileNotFoundError(DatasetError, FileNotFoundError):
    """The dataset file (or folder) does not exist."""


class DatasetFormatError(DatasetError, ValueError):
    """The file exists but is truncated, corrupt, or has wrong keys/shapes/dtypes."""


class ImageRangeError(ValueError):
    """Images that do not lie in [0, 1] once divided by their ``max_value``: the Bernoulli decoder (App. A.4)
    models pixel values in [0, 1], so e.g. float images of 0..255 would train to nonsense. Raised by a
    dataset made of float images and by the trainer (:func:`isa_lib.train.checked_max_value`)."""


def check_float_images(images: torch.Tensor, max_value: float, name: str = "images") -> None:
    """Float images: finite and in [0, ``max_value``], else an :class:`ImageRangeError` naming the range found.
    Integer images are left alone here (the built-in sets are uint8 with their own ``max_value``)."""
    if not images.is_floating_point() or images.numel() == 0:
        return
    if not bool(torch.isfinite(images).all()):
        raise ImageRangeError(f"{name}: float images ({images.dtype}) contain NaN or infinite values; pixel "
                              f"values must lie in [0, 1] (App. A.4's Bernoulli decoder)")
    lo, hi = (float(v) for v in torch.aminmax(images))
    if lo < 0 or hi > max_value:
        raise ImageRangeError(f"{name}: float images ({images.dtype}) hold values in [{lo:g}, {hi:g}], but divided "
                              f"by max_value = {max_value:g} they must lie in [0, 1] (App. A.4's Bernoulli "
                              f"decoder): scale them to [0, 1], or give the max_value that maps to 1")


# --------------------------------------------------------------------------- cache
def cache_dir(override=None) -> Path:
    """Cache folder: ``override``, else $ISA_VAE_CACHE, else ~/.cache/isa-vae."""
    if override is not None:
        return Path(override)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "isa-vae"


def file_hash(path, chunk: int = 1 << 24) -> str:
    """sha256 of a file, read in chunks so memory stays bounded (~1 GB/s)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cache_paths(key: str, root=None) -> tuple[Path, Path]:
    """(data .npy, sidecar .json) paths of a cache entry."""
    d = cache_dir(root)
    return d / f"{key}.npy", d / f"{key}.json"


# files already hashed by this process: (path, size, mtime_ns, hash) -> True
_VERIFIED: set = set()


def cache_is_valid(key: str, root=None, verify: bool = True) -> bool:
    """True when the entry exists, matches its recorded size and (if verify) hash.

    A full hash costs ~3 s for the 3 GB dSprites file, so each file is hashed
    at most once per process (unless it changes on disk).
    """
    data, side = cache_paths(key, root)
    if not (data.is_file() and side.is_file()):
        return False
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError):
        return False
    st = data.stat()
    if meta.get("format") != CACHE_FORMAT or meta.get("size") != st.st_size:
        return False
    if not verify:
        return True
    stamp = (str(data), st.st_size, st.st_mtime_ns, meta.get("hash"))
    if stamp in _VERIFIED:
        return True
    ok = meta.get("hash") == file_hash(data)
    if ok:
        _VERIFIED.add(stamp)
    return ok


def build_cached_array(key: str, shape, dtype, fill: Callable[[np.ndarray], None],
                       root=None, verify: bool = True, extra: dict | None = None) -> np.ndarray:
    """Return a read-only memory map of a cached array, building it first if needed.

    ``fill(out)`` writes the content into a writable memory map of a temporary
    file; only a complete file is renamed into place (os.replace is atomic),
    and its hash is recorded beside it, so an interrupted or corrupted build is
    detected on the next call and rebuilt, never half-used.
    """
    data, side = cache_paths(key, root)
    if not cache_is_valid(key, root, verify):
        data.parent.mkdir(parents=True, exist_ok=True)
        side.unlink(missing_ok=True)  # the sidecar is the commit mark: remove it first
        tmp = data.with_name(f"{data.name}.tmp-{os.getpid()}")
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
            fill(out)
            out.flush()
            del out
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            digest = file_hash(tmp)
            os.replace(tmp, data)
        finally:
            if tmp.exists():
                tmp.unlink()
        meta = {"format": CACHE_FORMAT, "size": data.stat().st_size, "hash": digest,
                "shape": list(shape), "dtype": np.dtype(dtype).str, **(extra or {})}
        _atomic_write_text(side, json.dumps(meta, indent=1))
    # copy-on-write: a writable view for torch.from_numpy that never touches the file
    return np.load(data, mmap_mode="c")


# --------------------------------------------------------------------------- dataset
class GroundTruthDataset:
    """Images with a full factorial grid of ground-truth factors (C order).

    Attributes
    ----------
    name : str
    images : torch.Tensor, uint8, shape (N, C, H, W); memory-mapped from the cache.
    factor_names : tuple of str
    factor_sizes : tuple of int
    factor_values : list of 1-D float arrays, the value of each class of each factor
    max_value : float, the uint8 value that maps to 1.0 (1 for binary dSprites, 255 else)
    """

    def __init__(self, name: str, images, factor_names: Sequence[str],
                 factor_sizes: Sequence[int], factor_values: Sequence, max_value: float,
                 source: str = "builtin"):
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        self.name = name
        self.images = images
        self.factor_names = tuple(factor_names)
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.factor_values = [np.asarray(v, dtype=np.float64) for v in factor_values]
        self.max_value = float(max_value)
        self.source = source
        n = int(np.prod(self.factor_sizes))
        if images.shape[0] != n:
            raise ValueError(f"{name}: {images.shape[0]} images for a grid of {n}")
        if [len(v) for v in self.factor_values] != list(self.factor_sizes):
            raise ValueError(f"{name}: factor_values do not match factor_sizes")
        check_float_images(images, self.max_value, name)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        grid = ", ".join(f"{a}={b}" for a, b in zip(self.factor_names, self.factor_sizes))
        return f"GroundTruthDataset({self.name!r}, n={len(self)}, {grid}, source={self.source})"

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def factor_classes(self) -> np.ndarray:
        """(N, K) int64 class of every factor of every image (C order)."""
        return self.index_to_classes(np.arange(len(self)))

    def factor_index(self, factor) -> int:
        """Position of a factor given by name or position."""
        return self.factor_names.index(factor) if isinstance(factor, str) else int(factor)

    def index_to_classes(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        return np.stack(np.unravel_index(idx, self.factor_sizes), axis=-1).astype(np.int64)

    def classes_to_index(self, classes) -> np.ndarray:
        c = np.asarray(classes, dtype=np.int64)
        return np.ravel_multi_index(tuple(np.moveaxis(c, -1, 0)), self.factor_sizes).astype(np.int64)

    def classes_to_values(self, classes) -> np.ndarray:
        c = np.asarray(classes, dtype=np.int64)
        return np.stack([self.factor_values[k][c[..., k]] for k in range(self.num_factors)], -1)

    def fixed_factor_indices(self, factor, value: int) -> np.ndarray:
        """Sorted indices of all images whose ``factor`` has class ``value``.

        Used by the MIG estimator (Chen et al. 2018, cited in Sec. 4) to
        condition on one ground-truth factor.
        """
        k = self.factor_index(factor)
        if not 0 <= value < self.factor_sizes[k]:
            raise IndexError(f"class {value} outside 0..{self.factor_sizes[k] - 1}")
        grids = [np.arange(s) for s in self.factor_sizes]
        grids[k] = np.array([value])
        mesh = np.meshgrid(*grids, indexing="ij")
        return np.sort(np.ravel_multi_index(tuple(m.ravel() for m in mesh), self.factor_sizes))

    def sample_classes(self, n: int, seed=0) -> np.ndarray:
        """n rows of factor classes drawn uniformly (explicit seed)."""
        rng = np.random.default_rng(seed)
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], -1)

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(self.max_value)

    def float_images(self, indices, device=None) -> torch.Tensor:
        """Images at ``indices`` as float32 in [0, 1], shape (n, C, H, W)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        x = self.images[idx]
        if device is not None:
            x = x.to(device, non_blocking=True)
        return self.to_float(x)

    def __getitem__(self, i):
        return self.float_images([i])[0]

    def batches(self, batch_size: int, seed=0, device=None) -> "RandomBatchSampler":
        return RandomBatchSampler(self, batch_size, seed=seed, device=device)


class RandomBatchSampler:
    """Random mini-batches of float images, with the uint8 set kept on the GPU.

    When a CUDA device is used the whole uint8 tensor is copied there once
    (dSprites is 3 GB, faces 0.5 GB, cars 0.2 GB), so a batch costs one gather
    and one conversion instead of a host-to-device copy.
    """

    def __init__(self, dataset: GroundTruthDataset, batch_size: int, seed=0, device=None):
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.images = dataset.images.to(self.device) if self.device.type != "cpu" else dataset.images
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))

    def sample(self):
        """One batch drawn with replacement: (float images, int64 indices)."""
        idx = torch.randint(len(self.dataset), (self.batch_size,), generator=self.generator)
        return self._gather(idx), idx

    def __iter__(self):
        """One epoch: a seeded permutation cut into full batches (last one dropped)."""
        perm = torch.randperm(len(self.dataset), generator=self.generator)
        for s in range(0, len(perm) - self.batch_size + 1, self.batch_size):
            idx = perm[s:s + self.batch_size]
            yield self._gather(idx), idx

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.images[idx.to(self.images.device)]
        return self.dataset.to_float(x.to(self.device))


def subgrid_classes(full_sizes: Sequence[int], names: Sequence[str], subgrid) -> list[np.ndarray]:
    """Per-factor arrays of full-grid classes kept by ``subgrid`` (name -> classes)."""
    subgrid = dict(subgrid or {})
    unknown = set(subgrid) - set(names)
    if unknown:
        raise KeyError(f"unknown factors {sorted(unknown)}; known: {list(names)}")
    keep = []
    for name, size in zip(names, full_sizes):
        c = np.asarray(subgrid.get(name, np.arange(size)), dtype=np.int64).ravel()
        if c.size == 0 or c.min() < 0 or c.max() >= size:
            raise IndexError(f"factor {name}: classes must lie in 0..{size - 1}")
        keep.append(c)
    return keep


def grid_rows(keep: Sequence[np.ndarray]) -> np.ndarray:
    """All combinations of the kept classes, C order, shape (prod, K)."""
    mesh = np.meshgrid(*keep, indexing="ij")
    return np.stack([m.ravel() for m in mesh], -1).astype(np.int64)


def subgrid_key(keep: Sequence[np.ndarray], full_sizes: Sequence[int]) -> str:
    """Short stable tag for a subgrid, '' for the full grid."""
    if all(len(k) == s and np.array_equal(k, np.arange(s)) for k, s in zip(keep, full_sizes)):
        return ""
    h = hashlib.blake2b(digest_size=6)
    for k in keep:
        h.update(np.asarray(k, np.int64).tobytes() + b"|")
    return "-sub" + h.hexdigest()
