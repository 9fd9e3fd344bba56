"""cars3d (Reed et al. 2015; paper ref. [44], Sec. 4): procedural cars and file loader.

Factor grid as in the original: 183 car identities x 24 azimuths x 4
elevations, 64 x 64 RGB (17,568 images), stored in C order (identity,
azimuth, elevation).

Built-in version: each identity is a seeded random car assembled from convex
polyhedra (body with chamfered nose and tail, glass cabin, roof) and capped
cylinders (tyres, hubcaps), in five body styles (sedan, hatchback, SUV,
pickup, coupe) and random paint, ray cast with an orthographic camera and a
Lambertian light fixed to the car's world, on a white background like the
original renders.  Angles: azimuth covers the full turn in 15 degree steps
(24 values, as the original's "24 rotation angles"); elevation takes 0, 10,
20, 30 degrees, our choice of 4 views from the side to clearly above, since
the original's elevation values are not stated in its paper.

Real files: the original per-car MATLAB files (``car_XXX_mesh.mat``), each
holding ``im`` of shape 128 x 128 x 3 x 24 x 4 (uint8), halved to 64 x 64 by
2 x 2 box averaging.
"""
from __future__ import annotations

import colorsys
import hashlib
from pathlib import Path

import numpy as np
import torch

from . import _raycast as rc
from ._base import (DatasetFileNotFoundError, DatasetFormatError, GroundTruthDataset,
                    build_cached_array, grid_rows, subgrid_classes, subgrid_key)

NAMES = ("identity", "azimuth", "elevation")
SIZES = (183, 24, 4)
STYLES = ("sedan", "hatchback", "suv", "pickup", "coupe")
VERSION = 1
VIEW_CHUNK = 24    # views cast together (sorted by azimuth, so part windows stay tight)
IMG = 64
EXTENT = 2.55         # half-width of the view in car units (a car is 3.6-5 long)
CENTRE_Y = 0.8        # height of the view centre above the ground
LIGHT = np.array([0.35, 0.85, 0.4]) / np.linalg.norm([0.35, 0.85, 0.4])
TYRE, HUB, GLASS = (0.07, 0.07, 0.08), (0.62, 0.62, 0.65), (0.12, 0.16, 0.22)


def factor_values() -> list[np.ndarray]:
    """identity index, azimuth (rad, full turn), elevation (rad)."""
    return [np.arange(183, dtype=np.float64), np.linspace(0, 2 * np.pi, 24, endpoint=False),
            np.deg2rad([0.0, 10.0, 20.0, 30.0])]


def identity_params(seed: int = 0, n: int = 183) -> list[dict]:
    """Random car designs; identity k does not depend on which others are rendered."""
    rng = np.random.default_rng([seed, 3])
    cars = []
    for k in range(n):
        style = STYLES[k % len(STYLES)] if k < len(STYLES) else STYLES[rng.integers(len(STYLES))]
        hue = rng.uniform()
        sat = rng.choice([0.05, rng.uniform(0.5, 0.9)], p=[0.3, 0.7])
        val = rng.uniform(0.45, 1.0)
        cars.append(dict(
            style=style,
            length=rng.uniform(3.6, 4.8) + (0.2 if style in ("suv", "pickup") else 0.0),
            width=rng.uniform(1.65, 1.95),
            wheel=rng.uniform(0.3, 0.4) + (0.05 if style in ("suv", "pickup") else 0.0),
            body_top=rng.uniform(0.85, 1.0) + (0.2 if style == "suv" else 0.0)
            - (0.1 if style == "coupe" else 0.0),
            roof=rng.uniform(0.42, 0.6) - (0.1 if style == "coupe" else 0.0),
            cabin_len=rng.uniform(0.38, 0.5),
            cabin_pos=rng.uniform(-0.08, 0.02),
            slope=rng.uniform(0.3, 0.6),
            colour=colorsys.hsv_to_rgb(hue, sat, val),
        ))
    return cars


def _plane_line(p, q, outward):
    """Plane containing the car-frame xy line p->q (all z), facing ``outward``."""
    d = np.subtract(q, p)
    n = np.array([d[1], -d[0], 0.0])
    if np.dot(n[:2], outward) < 0:
        n = -n
    n /= np.linalg.norm(n)
    return n, float(n[:2] @ np.asarray(p))


def _slab_planes(x0, x1, y0, y1, z0, z1):
    normals = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
    return [np.array(n, float) for n in normals], [x1, -x0, y1, -y0, z1, -z0]


