"""dSprites (Matthey et al. 2017; paper ref. [35], Sec. 4): generator and file loader.

Published specification, reproduced exactly: factors color (1), shape (3:
square, ellipse, heart), scale (6 values linspace(0.5, 1, 6)), orientation (40
values linspace(0, 2*pi, 40), both ends included so classes 0 and 39 give the
same image), posX and posY (32 values linspace(0, 1, 32) each), 64 x 64 binary
images stored in C order over that grid: 737,280 images.  Shape values are
1, 2, 3 and color is 1, as in the original ``latents_values``.

Sprite size and position range (estimates, no original pixels were available):
* the original README says the latent steps were chosen "to have the smallest
  step changes while ensuring that all pixel outputs were different", so 32
  positions must travel at least 31 pixels; our centres travel 45 px
  (64 * 0.7, from pixel ~10 to ~54), a 1.45 px step, and no sprite is clipped;
* in the published sample images the largest sprites are roughly a fifth of
  the frame; we use a 13 px square, a 16 x 8 px ellipse and a 14 px wide heart
  at scale 1 (half of that at scale 0.5).
Sprites are rasterised once per (shape, scale, orientation) with 8 x 8
supersampling on a grid symmetric about the sprite centre (so rotations by
pi/2 and mirror images are exact), then placed at whole-pixel centres.  Image
axes: posX moves right (columns), posY moves down (rows), orientation turns
counter-clockwise as displayed.

Areas grow like scale^2 (generator version 2).  The square's side is a whole
number of pixels, round(14 * scale) = 7, 8, 10, 11, 13, 14 px, centred on a
pixel centre when odd, so at orientation 0 it is a filled axis-aligned square
(areas 49 ... 196, ratio 4); every sprite is binarised at the coverage level
that keeps its pixel count closest to its exact area.  Version 1 (4 x 4
supersampling, a fixed 50 % threshold, a 13 px square) clipped the square's
corners at some scales (areas 36, 64, 96, 100, 144, 192: a ratio of 5.3); it is
kept, as ``version=1``, so that studies made with it can be reproduced.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ._base import (DatasetFileNotFoundError, DatasetFormatError, GroundTruthDataset,
                    build_cached_array, file_hash, grid_rows, subgrid_classes, subgrid_key)

NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
SIZES = (1, 3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")
FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
VERSION = 2  # of the generator; part of the cache key (1: the corner-clipping rasteriser, kept)
VERSIONS = (1, 2)

IMG = 64
CANVAS = 32        # sprite canvas; even, so the sprite centre sits on a pixel corner
SUPERSAMPLE = 8
POS_LO, POS_SPAN = 0.15, 0.70   # centre = IMG * (POS_LO + POS_SPAN * pos)
SQUARE_SIDE = 14                # px at scale 1; whole pixels at every scale (version 2)
SQUARE_HALF_V1 = 6.5            # px at scale 1 (version 1)
ELLIPSE_AXES = (8.0, 4.0)       # semi-axes, px at scale 1
HEART_HALF_WIDTH = 7.0          # px at scale 1


def factor_values() -> list[np.ndarray]:
    """The published grid of values, one array per factor."""
    return [np.array([1.0]), np.array([1.0, 2.0, 3.0]), np.linspace(0.5, 1, 6),
            np.linspace(0, 2 * np.pi, 40), np.linspace(0, 1, 32), np.linspace(0, 1, 32)]


# ---------------------------------------------------------------- shape geometry
def _heart_inside(x, y):
    """Classic implicit heart (x^2 + y^2 - 1)^3 <= x^2 y^3, y up; mirror-symmetric in x."""
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0


def _heart_frame():
    """(x half-width, y of the centroid) of the unit heart, found numerically once."""
    t = np.linspace(-1.6, 1.6, 1601)
    x, y = np.meshgrid(t, t)
    m = _heart_inside(x, y)
    return np.abs(x[m]).max(), y[m].mean()


_HEART_HALF_X, _HEART_CY = _heart_frame()


def square_side(scale: float) -> int:
    """The square's side in whole pixels (version 2): round(14 * scale), 7 ... 14 px over the six scales."""
    return int(np.floor(SQUARE_SIDE * scale + 0.5))


