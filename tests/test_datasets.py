"""Tests of isa_lib.datasets (issue 5): grids, generators, loaders, cache.

Nothing here builds a full dataset: generators are exercised through
``render`` on chosen rows and through small sub-grids.
"""
import json
import pickle

import numpy as np
import pytest
import scipy.io
import torch

from isa_lib import datasets as D
from isa_lib.datasets import cars3d, dsprites, faces3d
from isa_lib.datasets._base import build_cached_array, cache_paths


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test gets its own cache folder through the environment variable."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(D.CACHE_ENV, str(folder))
    return folder


def centre_of_mass(img):
    img = np.asarray(img, dtype=np.float64)
    r, c = np.indices(img.shape)
    return (r * img).sum() / img.sum(), (c * img).sum() / img.sum()


# ------------------------------------------------------------------ grids
def test_factor_grids_and_counts():
    spec = {n: D.factor_spec(n) for n in D.NAMES}
    assert spec["dsprites"]["names"] == ("color", "shape", "scale", "orientation", "posX", "posY")
    assert np.prod(spec["dsprites"]["sizes"]) == 737_280
    assert np.prod(spec["faces3d"]["sizes"]) == 127_050
    assert np.prod(spec["cars3d"]["sizes"]) == 17_568
    v = spec["dsprites"]["values"]
    np.testing.assert_allclose(v[2], np.linspace(0.5, 1, 6))
    np.testing.assert_allclose(v[3], np.linspace(0, 2 * np.pi, 40))
    assert v[3][0] == 0 and v[3][-1] == 2 * np.pi
    np.testing.assert_allclose(v[4], np.linspace(0, 1, 32))
    np.testing.assert_allclose(v[5], np.linspace(0, 1, 32))
    for n in D.NAMES:
        assert [len(x) for x in spec[n]["values"]] == list(spec[n]["sizes"])


def test_index_class_round_trip_and_fixed_factor_subset():
    ds = D.load("dsprites", subgrid={"shape": [0, 2], "scale": [1, 5], "orientation": [0, 3, 9],
                                     "posX": [0, 7, 31], "posY": [2, 30]})
    assert ds.factor_sizes == (1, 2, 2, 3, 3, 2) and len(ds) == 72
    idx = np.arange(len(ds))
    classes = ds.index_to_classes(idx)
    assert np.array_equal(ds.classes_to_index(classes), idx)
    assert np.array_equal(ds.factor_classes, classes)
    assert np.array_equal(classes[5], np.unravel_index(5, ds.factor_sizes))
    for k, name in enumerate(ds.factor_names):
        for c in range(ds.factor_sizes[k]):
            sub = ds.fixed_factor_indices(name, c)
            assert np.array_equal(sub, np.flatnonzero(classes[:, k] == c))
    np.testing.assert_allclose(ds.factor_values[2], [0.6, 1.0])
    np.testing.assert_allclose(ds.classes_to_values(classes[:1])[0, 4], 0.0)


# ------------------------------------------------------------------ dSprites
def test_dsprites_area_grows_with_scale_squared():
    scale = np.linspace(0.5, 1, 6)
    for shape in range(3):
        # averaged over orientations, so whole-pixel rounding of edges evens out
        rows = [[0, shape, s, o, 16, 16] for s in range(6) for o in range(0, 40, 3)]
        area = dsprites.render(rows).sum(axis=(1, 2)).reshape(6, -1).mean(1)
        assert np.all(np.diff(area) > 0)
        slope = np.polyfit(np.log(scale), np.log(area), 1)[0]
        assert abs(slope - 2) < 0.15, (shape, area)


def test_dsprites_centre_moves_linearly_with_position():
    for shape in range(3):
        for factor in (4, 5):
            rows = np.zeros((32, 6), int)
            rows[:, 1], rows[:, 2], rows[:, 3] = shape, 3, 5
            rows[:, 4 + (factor == 4)] = 10          # the other coordinate fixed
            rows[:, factor] = np.arange(32)
            com = np.array([centre_of_mass(im) for im in dsprites.render(rows)])
            moving = com[:, 1] if factor == 4 else com[:, 0]   # posX -> columns, posY -> rows
            fixed = com[:, 0] if factor == 4 else com[:, 1]
            fit = np.polyfit(np.arange(32), moving, 1)
            assert fit[0] > 1.2                                 # ~1.45 px per step
            assert np.abs(np.polyval(fit, np.arange(32)) - moving).max() < 0.6
            assert np.ptp(fixed) < 1e-9


