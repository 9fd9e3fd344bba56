"""A tiny vectorised ray caster for the procedural 3-D datasets (faces, cars).

Orthographic camera looking down -z of the camera frame; objects are unions of
analytic primitives (ellipsoids, convex polyhedra, capped cylinders) given in
the object frame.  Rays are moved into the object frame, so one call renders
many views of one object at once, and each primitive is tested only on the
screen window its bounding sphere can cover.  Plain torch on the CPU.
"""
from __future__ import annotations

import math

import numpy as np
import torch

EPS = 1e-9
FAR = 1e9


def view_matrices(azimuth, elevation) -> torch.Tensor:
    """(V, 3, 3) object->camera rotations: turn by azimuth about y, then tilt by elevation.

    Positive elevation shows the top of the object (camera above); angles in radians.
    """
    a = torch.as_tensor(np.asarray(azimuth, np.float64)).float().reshape(-1)
    e = torch.as_tensor(np.asarray(elevation, np.float64)).float().reshape(-1)
    ca, sa, ce, se = torch.cos(a), torch.sin(a), torch.cos(e), torch.sin(e)
    z, o = torch.zeros_like(a), torch.ones_like(a)
    ry = torch.stack([torch.stack([ca, z, sa], -1), torch.stack([z, o, z], -1),
                      torch.stack([-sa, z, ca], -1)], -2)
    rx = torch.stack([torch.stack([o, z, z], -1), torch.stack([z, ce, -se], -1),
                      torch.stack([z, se, ce], -1)], -2)
    return rx @ ry


def camera_basis(res: int, extent: float, views: torch.Tensor, depth: float = 10.0,
                 offset=(0.0, 0.0, 0.0)):
    """Orthographic rays o = O + u U + v W with direction d, in the object frame.

    Returns (O, U, W, d), each (V, 3), and pixel-centre coordinates u (columns,
    left to right) and v (rows, top to bottom, so v decreases).  ``offset`` is
    the object point that appears at the image centre.
    """
    c = (torch.arange(res, dtype=torch.float32) + 0.5) / res * 2 * extent - extent
    eye = torch.eye(3)
    # x_obj = x_cam @ M for the object->camera rotation M
    origin = torch.tensor([0.0, 0.0, depth]) @ views + torch.tensor(offset, dtype=torch.float32)
    return origin, eye[0] @ views, eye[1] @ views, -eye[2] @ views, c, -c


def _rays(basis, rows: slice, cols: slice):
    origin, U, W, d, u, v = basis
    o = (origin[:, None, None, :] + u[cols][None, None, :, None] * U[:, None, None, :]
         + v[rows][None, :, None, None] * W[:, None, None, :])
    return o, d[:, None, None, :]


def _window(basis, lo, hi):
    """Row and column slices covering the projection of a bounding box in all views."""
    origin, U, W, d, u, v = basis
    lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
    corners = torch.from_numpy(np.stack(np.meshgrid(*zip(lo, hi), indexing="ij"), -1).reshape(-1, 3))
    rel = corners[None, :, :] - origin[:, None, :]            # (V, 8, 3)
    uc, vc = (rel * U[:, None, :]).sum(-1), (rel * W[:, None, :]).sum(-1)
    step = float(u[1] - u[0])
    un, vn = u.numpy(), v.numpy()
    cols = np.flatnonzero((un >= float(uc.min()) - step) & (un <= float(uc.max()) + step))
    rows = np.flatnonzero((vn >= float(vc.min()) - step) & (vn <= float(vc.max()) + step))
    if len(cols) == 0 or len(rows) == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def ellipsoid(o, d, centre, axes):
    """Nearest hit distance (inf = miss) and unit normal of an axis-aligned ellipsoid."""
    c = torch.as_tensor(centre, dtype=torch.float32)
    a = torch.as_tensor(axes, dtype=torch.float32)
    oo, dd = (o - c) / a, d / a
    qa = (dd * dd).sum(-1)
    qb = 2 * (oo * dd).sum(-1)
    qc = (oo * oo).sum(-1) - 1
    disc = qb * qb - 4 * qa * qc
    t = (-qb - torch.sqrt(disc.clamp_min(0))) / (2 * qa)
    t = torch.where((disc > 0) & (t > 0), t, torch.full_like(t, math.inf))
    n = (oo + t.clamp_max(FAR)[..., None] * dd) / a      # gradient of |x/a|^2
    return t, n / n.norm(dim=-1, keepdim=True).clamp_min(EPS)