def _inside(shape: int, x, y, scale: float, version: int = VERSION):
    """Membership of sprite-frame points (px, y up) for shape 1/2/3 at ``scale``."""
    if shape == 1:
        h = SQUARE_HALF_V1 * scale if version == 1 else square_side(scale) / 2
        return np.maximum(np.abs(x), np.abs(y)) <= h
    if shape == 2:
        a, b = ELLIPSE_AXES[0] * scale, ELLIPSE_AXES[1] * scale
        return (x / a) ** 2 + (y / b) ** 2 <= 1
    if shape == 3:
        k = _HEART_HALF_X / (HEART_HALF_WIDTH * scale)   # px -> unit heart
        # rotate about the centroid, so the centre of mass follows posX/posY only
        return _heart_inside(x * k, y * k + _HEART_CY)
    raise ValueError(f"shape must be 1, 2 or 3, got {shape}")


def _sample_grid(supersample: int):
    """Supersample coordinates relative to the canvas centre, symmetric under negation."""
    sub = (np.arange(supersample) + 0.5) / supersample
    return (np.arange(CANVAS)[:, None] - CANVAS / 2 + sub[None, :]).ravel()


def _area_threshold(cover: np.ndarray) -> np.ndarray:
    """Binarise a coverage map at the coverage level whose pixel count is closest to the exact area (the sum
    of coverage), ties to the higher level. Pixels of equal coverage are kept or dropped together, so the
    symmetries of the sprite survive."""
    levels = np.unique(cover[cover > 0])[::-1]                 # candidate thresholds, high to low
    counts = np.array([(cover >= t).sum() for t in levels])
    best = levels[int(np.argmin(np.abs(counts - cover.sum())))]
    return (cover >= best).astype(np.uint8)


def render_sprite(shape: int, scale: float, orientation: float, version: int = VERSION) -> np.ndarray:
    """Binary CANVAS x CANVAS sprite centred on the canvas centre (a pixel corner), or on the pixel centre
    down-right of it for a square of odd side (version 2), so that its edges lie on pixel boundaries."""
    if version not in VERSIONS:
        raise ValueError(f"unknown dSprites generator version {version!r}; known: {VERSIONS}")
    ss = 4 if version == 1 else SUPERSAMPLE
    grid = _sample_grid(ss)
    off = 0.5 if version == 2 and int(shape) == 1 and square_side(scale) % 2 else 0.0
    c = np.round(np.cos(orientation), 12)   # rounding makes 0, pi/2, 2*pi exact
    s = np.round(np.sin(orientation), 12)
    col = grid[None, :] - off
    up = -(grid[:, None] - off)            # rows grow downwards, y grows upwards
    # inverse rotation takes image points back into the sprite frame
    x = c * col + s * up
    y = -s * col + c * up
    m = _inside(int(shape), x, y, float(scale), version)
    cover = m.reshape(CANVAS, ss, CANVAS, ss).mean(axis=(1, 3))
    if version == 1:
        return (cover >= 0.5).astype(np.uint8)
    return _area_threshold(cover)


def position_to_pixel(pos) -> np.ndarray:
    """Whole-pixel sprite centre (pixel-corner index) for positions in [0, 1]."""
    return np.rint(IMG * (POS_LO + POS_SPAN * np.asarray(pos, dtype=np.float64))).astype(np.int64)