def car_primitives(p: dict) -> list:
    """(kind, args, colour, bounding box) of each part of one car; y up, x forward."""
    L, W, r = p["length"], p["width"], p["wheel"]
    y0, y1 = 0.45 * r, p["body_top"]
    y2 = y1 + p["roof"]
    n, h = _slab_planes(-L / 2, L / 2, y0, y1, -W / 2, W / 2)
    # chamfered nose and tail so the body is not a brick
    for sgn, cut in ((1, 0.35), (-1, 0.2)):
        m, off = _plane_line((sgn * L / 2, y1 - cut), (sgn * (L / 2 - 2 * cut), y1), (sgn, 1))
        n.append(m), h.append(off)
    body = ("poly", (np.stack(n), np.array(h)), p["colour"], _bound((-L / 2, y0, -W / 2), (L / 2, y1, W / 2)))

    cl = p["cabin_len"] * L
    style = p["style"]
    xc = p["cabin_pos"] * L + (0.12 * L if style == "pickup" else 0.0)
    xf, xr = xc + cl / 2, xc - cl / 2          # base of windshield / rear window
    if style in ("hatchback", "suv"):
        xr = -L / 2 + 0.15
    s = p["slope"]
    front_top, rear_top = xf - s * 1.6 * p["roof"] - 0.2, xr + (0.15 if style in ("hatchback", "suv") else s * p["roof"] + 0.1)
    if style == "coupe":
        rear_top = xr + 0.9 * p["roof"] + 0.2
    prims = [body]
    for grow, ylo, yhi, col in ((0.0, y1 - 0.05, y2, GLASS), (0.03, y2 - 0.05, y2 + 0.03, p["colour"])):
        n, h = [], []
        for a, b, out in (((xf, y1), (front_top, y2), (1, 1)), ((xr, y1), (rear_top, y2), (-1, 1))):
            m, off = _plane_line(a, b, out)
            n.append(m), h.append(off + grow)
        # gently sloping sides (tumblehome)
        for sz in (1, -1):
            m = np.array([0.0, 0.25, sz]) / np.hypot(0.25, 1)
            n.append(m), h.append(float(m @ [0, y1, sz * (W / 2 - 0.12)]) + grow)
        n += [np.array([0, 1.0, 0]), np.array([0, -1.0, 0])]
        h += [yhi, -ylo]
        lo = (min(xr, rear_top) - 0.1, ylo, -W / 2)
        hi = (max(xf, front_top) + 0.1, yhi, W / 2)
        prims.append(("poly", (np.stack(n), np.array(h)), col, _bound(lo, hi)))
    wx = L / 2 - 0.2 * L - 0.1
    for sx in (1, -1):
        for sz in (1, -1):
            zc = sz * (W / 2 - 0.1)
            for c, rad, hl, col in (((sx * wx, r, zc), r, 0.13, TYRE),
                                    ((sx * wx, r, zc + sz * 0.03), 0.55 * r, 0.12, HUB)):
                prims.append(("cyl", (c, rad, hl), col,
                              _bound(np.subtract(c, (rad, rad, hl)), np.add(c, (rad, rad, hl)))))
    return prims


def _bound(lo, hi):
    """Bounding box (lo, hi) corners."""
    return tuple(np.asarray(lo, float)), tuple(np.asarray(hi, float))


def render_views(p: dict, azimuth, elevation, supersample: int = 2) -> torch.Tensor:
    """uint8 images (V, 3, 64, 64) of one car design at the given angles (radians)."""
    res = IMG * supersample
    prims = car_primitives(p)
    views = rc.view_matrices(azimuth, elevation)
    basis = rc.camera_basis(res, EXTENT, views, offset=(0.0, CENTRE_Y, 0.0))
    t, nrm, which = rc.cast(basis, [(k, a, *b) for k, a, _, b in prims])
    col = torch.tensor([c for _, _, c, _ in prims], dtype=torch.float32)[which]
    light = torch.tensor(LIGHT, dtype=torch.float32)
    lam = (nrm @ light).clamp_min(0)
    facing = (-(nrm * basis[3][:, None, None, :]).sum(-1)).clamp_min(0)  # soft fill from the camera
    img = col * (0.25 + 0.55 * lam + 0.25 * facing)[..., None]
    img = torch.where(torch.isinf(t)[..., None], torch.ones_like(img), img)   # white background
    img = img.permute(0, 3, 1, 2)
    return rc.to_uint8(rc.downsample(img, supersample))


def render(classes, seed: int = 0, supersample: int = 2) -> np.ndarray:
    """Images (n, 3, 64, 64) uint8 for rows of (identity, azimuth, elevation) classes."""
    c = np.atleast_2d(np.asarray(classes, dtype=np.int64))
    fv = factor_values()
    cars = identity_params(seed)
    out = np.empty((len(c), 3, IMG, IMG), np.uint8)
    for ident in np.unique(c[:, 0]):
        rows = np.flatnonzero(c[:, 0] == ident)
        # views of one azimuth together: the screen windows of the parts stay tight
        rows = rows[np.argsort(c[rows, 1], kind="stable")]
        for s in range(0, len(rows), VIEW_CHUNK):
            r = rows[s:s + VIEW_CHUNK]
            out[r] = render_views(cars[ident], fv[1][c[r, 1]], fv[2][c[r, 2]], supersample).numpy()
    return out