def polyhedron(o, d, normals, offsets):
    """Convex polyhedron {x : n_i . x <= h_i}; returns (t, normal) like ellipsoid."""
    n = torch.as_tensor(normals, dtype=torch.float32)
    h = torch.as_tensor(offsets, dtype=torch.float32)
    num = h - o @ n.T                      # (..., P)
    den = d @ n.T
    # a ray parallel to a face: a tiny positive slope turns it into a far exit bound
    den = torch.where(den.abs() < EPS, torch.full_like(den, EPS), den)
    tb = num / den
    enter = (den < 0).expand_as(tb)
    t_in, i_in = tb.masked_fill(~enter, -math.inf).max(-1)
    t_out = tb.masked_fill(enter, math.inf).min(-1).values
    t = t_in.masked_fill((t_in > t_out) | (t_in <= 0), math.inf)
    return t, n[i_in]


def cylinder(o, d, centre, radius, half_length):
    """Capped cylinder with its axis along the object z axis."""
    c = torch.as_tensor(centre, dtype=torch.float32)
    oo = o - c
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    qa = (dx * dx + dy * dy).clamp_min(EPS)
    qb = 2 * (oo[..., 0] * dx + oo[..., 1] * dy)
    qc = oo[..., 0] ** 2 + oo[..., 1] ** 2 - radius ** 2
    disc = qb * qb - 4 * qa * qc
    sq = torch.sqrt(disc.clamp_min(0))
    t0, t1 = (-qb - sq) / (2 * qa), (-qb + sq) / (2 * qa)
    dzs = torch.where(dz.abs() < EPS, torch.full_like(dz, EPS), dz)
    za, zb = (-half_length - oo[..., 2]) / dzs, (half_length - oo[..., 2]) / dzs
    z0, z1 = torch.minimum(za, zb), torch.maximum(za, zb)
    t_in, t_out = torch.maximum(t0, z0), torch.minimum(t1, z1)
    hit = (disc > 0) & (t_in <= t_out) & (t_in > 0)
    t = torch.where(hit, t_in, torch.full_like(t_in, math.inf))
    p = oo + t.clamp_max(FAR)[..., None] * d
    side = torch.stack([p[..., 0], p[..., 1], torch.zeros_like(t)], -1) / radius
    cap = torch.zeros_like(side)
    cap[..., 2] = -torch.sign(dzs).expand_as(t)
    return t, torch.where((t0 >= z0)[..., None], side, cap)


KINDS = {"ellipsoid": ellipsoid, "poly": polyhedron, "cyl": cylinder}


def cast(basis, prims):
    """Nearest hit over a union of primitives.

    ``prims``: list of (kind, args, box_lo, box_hi), the box bounding the
    primitive in the object frame; each primitive is only tested on the
    screen window of its box.  Returns the
    hit distance (V, H, W) (inf = background), the object-frame normal
    (V, H, W, 3) and the index of the primitive hit (V, H, W).
    """
    n_views, res = basis[0].shape[0], len(basis[4])
    t = torch.full((n_views, res, res), math.inf)
    normal = torch.zeros((n_views, res, res, 3))
    which = torch.zeros((n_views, res, res), dtype=torch.long)
    for k, (kind, args, lo, hi) in enumerate(prims):
        win = _window(basis, lo, hi)
        if win is None:
            continue
        rows, cols = win
        o, d = _rays(basis, rows, cols)
        tk, nk = KINDS[kind](o, d, *args)
        cur = t[:, rows, cols]            # views: masked writes land in t, normal, which
        better = tk < cur
        cur[better] = tk[better]
        normal[:, rows, cols][better] = nk.expand(*better.shape, 3)[better]
        which[:, rows, cols][better] = k
    return t, normal, which


def downsample(img: torch.Tensor, factor: int) -> torch.Tensor:
    """Box-average (..., H*f, W*f) -> (..., H, W); the supersampling filter."""
    if factor == 1:
        return img
    *lead, h, w = img.shape
    return img.reshape(*lead, h // factor, factor, w // factor, factor).mean((-3, -1))


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
