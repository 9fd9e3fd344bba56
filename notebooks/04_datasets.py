# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The ground-truth datasets: dSprites, 3D faces and cars3d
#
# The paper evaluates disentanglement (Sec. 4) on three datasets whose images are generated from known
# factors of variation, so that the mutual information gap (MIG) between latents and factors can be
# measured:
#
# * **dSprites** [35]: one white sprite on black, 3 shapes (square, ellipse, heart) x 6 scales x 40
#   orientations x 32 x 32 positions, 64 x 64 binary, 737,280 images;
# * **3D faces** [43]: Basel face renders, 50 identities x 21 azimuths x 11 elevations x 11 lighting
#   directions, 64 x 64 grey, 127,050 images;
# * **cars3d** [44]: 183 car models x 24 azimuths x 4 elevations, 64 x 64 colour, 17,568 images.
#
# The original files cannot be downloaded here and the Basel renders are not redistributable, so
# `isa_lib.datasets` offers two sources behind one API. `load(name, path=...)` reads and validates the
# real file (the dSprites `.npz`, `basel_face_renders.pth`, the folder of cars3d `.mat` files);
# `load(name)` builds a **procedural stand-in with exactly the same factor grid**:
#
# * dSprites follows the published specification value for value (including the 40 orientations that
#   run from 0 to $2\pi$ *inclusive*, so the first and last are the same image). Sprite sizes and the
#   position range are our estimates (a 13 px square at scale 1; centres travel 45 px, a 1.45 px step,
#   so every position gives a different image, as the original's README requires).
# * 3D faces are ray-cast cartoon heads (unions of ellipsoids) with a Lambertian light; azimuth runs
#   from profile to profile (-90..90 degrees), elevation -30..30 degrees, the light circles the head.
# * cars3d are ray-cast cars (polyhedra and cylinders) in five body styles and random paint on white.
#
# Numbers obtained on the stand-ins are therefore *not* the paper's numbers, but the factor structure
# the MIG sees is the same. Every dataset object exposes `images` (uint8, memory-mapped from a cache in
# `$ISA_VAE_CACHE`), `factor_names`, `factor_sizes`, `factor_values`, `factor_classes`, index <-> class
# conversion and `fixed_factor_indices` (the conditioning the MIG estimator needs).
#
# This notebook only renders small example grids; at `scale="paper"` it builds the full datasets.

# %% tags=["parameters"]
scale = "small"
seed = 0
n_examples = 8
n_random = 16
n_identities = 4
position_step = 8
full = False

# %% tags=["hide-input"]
import time

import matplotlib.pyplot as plt
import numpy as np

from isa_lib import datasets as D
from isa_lib.plots import datasets as P

for name in D.NAMES:
    spec = D.factor_spec(name)
    print(f"{name:9s} factors {dict(zip(spec['names'], spec['sizes']))} -> "
          f"{int(np.prod(spec['sizes'])):,} images")

# %% [markdown]
# ## dSprites
#
# Each row sweeps one factor while the others stay at their middle class. Scale grows the area with
# the square of the scale; posX moves the sprite right, posY moves it down; orientation turns it
# counter-clockwise. The square's 4-fold and the ellipse's 2-fold symmetry make several orientation
# classes produce the same image, exactly as in the original.

# %% tags=["hide-input", "traversal"]
fig = P.plot_traversals("dsprites", n_examples, seed=seed, scale=scale, base=[0, 0, 5, 0, 16, 16])
plt.show()
fig = P.plot_traversals("dsprites", n_examples, seed=seed, scale=scale, base=[0, 2, 5, 5, 16, 16])
plt.show()

# %% [markdown]
# ## 3D faces
#
# Lighting changes only the shading: the silhouette (non-black pixels) stays fixed, whereas azimuth and
# elevation move it. Identities differ in head shape, features, skin and hair.

# %% tags=["hide-input"]
fig = P.plot_traversals("faces3d", n_examples, seed=seed, scale=scale)
plt.show()
fig = P.plot_light_and_silhouette(seed=seed, identity=1, scale=scale)
plt.show()

# %% [markdown]
# ## cars3d
#
# Azimuth turns the car through a full circle (15 degree steps); elevation raises the camera from the
# side to 30 degrees above.

# %% tags=["hide-input"]
fig = P.plot_traversals("cars3d", n_examples, seed=seed, scale=scale)
plt.show()

# %% [markdown]
# ## Loading through the cache
#
# `load` builds a dataset once, writes it atomically into the cache with its hash, and memory-maps it
# afterwards. At small and medium scale we build sub-grids (every `position_step`-th position, a few
# identities); at paper scale (`full = True`) the full sets (about 15 s for dSprites, a few minutes for
# faces and cars on two cores).

# %% tags=["hide-input"]
if full:
    subgrids = {"dsprites": None, "faces3d": None, "cars3d": None}
else:
    subgrids = {
        "dsprites": {"orientation": list(range(0, 40, 5)), "posX": list(range(0, 32, position_step)),
                     "posY": list(range(0, 32, position_step))},
        "faces3d": {"identity": list(range(n_identities)), "azimuth": list(range(0, 21, 5)),
                    "elevation": [2, 5, 8], "lighting": [0, 5, 10]},
        "cars3d": {"identity": list(range(2 * n_identities)), "azimuth": list(range(0, 24, 3)),
                   "elevation": [0, 2]},
    }
loaded = {}
for name, sub in subgrids.items():
    t = time.perf_counter()
    loaded[name] = D.load(name, subgrid=sub, seed=seed)
    print(f"{loaded[name]!r}  ({time.perf_counter() - t:.1f} s)")

# %% tags=["hide-input"]
for name, ds in loaded.items():
    fig = P.plot_random_samples(ds, n_random, seed=seed, scale=scale)
    plt.show()

# %% [markdown]
# The MIG estimator conditions on one factor at a time; `fixed_factor_indices` returns the images with
# one factor held at one class, and `RandomBatchSampler` draws training batches (keeping the whole
# uint8 set on the GPU when there is one).

# %% tags=["hide-input"]
ds = loaded["dsprites"]
sub = ds.fixed_factor_indices("shape", 2)
print(f"{len(sub)} of {len(ds)} images have shape class 2 (heart);",
      "all hearts:", bool((ds.index_to_classes(sub)[:, 1] == 2).all()))
batch, idx = D.RandomBatchSampler(ds, 32, seed=seed).sample()
print("batch", tuple(batch.shape), batch.dtype, "range", float(batch.min()), float(batch.max()))