def build(subgrid=None, seed: int = 0, cache=None, verify=True, supersample: int = 2) -> GroundTruthDataset:
    """Built-in cars3d (cached); ``subgrid`` (name -> classes) keeps a sub-grid."""
    keep = subgrid_classes(SIZES, NAMES, subgrid)
    rows = grid_rows(keep)
    sizes = [len(k) for k in keep]

    def fill(out):
        per = sizes[1] * sizes[2]   # rows are grouped by identity (C order)
        for s in range(0, len(rows), per):
            out[s:s + per] = render(rows[s:s + per], seed, supersample)

    key = f"cars3d-v{VERSION}-s{seed}-ss{supersample}{subgrid_key(keep, SIZES)}"
    arr = build_cached_array(key, (len(rows), 3, IMG, IMG), np.uint8, fill, root=cache,
                             verify=verify, extra={"dataset": "cars3d", "seed": seed})
    fv = factor_values()
    return GroundTruthDataset("cars3d", arr, NAMES, sizes, [fv[k][c] for k, c in enumerate(keep)],
                              max_value=255, source="builtin")


# ---------------------------------------------------------------- real files
def _mat_files(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetFileNotFoundError(folder, "cars3d folder of car_XXX_mesh.mat files not found")
    files = sorted(folder.glob("*.mat"))
    if not files:
        raise DatasetFileNotFoundError(folder, "no .mat files in the cars3d folder")
    return files


def read_mat(path, n_azimuth: int = 24, n_elevation: int = 4) -> np.ndarray:
    """One car's views as (azimuth, elevation, 3, 64, 64) uint8, validated."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DatasetFileNotFoundError(path, "cars3d .mat file not found")
    try:
        m = scipy.io.loadmat(path)
    except Exception as e:  # truncated or not a MATLAB file
        raise DatasetFormatError(path, f"cannot be read as a MATLAB file ({type(e).__name__}: {e})") from e
    if "im" not in m:
        keys = sorted(k for k in m if not k.startswith("__"))
        raise DatasetFormatError(path, f"missing key 'im'; found {keys}")
    im = m["im"]
    want = (128, 128, 3, n_azimuth, n_elevation)
    if im.shape != want:
        raise DatasetFormatError(path, f"'im' has shape {im.shape}, expected {want}")
    if im.dtype != np.uint8:
        raise DatasetFormatError(path, f"'im' has dtype {im.dtype}, expected uint8")
    # (H, W, C, az, el) -> (az, el, C, H, W), then 2 x 2 box average to 64 x 64
    x = torch.from_numpy(np.ascontiguousarray(im.transpose(3, 4, 2, 0, 1))).float()
    return rc.to_uint8(rc.downsample(x / 255, 2)).numpy()


def load_mat_folder(folder, factor_sizes=SIZES, cache=None, verify=True) -> GroundTruthDataset:
    """cars3d from the original per-car .mat files (sorted by name = identity)."""
    files = _mat_files(folder)
    sizes = tuple(int(s) for s in factor_sizes)
    if len(files) != sizes[0]:
        raise DatasetFormatError(folder, f"found {len(files)} .mat files, expected {sizes[0]}")
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}|".encode())
    per = sizes[1] * sizes[2]

    def fill(out):
        for i, f in enumerate(files):
            out[i * per:(i + 1) * per] = read_mat(f, sizes[1], sizes[2]).reshape(per, 3, IMG, IMG)

    # a bad file raises inside fill(); the temporary cache file is then removed
    arr = build_cached_array(f"cars3d-file-{h.hexdigest()[:20]}", (len(files) * per, 3, IMG, IMG),
                             np.uint8, fill, root=cache, verify=verify,
                             extra={"dataset": "cars3d", "source": str(folder)})
    values = [np.arange(sizes[0], dtype=np.float64),
              np.linspace(0, 2 * np.pi, sizes[1], endpoint=False),
              np.deg2rad(np.linspace(0, 30, sizes[2]))]
    return GroundTruthDataset("cars3d", arr, NAMES, sizes, values, max_value=255, source=str(folder))


def export_mat_folder(dataset: GroundTruthDataset, folder) -> Path:
    """Write ``dataset`` as one ``car_XXX_mesh.mat`` per identity, ``im`` 128 x 128 x 3 x az x el.

    Pixels are doubled (nearest neighbour), so the loader's 2 x 2 average
    gives the 64 x 64 images back exactly.
    """
    import scipy.io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_id, n_az, n_el = dataset.factor_sizes
    x = dataset.images.numpy().reshape(n_id, n_az, n_el, 3, IMG, IMG)
    for i in range(n_id):
        im = x[i].repeat(2, axis=-1).repeat(2, axis=-2).transpose(3, 4, 2, 0, 1)
        scipy.io.savemat(folder / f"car_{i + 1:03d}_mesh.mat", {"im": np.ascontiguousarray(im)},
                         do_compression=True)
    return folder