def test_dsprites_every_position_gives_a_different_image():
    assert len(set(dsprites.position_to_pixel(np.linspace(0, 1, 32)))) == 32
    rows = [[0, 1, 0, 0, x, 0] for x in range(32)]
    imgs = dsprites.render(rows).reshape(32, -1)
    assert len({im.tobytes() for im in imgs}) == 32


def test_dsprites_orientation_ends_identical_and_square_symmetry():
    rows = [[0, sh, sc, o, 5, 20] for sh in range(3) for sc in (0, 5) for o in (0, 39)]
    imgs = dsprites.render(rows)
    assert np.array_equal(imgs[0::2], imgs[1::2])
    for sc in (0.5, 0.8, 1.0):
        sq0 = dsprites.render_sprite(1, sc, 0.0)
        assert np.array_equal(sq0, dsprites.render_sprite(1, sc, np.pi / 2))
        # an odd-sided square is centred on the pixel centre down-right of the canvas centre
        shift = dsprites.square_side(sc) % 2
        assert np.array_equal(sq0, np.roll(np.rot90(sq0), (shift, 0), (0, 1)))
        # off-grid angle: a quarter turn on top agrees up to boundary pixels
        a, b = dsprites.render_sprite(1, sc, 0.3), dsprites.render_sprite(1, sc, 0.3 + np.pi / 2)
        assert np.abs(a.astype(int) - b).sum() <= 2
    ell = dsprites.render_sprite(2, 1.0, 0.0)
    assert np.array_equal(ell, dsprites.render_sprite(2, 1.0, np.pi))


def test_dsprites_square_is_filled_and_areas_grow_like_scale_squared():
    """Generator version 2: the square at orientation 0 is a filled axis-aligned square of whole-pixel side, and
    every shape's area grows like scale^2 (ratio 4 between scales 1 and 0.5, within pixel rounding)."""
    fv = dsprites.factor_values()
    sides = []
    for sc in fv[2]:
        sq = dsprites.render_sprite(1, sc, 0.0)
        rows, cols = np.nonzero(sq)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert h == w == dsprites.square_side(sc) and sq.sum() == h * w    # no clipped corners
        sides.append(h)
    assert sides == [7, 8, 10, 11, 13, 14]
    exact = {2: np.pi * np.prod(dsprites.ELLIPSE_AXES)}                   # ellipse area at scale 1
    for shape in (1, 2, 3):
        at0 = np.array([dsprites.render_sprite(shape, sc, 0.0).sum() for sc in fv[2]], float)
        mean = np.array([np.mean([dsprites.render_sprite(shape, sc, o).sum() for o in fv[3][::3]])
                         for sc in fv[2]])
        assert np.all(np.diff(at0) > 0), (shape, at0)                      # every scale looks different
        for areas in (at0, mean):
            assert 3.7 <= areas[-1] / areas[0] <= 4.3, (shape, areas)
            # area / scale^2 is constant up to the pixels along the outline (a few percent here)
            k = areas / fv[2] ** 2
            assert k.max() / k.min() < 1.2, (shape, areas)
        if shape in exact:
            assert np.allclose(at0, exact[shape] * fv[2] ** 2, rtol=0.06), at0
    # version 1 is kept for older studies, corner clipping and all
    v1 = [int(dsprites.render_sprite(1, sc, 0.0, version=1).sum()) for sc in fv[2]]
    assert v1 == [36, 64, 96, 100, 144, 192]
    with pytest.raises(ValueError, match="generator version"):
        dsprites.render_sprite(1, 1.0, 0.0, version=3)


def test_dsprites_heart_mirror_symmetry_and_shapes_differ():
    heart = dsprites.render_sprite(3, 1.0, 0.0)
    assert np.array_equal(heart, np.fliplr(heart))
    assert not np.array_equal(heart, np.flipud(heart))       # point down, lobes up
    r, _ = centre_of_mass(heart)
    assert abs(r - dsprites.CANVAS / 2 + 0.5) < 0.75           # rotates about its centroid
    sprites = [dsprites.render_sprite(s, 1.0, 0.0) for s in (1, 2, 3)]
    assert not np.array_equal(sprites[0], sprites[1])
    assert not np.array_equal(sprites[1], sprites[2])
    assert set(np.unique(dsprites.render([[0, 2, 5, 3, 1, 1]]))) == {0, 1}


