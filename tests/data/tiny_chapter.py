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
# # A tiny chapter used by the runner's tests

# %% tags=["parameters"]
scale = "small"
seed = 0
n = 3
fail = False

# %%
import os

import numpy as np

rng = np.random.default_rng(seed)
values = rng.normal(size=n)
if fail:
    raise RuntimeError("asked to fail")
print(f"scale={scale} n={n} sum={values.sum():.6f}")
print(f"threads={os.environ.get('OMP_NUM_THREADS')}")

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(3, 2))
ax.plot(values, "o-")
ax.set_title(f"tiny chapter ({scale} scale)")
plt.show()
