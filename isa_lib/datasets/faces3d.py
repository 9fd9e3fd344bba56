"""3D faces (Paysan et al. 2009, Basel face renders; paper ref. [43], Sec. 4).

Factor grid of the renders used by the paper (and by beta-TCVAE, ref. [9]):
50 identities x 21 azimuths x 11 elevations x 11 lighting directions, 64 x 64
grey, C order (identity, azimuth, elevation, lighting): 127,050 images.

The Basel face model is not redistributable, so the built-in version ray
casts a procedural head: a union of ellipsoids (cranium, hair cap, jaw,
cheeks, chin, brow ridge, nose, lips, eyeballs with irises, ears, neck) whose
sizes, positions and albedos are drawn per identity from a seed, lit by one
Lambertian light plus a small ambient term, on a black background.
Angles (our choice; the paper gives only the counts): azimuth -90..90 degrees
in 9 degree steps (profile to profile, the range seen in published traversals
of the renders), elevation -30..30 degrees in 6 degree steps (looking from
below to above), and the light circling the head horizontally from -90 to 90
degrees, 20 degrees above the horizon, fixed to the camera, so the lighting
factor moves shading only and never the silhouette.

Real file: ``basel_face_renders.pth``, a torch uint8 tensor of shape
(50, 21, 11, 11, 64, 64).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import _raycast as rc
from ._base import (DatasetFileNotFoundError, DatasetFormatError, GroundTruthDataset,
                    build_cached_array, file_hash, grid_rows, subgrid_classes, subgrid_key)

NAMES = ("identity", "azimuth", "elevation", "lighting")
SIZES = (50, 21, 11, 11)
FILENAME = "basel_face_renders.pth"
VERSION = 1
IMG = 64
EXTENT = 1.3
AMBIENT = 0.15   # keeps every face pixel above 0, so light never changes the silhouette


def factor_values() -> list[np.ndarray]:
    """identity index, azimuth, elevation, light azimuth (all angles in radians)."""
    return [np.arange(50, dtype=np.float64), np.deg2rad(np.linspace(-90, 90, 21)),
            np.deg2rad(np.linspace(-30, 30, 11)), np.deg2rad(np.linspace(-90, 90, 11))]


def light_directions(angles) -> torch.Tensor:
    """(n, 3) camera-frame unit vectors: light azimuth ``angles``, 20 degrees up."""
    a = torch.as_tensor(np.asarray(angles, np.float64)).float()
    up = np.deg2rad(20.0)
    return torch.stack([torch.sin(a) * np.cos(up), torch.full_like(a, np.sin(up)),
                        torch.cos(a) * np.cos(up)], -1)


def identity_params(seed: int = 0, n: int = 50) -> list[dict]:
    """Random head designs; identity k does not depend on which others are rendered."""
    rng = np.random.default_rng([seed, 2])
    heads = []
    for _ in range(n):
        j = lambda lo=0.88, hi=1.12: rng.uniform(lo, hi)  # noqa: E731
        heads.append(dict(
            head=(0.78 * j(), 0.92 * j(0.93, 1.07), 0.88 * j(0.93, 1.07)),
            jaw=(0.6 * j(), 0.62 * j(), 0.72), chin=j(0.8, 1.2),
            cheek=(0.28 * j(), 0.33 * j(0.9, 1.1)),
            nose=(0.11 * j(0.8, 1.3), 0.26 * j(0.85, 1.2), 0.22 * j(0.75, 1.3)),
            eye_x=0.27 * j(0.9, 1.1), eye_y=0.12 * j(0.8, 1.2), mouth=(0.2 * j(0.8, 1.2), 0.06 * j()),
            ears=(0.08, 0.22 * j(0.85, 1.2), 0.14 * j()), brow=j(0.7, 1.3),
            skin=rng.uniform(0.6, 0.95), hair=rng.uniform(0.1, 0.55),
            hair_cap=bool(rng.uniform() < 0.8), hair_len=rng.uniform(0.0, 0.25),
            iris=rng.uniform(0.15, 0.45),
        ))
    return heads


def head_primitives(p: dict) -> list:
    """(centre, semi-axes, grey albedo) ellipsoids of one head: x right, y up, z to the viewer."""
    hx, hy, hz = p["head"]
    jx, jy, jz = p["jaw"]
    s = p["skin"]
    ex, ey = p["eye_x"], p["eye_y"]
    front = -0.05 + hz * np.sqrt(max(0.0, 1 - (ex / hx) ** 2 - ((ey - 0.15) / hy) ** 2))
    prims = [((0, 0.15, -0.05), (hx, hy, hz), s),
             ((0, -0.35, 0.12), (jx, jy, jz), s),
             ((0, -0.72 - 0.05 * p["chin"], 0.42), (0.24 * p["chin"], 0.18, 0.26), s),
             ((0, 0.3, 0.62), (0.42, 0.06 * p["brow"], 0.17), s),
             ((0, -0.1, 0.84), p["nose"], s * 0.97),
             ((0, -0.5, 0.74), (p["mouth"][0], p["mouth"][1], 0.1), s * 0.6),
             ((0, -1.0, -0.15), (0.36, 0.55, 0.36), s * 0.9)]
    for sx in (1, -1):
        prims += [((sx * 0.32, -0.2, 0.34), (p["cheek"][0], 0.24, p["cheek"][1]), s),
                  ((sx * ex, ey, front - 0.1), (0.12, 0.12, 0.12), 0.95),          # sclera
                  ((sx * ex, ey, front - 0.05), (0.065, 0.065, 0.08), p["iris"]),   # iris
                  ((sx * (hx - 0.01), -0.02, -0.05), p["ears"], s * 0.95)]
    if p["hair_cap"]:
        prims.append(((0, 0.32, -0.14 - p["hair_len"] * 0.3),
                      (hx * 1.06, hy * 0.9, hz * 1.0 + p["hair_len"] * 0.3), p["hair"]))
    return prims


def _geometry(prims, views: torch.Tensor, res: int):
    """Hit distance (V, R), camera-frame normals (V, R, 3) and albedo (V, R) of every ray."""
    basis = rc.camera_basis(res, EXTENT, views)
    boxes = [(np.subtract(c, a), np.add(c, a)) for c, a, _ in prims]
    t, n_obj, which = rc.cast(basis, [("ellipsoid", (c, a), *b) for (c, a, _), b in zip(prims, boxes)])
    n_cam = torch.einsum("vhwj,vkj->vhwk", n_obj, views)     # camera = M object
    alb = torch.tensor([g for _, _, g in prims], dtype=torch.float32)[which]
    return t.flatten(1), n_cam.flatten(1, 2), alb.flatten(1)


def render_views(p: dict, azimuth, elevation, light, supersample: int = 2,
                 paired: bool = False) -> torch.Tensor:
    """uint8 (V, L, 64, 64): V views of one head, each under all L light angles.

    With ``paired`` the i-th view gets only the i-th light: (V, 1, 64, 64).
    """
    res = IMG * supersample
    views = rc.view_matrices(azimuth, elevation)
    t, n, alb = _geometry(head_primitives(p), views, res)
    ld = light_directions(light)
    if paired:
        lam = (n * ld[:, None, :]).sum(-1, keepdim=True).clamp_min(0)   # (V, R, 1)
    else:
        lam = (n @ ld.T).clamp_min(0)                                  # (V, R, L)
    img = alb[..., None] * (AMBIENT + (1 - AMBIENT) * lam)
    img = torch.where(torch.isinf(t)[..., None], torch.zeros_like(img), img)
    img = img.permute(0, 2, 1).reshape(len(views), -1, res, res)
    return rc.to_uint8(rc.downsample(img, supersample))


def render(classes, seed: int = 0, supersample: int = 2) -> np.ndarray:
    """Images (n, 1, 64, 64) uint8 for rows of (identity, azimuth, elevation, lighting)."""
    c = np.atleast_2d(np.asarray(classes, dtype=np.int64))
    fv = factor_values()
    heads = identity_params(seed)
    out = np.empty((len(c), 1, IMG, IMG), np.uint8)
    for ident in np.unique(c[:, 0]):
        rows = np.flatnonzero(c[:, 0] == ident)
        for s in range(0, len(rows), 64):
            r = rows[s:s + 64]
            im = render_views(heads[ident], fv[1][c[r, 1]], fv[2][c[r, 2]], fv[3][c[r, 3]],
                              supersample, paired=True)
            out[r] = im.numpy()
    return out


def _fill(out: np.ndarray, keep, seed: int, supersample: int, chunk: int = 66) -> None:
    """Write a (sub)grid; geometry is cast once per view and shaded for all lights."""
    fv = factor_values()
    heads = identity_params(seed)
    views = grid_rows(keep[1:3])                          # (az, el) classes, C order
    n_l = len(keep[3])
    lights = fv[3][keep[3]]
    per_id = len(views) * n_l
    for i, ident in enumerate(keep[0]):
        for s in range(0, len(views), chunk):
            v = views[s:s + chunk]
            im = render_views(heads[ident], fv[1][v[:, 0]], fv[2][v[:, 1]], lights, supersample)
            lo = i * per_id + s * n_l
            out[lo:lo + len(v) * n_l, 0] = im.reshape(-1, IMG, IMG).numpy()


def build(subgrid=None, seed: int = 0, cache=None, verify=True, supersample: int = 2) -> GroundTruthDataset:
    """Built-in 3D faces (cached); ``subgrid`` (name -> classes) keeps a sub-grid."""
    keep = subgrid_classes(SIZES, NAMES, subgrid)
    sizes = [len(k) for k in keep]
    key = f"faces3d-v{VERSION}-s{seed}-ss{supersample}{subgrid_key(keep, SIZES)}"
    arr = build_cached_array(key, (int(np.prod(sizes)), 1, IMG, IMG), np.uint8,
                             lambda out: _fill(out, keep, seed, supersample), root=cache,
                             verify=verify, extra={"dataset": "faces3d", "seed": seed})
    fv = factor_values()
    return GroundTruthDataset("faces3d", arr, NAMES, sizes, [fv[k][c] for k, c in enumerate(keep)],
                              max_value=255, source="builtin")


# ---------------------------------------------------------------- real file
def read_pth(path, factor_sizes=SIZES) -> torch.Tensor:
    """Load and validate the Basel renders tensor; (prod(sizes), 64, 64) uint8."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFileNotFoundError(path, f"3D faces file not found (expected {FILENAME})")
    try:
        x = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, or pickled code
        raise DatasetFormatError(path, f"cannot be read as a torch tensor file ({type(e).__name__}: {e})") from e
    if not isinstance(x, torch.Tensor):
        raise DatasetFormatError(path, f"holds a {type(x).__name__}, expected one uint8 tensor")
    want = tuple(int(s) for s in factor_sizes) + (IMG, IMG)
    if tuple(x.shape) != want:
        raise DatasetFormatError(path, f"tensor has shape {tuple(x.shape)}, expected {want}")
    if x.dtype != torch.uint8:
        raise DatasetFormatError(path, f"tensor has dtype {x.dtype}, expected torch.uint8")
    return x.reshape(-1, IMG, IMG)


def load_pth(path, factor_sizes=SIZES, cache=None, verify=True) -> GroundTruthDataset:
    """3D faces from ``basel_face_renders.pth`` (validated, then cached as a memory map)."""
    x = read_pth(path, factor_sizes)
    sizes = tuple(int(s) for s in factor_sizes)

    def fill(out):
        out[:, 0] = x.numpy()

    arr = build_cached_array(f"faces3d-file-{file_hash(path)[:20]}", (len(x), 1, IMG, IMG), np.uint8,
                             fill, root=cache, verify=verify,
                             extra={"dataset": "faces3d", "source": str(path)})
    if sizes == SIZES:
        values = factor_values()
    else:
        values = [np.arange(s, dtype=np.float64) for s in sizes]
    return GroundTruthDataset("faces3d", arr, NAMES, sizes, values, max_value=255, source=str(path))


def export_pth(dataset: GroundTruthDataset, path) -> Path:
    """Write ``dataset`` in the Basel renders layout (sizes + (64, 64), uint8)."""
    path = Path(path)
    x = dataset.images[:, 0].clone().reshape(*dataset.factor_sizes, IMG, IMG)
    torch.save(x, path)
    return path