def test_dsprites_full_build_path_matches_render():
    fv = dsprites.factor_values()
    fast = dsprites.all_positions(dsprites.render_sprite(3, fv[2][2], fv[3][11]))
    rows = [[0, 2, 2, 11, x, y] for x in range(0, 32, 5) for y in range(0, 32, 7)]
    ref = dsprites.render(rows)
    got = np.stack([fast[x, y] for _, _, _, _, x, y in rows])
    assert np.array_equal(got, ref)


def test_subgrid_dataset_matches_render_and_floats(cache):
    ds = D.load("dsprites", subgrid={"scale": [5], "orientation": [0, 10], "posX": [3, 9], "posY": [4]})
    keep = ([0], [0, 1, 2], [5], [0, 10], [3, 9], [4])
    rows = np.stack(np.meshgrid(*keep, indexing="ij"), -1).reshape(-1, 6)
    assert np.array_equal(ds.images[:, 0].numpy(), dsprites.render(rows))
    x = ds.float_images([0, 1])
    assert x.dtype == torch.float32 and x.shape == (2, 1, 64, 64) and x.max() == 1.0
    assert ds.images.dtype == torch.uint8
    assert any(p.suffix == ".npy" for p in cache.iterdir())


# ------------------------------------------------------------------ faces
FACE_VIEW = (3, 10, 5)


def test_faces_light_changes_shading_not_silhouette():
    rows = [[3, 10, 5, light] for light in (0, 5, 10)] + [[3, 4, 5, 5], [3, 16, 2, 5]]
    imgs = D.render("faces3d", rows)[:, 0]
    masks = imgs > 0
    assert np.array_equal(masks[0], masks[1]) and np.array_equal(masks[1], masks[2])
    assert np.abs(imgs[0].astype(int) - imgs[2]).mean() > 5
    # a face seen left of the light is brighter on its left half
    assert imgs[0][:, :32].mean() > imgs[0][:, 32:].mean()
    assert imgs[2][:, 32:].mean() > imgs[2][:, :32].mean()
    assert (masks[0] != masks[3]).sum() > 50 and (masks[0] != masks[4]).sum() > 50
    assert 0.15 < masks[0].mean() < 0.75        # the head fills a good part of the frame


def test_faces_identities_differ_and_seed_reproducible():
    rows = [[i, 10, 5, 5] for i in range(4)]
    a = D.render("faces3d", rows)
    for i in range(3):
        assert np.abs(a[i].astype(int) - a[i + 1]).mean() > 2
    assert np.array_equal(a, D.render("faces3d", rows, seed=0))
    assert not np.array_equal(a, D.render("faces3d", rows, seed=1))


def test_faces_subgrid_build_shades_all_lights_like_render():
    ds = D.load("faces3d", subgrid={"identity": [1, 7], "azimuth": [0, 10], "elevation": [5],
                                    "lighting": [0, 4, 10]})
    assert ds.factor_sizes == (2, 2, 1, 3) and ds.images.shape == (12, 1, 64, 64)
    rows = [[i, a, 5, li] for i in (1, 7) for a in (0, 10) for li in (0, 4, 10)]
    ref = D.render("faces3d", rows)
    assert np.abs(ds.images.numpy().astype(int) - ref).max() <= 1


# ------------------------------------------------------------------ cars
def test_cars_identities_differ_and_azimuth_rotates():
    rows = [[i, 0, 1] for i in range(4)] + [[0, 6, 1], [0, 12, 1], [0, 3, 1]]
    imgs = D.render("cars3d", rows)
    assert imgs.shape == (7, 3, 64, 64) and imgs.dtype == np.uint8
    for i in range(3):
        assert np.abs(imgs[i].astype(int) - imgs[i + 1]).mean() > 2
    mask = (imgs < 250).any(axis=1)                          # not white background
    width = lambda m: np.ptp(np.flatnonzero(m.any(axis=0)))  # noqa: E731
    assert width(mask[0]) > 1.8 * width(mask[4])             # side view longer than front view
    assert not np.array_equal(mask[0], mask[5]) and not np.array_equal(mask[0], mask[6])
    # 180 degrees later the silhouette is roughly the mirror image
    assert (mask[0] != mask[5][:, ::-1]).mean() < 0.05
    assert np.array_equal(imgs[:2], D.render("cars3d", rows[:2], seed=0))