def _paste(sprites: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Place (n, CANVAS, CANVAS) sprites with centres (cx, cy) into 64 x 64 images."""
    n = len(sprites)
    r = np.arange(IMG)
    rows = r[None, :] - cy[:, None] + CANVAS // 2          # (n, 64) canvas row
    cols = r[None, :] - cx[:, None] + CANVAS // 2
    vr = (rows >= 0) & (rows < CANVAS)
    vc = (cols >= 0) & (cols < CANVAS)
    out = sprites[np.arange(n)[:, None, None], rows.clip(0, CANVAS - 1)[:, :, None],
                  cols.clip(0, CANVAS - 1)[:, None, :]]
    return out * (vr[:, :, None] & vc[:, None, :])


def render_values(values, version: int = VERSION) -> np.ndarray:
    """Images (n, 64, 64) uint8 in {0, 1} for rows of factor *values* (any reals).

    Columns follow NAMES; shape is 1/2/3 as in the original file.
    """
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    out = np.empty((len(v), IMG, IMG), np.uint8)
    keys = {}
    for i, row in enumerate(v):
        keys.setdefault((int(round(row[1])), row[2], row[3]), []).append(i)
    cx, cy = position_to_pixel(v[:, 4]), position_to_pixel(v[:, 5])
    for (shape, scale, orient), rows in keys.items():
        rows = np.asarray(rows)
        sprite = render_sprite(shape, scale, orient, version)
        out[rows] = _paste(np.broadcast_to(sprite, (len(rows), CANVAS, CANVAS)), cx[rows], cy[rows])
    return out


def render(classes, version: int = VERSION) -> np.ndarray:
    """Images (n, 64, 64) uint8 for rows of factor *classes* on the published grid."""
    c = np.atleast_2d(np.asarray(classes, dtype=np.int64))
    fv = factor_values()
    return render_values(np.stack([fv[k][c[:, k]] for k in range(6)], -1), version)


def all_positions(sprite: np.ndarray) -> np.ndarray:
    """(32 posX, 32 posY, 64, 64) images of one sprite at every grid position.

    The translations are read as windows of one padded plane, so the cost of
    the full dataset is one 4 MB copy per (shape, scale, orientation).
    """
    plane = np.zeros((CANVAS + 2 * IMG, CANVAS + 2 * IMG), np.uint8)
    plane[IMG:IMG + CANVAS, IMG:IMG + CANVAS] = sprite
    windows = np.lib.stride_tricks.sliding_window_view(plane, (IMG, IMG))
    off = IMG + CANVAS // 2 - position_to_pixel(np.linspace(0, 1, 32))  # window start per centre
    # windows[row start, col start]: rows follow posY, columns follow posX
    return windows[np.ix_(off, off)].transpose(1, 0, 2, 3)


def _fill_full(out: np.ndarray, version: int = VERSION) -> None:
    """Write the full 737,280-image set into ``out`` (N, 1, 64, 64), C order."""
    fv = factor_values()
    grid = out.reshape(3, 6, 40, 32, 32, IMG, IMG)
    for sh in range(3):
        for sc in range(6):
            for o in range(40):
                grid[sh, sc, o] = all_positions(render_sprite(sh + 1, fv[2][sc], fv[3][o], version))


def _fill_rows(out: np.ndarray, rows: np.ndarray, chunk: int = 4096, version: int = VERSION) -> None:
    for s in range(0, len(rows), chunk):
        out[s:s + chunk, 0] = render(rows[s:s + chunk], version)


def build(subgrid=None, cache=None, verify=True, version: int = VERSION) -> GroundTruthDataset:
    """Built-in dSprites, cached on disk; ``subgrid`` (name -> classes) keeps a sub-grid; ``version`` picks
    the generator (module notes: 2, the default, keeps areas proportional to scale^2; 1 reproduces older
    studies)."""
    if version not in VERSIONS:
        raise ValueError(f"unknown dSprites generator version {version!r}; known: {VERSIONS}")
    keep = subgrid_classes(SIZES, NAMES, subgrid)
    tag = subgrid_key(keep, SIZES)
    sizes = [len(k) for k in keep]
    n = int(np.prod(sizes))
    if tag:
        fill = lambda out: _fill_rows(out, grid_rows(keep), version=version)  # noqa: E731
    else:
        fill = lambda out: _fill_full(out, version)  # noqa: E731
    arr = build_cached_array(f"dsprites-v{version}{tag}", (n, 1, IMG, IMG), np.uint8, fill,
                             root=cache, verify=verify, extra={"dataset": "dsprites"})
    fv = factor_values()
    return GroundTruthDataset("dsprites", arr, NAMES, sizes, [fv[k][c] for k, c in enumerate(keep)],
                              max_value=1, source=f"builtin-v{version}")


# ---------------------------------------------------------------- real file
def _metadata(names, sizes, values) -> dict:
    return {"date": "built by isa_lib", "description": "dSprites-format export of isa_lib data",
            "version": 1, "latents_names": tuple(names),
            "latents_possible_values": {n: np.asarray(v) for n, v in zip(names, values)},
            "latents_sizes": np.asarray(sizes, dtype=np.int64),
            "author": "isa_lib", "title": "dSprites dataset"}


class ObjectMemberError(DatasetFormatError):
    """A data member of a dSprites .npz holds Python objects (an object dtype: a pickle). Such a member is
    refused from its header; it is never unpickled, and no object array is built from the file."""


#: The members that carry data, and the dtype kinds each may have (numeric arrays only).
_DATA_MEMBERS = {"imgs": "u", "latents_values": "iuf", "latents_classes": "iu"}


def _member_headers(path) -> dict:
    """Shape and dtype of each data member, from its .npy header alone (nothing is loaded or unpickled).
    An object-typed member is an :class:`ObjectMemberError`; a header numpy cannot parse is a
    :class:`DatasetFormatError`."""
    out = {}
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        for key in _DATA_MEMBERS:
            member = f"{key}.npy" if f"{key}.npy" in names else key
            with zf.open(member) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise DatasetFormatError(path, f"member {member} is in .npy format {version}, "
                                                   f"not 1.0 or 2.0")
            if dtype.hasobject:
                raise ObjectMemberError(path, f"member {member} holds Python objects (dtype {dtype}): dSprites "
                                              f"data are numeric arrays, and an object member is a pickle, "
                                              f"which is never read")
            out[key] = (tuple(shape), dtype)
    return out


def read_npz(path, factor_sizes=SIZES) -> dict:
    """Read and validate a dSprites .npz; returns its arrays (``imgs``, ``latents_values``,
    ``latents_classes``), ``factor_values`` and ``factor_sizes``.

    Nothing in the file is unpickled: the three data members are read as plain numeric arrays
    (``allow_pickle=False``) after their headers are checked (an object-typed member is an
    :class:`ObjectMemberError`), and the factor sizes come from the specification (``factor_sizes``, the
    published grid by default; tests pass a small one), not from the file. The original's ``metadata``
    member, a pickled Python-2 dict, is never opened (``metadata`` in the result is None).
    Raises DatasetFileNotFoundError / DatasetFormatError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFileNotFoundError(path, f"dSprites file not found (expected {FILENAME})")
    sizes = tuple(int(s) for s in factor_sizes)
    n = int(np.prod(sizes))
    expected_shape = {"imgs": (n, IMG, IMG), "latents_values": (n, 6), "latents_classes": (n, 6)}
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            missing = set(_DATA_MEMBERS) - keys
            if missing:
                raise DatasetFormatError(path, f"missing keys {sorted(missing)}; found {sorted(keys)}")
            # Shapes and dtypes from the headers first: a crafted header cannot make us allocate or unpickle.
            for key, (shape, dtype) in _member_headers(path).items():
                if dtype.kind not in _DATA_MEMBERS[key] or (key == "imgs" and dtype != np.uint8):
                    what = "binary uint8" if key == "imgs" else "numeric"
                    raise DatasetFormatError(path, f"{key} must be {what}, got dtype {dtype}")
                if shape != expected_shape[key]:
                    raise DatasetFormatError(path, f"{key} has shape {shape}, expected {expected_shape[key]}")
            d = {k: z[k] for k in _DATA_MEMBERS}
    except DatasetFormatError:
        raise
    except Exception as e:  # zip and npy errors (and a pickle given as the file) all mean an unreadable file
        raise DatasetFormatError(path, f"cannot be read as a dSprites .npz ({type(e).__name__}: {e})") from e
    imgs, lv, lc = d["imgs"], d["latents_values"], d["latents_classes"]
    if imgs.size and imgs.max() > 1:
        raise DatasetFormatError(path, f"imgs must be binary uint8, got {imgs.dtype} max {imgs.max()}")
    expected = np.stack(np.unravel_index(np.arange(n), sizes), -1)
    if not np.array_equal(lc, expected):
        raise DatasetFormatError(path, "latents_classes are not the C-order grid of "
                                       f"factor sizes {sizes}")
    values = [np.unique(lv[:, k]) for k in range(6)]
    if [len(v) for v in values] != list(sizes):
        raise DatasetFormatError(path, "latents_values do not take one value per class")
    d["metadata"], d["factor_values"], d["factor_sizes"] = None, values, sizes
    return d


def load_npz(path, factor_sizes=SIZES, cache=None, verify=True) -> GroundTruthDataset:
    """dSprites from the original ``.npz`` (validated, then cached as a memory map)."""
    d = read_npz(path, factor_sizes)
    key = f"dsprites-file-{file_hash(path)}"

    def fill(out):
        out[:, 0] = d["imgs"]

    arr = build_cached_array(key, (len(d["imgs"]), 1, IMG, IMG), np.uint8, fill, root=cache,
                             verify=verify, extra={"dataset": "dsprites", "source": str(path)})
    return GroundTruthDataset("dsprites", arr, NAMES, d["factor_sizes"], d["factor_values"],
                              max_value=1, source=str(path))


def export_npz(dataset: GroundTruthDataset, path) -> Path:
    """Write ``dataset`` in the original dSprites .npz layout (readable by its tools)."""
    path = Path(path)
    if dataset.images.shape[1:] != (1, IMG, IMG):
        raise ValueError("dSprites export needs (N, 1, 64, 64) binary images")
    classes = dataset.factor_classes
    meta = _metadata(dataset.factor_names, dataset.factor_sizes, dataset.factor_values)
    np.savez_compressed(path, imgs=dataset.images[:, 0].numpy(),
                        latents_values=dataset.classes_to_values(classes),
                        latents_classes=classes.astype(np.int64),
                        metadata=np.array(meta, dtype=object))
    return path