# ------------------------------------------------------------------ sampler
def test_random_batch_sampler_is_seeded_and_covers_an_epoch():
    ds = D.load("dsprites", subgrid={"posX": [0, 31], "posY": [0, 31], "orientation": [0]})
    s1, s2 = D.RandomBatchSampler(ds, 8, seed=3, device="cpu"), ds.batches(8, seed=3, device="cpu")
    x1, i1 = s1.sample()
    x2, i2 = s2.sample()
    assert torch.equal(i1, i2) and torch.equal(x1, x2) and x1.shape == (8, 1, 64, 64)
    assert torch.equal(x1, ds.float_images(i1.numpy()))
    seen = torch.cat([i for _, i in s1])
    assert len(seen) == len(s1) * 8 and len(set(seen.tolist())) == len(seen)


# ------------------------------------------------------------------ real-format files
def small_dsprites(tmp_path):
    ds = D.load("dsprites", subgrid={"scale": [0, 5], "orientation": [0, 20], "posX": [0, 5, 31],
                                     "posY": [2, 9]})
    path = D.export(ds, tmp_path / dsprites.FILENAME)
    return ds, path


def test_dsprites_export_reads_back_in_original_layout(tmp_path):
    ds, path = small_dsprites(tmp_path)
    with np.load(path, allow_pickle=True, encoding="latin1") as z:
        assert set(z.files) == {"imgs", "latents_values", "latents_classes", "metadata"}
        assert z["imgs"].shape == (len(ds), 64, 64) and z["imgs"].dtype == np.uint8
        meta = z["metadata"][()]
        assert tuple(meta["latents_sizes"]) == ds.factor_sizes
        assert z["latents_values"][0, 1] == 1.0                  # shapes are 1, 2, 3
    back = dsprites.load_npz(path, factor_sizes=ds.factor_sizes)
    assert torch.equal(back.images, ds.images)
    for a, b in zip(back.factor_values, ds.factor_values):
        np.testing.assert_allclose(a, b)


def test_dsprites_bad_files_raise_named_errors(tmp_path):
    ds, good = small_dsprites(tmp_path)
    sizes = ds.factor_sizes
    with pytest.raises(D.DatasetFileNotFoundError) as e:
        D.load("dsprites", path=tmp_path / "nothing.npz")
    assert isinstance(e.value, FileNotFoundError) and "nothing.npz" in str(e.value)

    raw = good.read_bytes()
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(raw[: len(raw) // 2])
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all" * 100)
    for bad in (trunc, junk):
        with pytest.raises(D.DatasetFormatError) as e:
            dsprites.load_npz(bad, factor_sizes=sizes)
        assert bad.name in str(e.value) and isinstance(e.value, ValueError)

    with np.load(good, allow_pickle=True) as z:
        arrays = {k: z[k] for k in z.files}
    nokey = tmp_path / "nokey.npz"
    np.savez(nokey, **{k: v for k, v in arrays.items() if k != "imgs"})
    with pytest.raises(D.DatasetFormatError, match="imgs"):
        dsprites.load_npz(nokey, factor_sizes=sizes)
    shape = tmp_path / "shape.npz"
    np.savez(shape, **{**arrays, "imgs": arrays["imgs"][:, :32, :32]})
    with pytest.raises(D.DatasetFormatError, match="shape"):
        dsprites.load_npz(shape, factor_sizes=sizes)
    with pytest.raises(D.DatasetFormatError, match="shape"):
        dsprites.load_npz(good)                                  # not the published 737,280
    order = tmp_path / "order.npz"
    np.savez(order, **{**arrays, "latents_classes": arrays["latents_classes"][::-1]})
    with pytest.raises(D.DatasetFormatError, match="C-order"):
        dsprites.load_npz(order, factor_sizes=sizes)


def test_faces_pth_loader_and_errors(tmp_path):
    sizes = (2, 3, 2, 2)
    x = torch.randint(0, 256, sizes + (64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    good = tmp_path / faces3d.FILENAME
    torch.save(x, good)
    ds = faces3d.load_pth(good, factor_sizes=sizes)
    assert torch.equal(ds.images[:, 0], x.reshape(-1, 64, 64)) and ds.max_value == 255
    assert ds.factor_names == ("identity", "azimuth", "elevation", "lighting")
    with pytest.raises(D.DatasetFormatError, match="shape"):
        faces3d.load_pth(good)                                   # published sizes expected
    cases = {"dtype.pth": x.float(), "dict.pth": {"x": x}, "shape.pth": x[..., :32]}
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(D.DatasetFormatError) as e:
            faces3d.load_pth(tmp_path / name, factor_sizes=sizes)
        assert name in str(e.value)
    raw = good.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(D.DatasetFormatError, match="trunc.pth"):
        faces3d.load_pth(tmp_path / "trunc.pth", factor_sizes=sizes)
    with pytest.raises(D.DatasetFileNotFoundError):
        D.load("faces3d", path=tmp_path / "missing.pth")


def test_faces_export_round_trip(tmp_path):
    ds = D.load("faces3d", subgrid={"identity": [0, 1], "azimuth": [9, 11], "elevation": [5],
                                    "lighting": [5]})
    path = D.export(ds, tmp_path / "renders.pth")
    assert torch.load(path, weights_only=True).shape == (2, 2, 1, 1, 64, 64)
    assert torch.equal(faces3d.load_pth(path, factor_sizes=ds.factor_sizes).images, ds.images)


def write_car(path, n_az=3, n_el=2, seed=0, **override):
    im = np.random.default_rng(seed).integers(0, 256, (128, 128, 3, n_az, n_el), dtype=np.uint8)
    scipy.io.savemat(path, {"im": im, **override})
    return im


def test_cars_mat_loader_and_errors(tmp_path):
    folder = tmp_path / "cars"
    folder.mkdir()
    ims = [write_car(folder / f"car_{i:03d}_mesh.mat", seed=i) for i in (1, 2)]
    ds = cars3d.load_mat_folder(folder, factor_sizes=(2, 3, 2))
    assert ds.images.shape == (12, 3, 64, 64)
    # image (car 1, azimuth 2, elevation 1) is the 2 x 2 average of the 128 x 128 original
    ref = ims[1][:, :, :, 2, 1].astype(float).reshape(64, 2, 64, 2, 3).mean((1, 3))
    got = ds.images[ds.classes_to_index([1, 2, 1])].numpy().transpose(1, 2, 0)
    assert np.abs(got - ref).max() <= 0.5 + 1e-6
    with pytest.raises(D.DatasetFormatError, match="expected 183"):
        cars3d.load_mat_folder(folder)
    with pytest.raises(D.DatasetFileNotFoundError):
        D.load("cars3d", path=tmp_path / "no_such_folder")

    bad = tmp_path / "bad"
    bad.mkdir()
    scipy.io.savemat(bad / "car_001_mesh.mat", {"img": np.zeros((2, 2), np.uint8)})
    with pytest.raises(D.DatasetFormatError, match="'im'") as e:
        cars3d.load_mat_folder(bad, factor_sizes=(1, 3, 2))
    assert "car_001_mesh.mat" in str(e.value)
    write_car(bad / "car_001_mesh.mat", n_az=4)
    with pytest.raises(D.DatasetFormatError, match="shape"):
        cars3d.load_mat_folder(bad, factor_sizes=(1, 3, 2))
    raw = (folder / "car_001_mesh.mat").read_bytes()
    (bad / "car_001_mesh.mat").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(D.DatasetFormatError, match="car_001_mesh.mat"):
        cars3d.load_mat_folder(bad, factor_sizes=(1, 3, 2))
    assert not list((tmp_path / "cache").glob("*.tmp-*"))      # failed builds leave nothing


def test_cars_export_round_trip(tmp_path):
    ds = D.load("cars3d", subgrid={"identity": [0, 5], "azimuth": [0, 6, 12], "elevation": [1, 3]})
    assert ds.images.shape == (12, 3, 64, 64) and ds.max_value == 255
    folder = D.export(ds, tmp_path / "export")
    back = cars3d.load_mat_folder(folder, factor_sizes=ds.factor_sizes)
    assert torch.equal(back.images, ds.images)


# ------------------------------------------------------------------ cache
def test_cache_rebuilds_partial_or_wrong_hash(cache):
    calls = []

    def fill(out):
        calls.append(1)
        out[:] = np.arange(out.size, dtype=np.uint8).reshape(out.shape)

    a = np.array(build_cached_array("demo", (10, 7), np.uint8, fill))
    data, side = cache_paths("demo")
    assert len(calls) == 1 and data.is_file() and side.is_file()
    build_cached_array("demo", (10, 7), np.uint8, fill)
    assert len(calls) == 1                                       # reused, not rebuilt

    with open(data, "r+b") as f:                                 # a partial file
        f.truncate(data.stat().st_size - 20)
    b = build_cached_array("demo", (10, 7), np.uint8, fill)
    assert len(calls) == 2 and np.array_equal(a, b)

    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "hash": "0" * 64}))      # a wrong hash
    build_cached_array("demo", (10, 7), np.uint8, fill)
    assert len(calls) == 3 and json.loads(side.read_text())["hash"] == meta["hash"]

    raw = bytearray(data.read_bytes())                           # silent corruption
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    c = build_cached_array("demo", (10, 7), np.uint8, fill)
    assert len(calls) == 4 and np.array_equal(a, c)

    side.unlink()                                                # data without its record
    build_cached_array("demo", (10, 7), np.uint8, fill)
    assert len(calls) == 5


def test_interrupted_build_leaves_no_usable_file(cache):
    def broken(out):
        out[:5] = 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cached_array("cut", (10,), np.uint8, broken)
    data, side = cache_paths("cut")
    assert not data.exists() and not side.exists() and not list(cache.glob("*.tmp-*"))
    out = build_cached_array("cut", (10,), np.uint8, lambda o: o.fill(2))
    assert (out == 2).all()


def test_cache_folder_from_environment(cache, tmp_path):
    assert D.cache_dir() == cache
    assert D.cache_dir(tmp_path / "x") == tmp_path / "x"


def test_builtin_datasets_deterministic(cache):
    sub = {"identity": [2], "azimuth": [0, 13], "elevation": [3]}
    a = D.load("cars3d", subgrid=sub).images.clone()
    for f in cache.iterdir():
        f.unlink()
    b = D.load("cars3d", subgrid=sub).images
    assert torch.equal(a, b)
    c = D.load("cars3d", subgrid=sub, seed=5).images
    assert not torch.equal(a, c)


def test_unknown_names_raise():
    with pytest.raises(KeyError):
        D.load("mnist")
    with pytest.raises(KeyError):
        D.load("dsprites", subgrid={"colour": [0]})
    with pytest.raises(IndexError):
        D.load("dsprites", subgrid={"posX": [32]})


class _Payload:
    """Pickles as a call that creates a file: if the file exists after a load, the load ran code."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_crafted_pickles_in_data_files_never_run(tmp_path):
    ds, good = small_dsprites(tmp_path)
    sizes = ds.factor_sizes
    sentinel = tmp_path / "code_ran"
    with np.load(good, allow_pickle=True) as z:            # our own export, read by the test only
        arrays = {k: z[k] for k in z.files}
    plain = tmp_path / "plain_pickle.npz"                   # a pickle passed as the .npz
    plain.write_bytes(pickle.dumps(_Payload(sentinel)))
    imgs = tmp_path / "imgs_pickle.npz"                      # an array member is a pickled object array
    np.savez(imgs, **{**arrays, "imgs": np.array([_Payload(sentinel)], dtype=object)})
    classes = tmp_path / "classes_pickle.npz"                # another data member, of the right shape
    np.savez(classes, **{**arrays, "latents_classes": arrays["latents_classes"].astype(object)})
    for bad, error, what in ((plain, D.DatasetFormatError, "cannot be read"),
                             (imgs, dsprites.ObjectMemberError, r"member imgs\.npy holds Python objects"),
                             (classes, dsprites.ObjectMemberError, r"member latents_classes\.npy holds Python")):
        with pytest.raises(error, match=what) as e:
            dsprites.load_npz(bad, factor_sizes=sizes)
        assert bad.name in str(e.value)
        assert not sentinel.exists(), bad.name
    # the metadata member (a pickle in the original file) is never opened: a crafted one, or one that
    # disagrees, changes nothing; the sizes come from the specification
    meta = tmp_path / "meta_pickle.npz"
    np.savez(meta, **{**arrays, "metadata": np.array(_Payload(sentinel), dtype=object)})
    wrong = tmp_path / "wrong_meta.npz"
    np.savez(wrong, **{**arrays, "metadata": np.array({"latents_sizes": np.array([9, 9])}, dtype=object)})
    for f in (good, meta, wrong):
        d = dsprites.read_npz(f, sizes)
        assert d["factor_sizes"] == sizes and d["metadata"] is None
        np.testing.assert_array_equal(d["imgs"], arrays["imgs"])
    assert not sentinel.exists()
    pth = tmp_path / faces3d.FILENAME                        # a crafted 3D-faces file
    torch.save(_Payload(sentinel), pth)
    with pytest.raises(D.DatasetFormatError, match="cannot be read"):
        faces3d.read_pth(pth)
    assert not sentinel.exists()
