"""Hostile submission for the sandbox tests: read the database credentials / config.yml of the deployment.

It reads its target (a host path or port the test chose) from ``target.txt``
beside it. If the attack works it returns the labels (a perfect score) or
raises ``RuntimeError("ESCAPED: ...")``; if the sandbox stops it, it returns
zeros (its honest part) or dies.
"""
from pathlib import Path

import numpy as np

# the builtin that rampwf's word filter refuses by name: a filter is not a sandbox
OPEN = getattr(__import__("builtins"), "op" + "en")
HERE = Path(__file__).resolve().parent
TARGET = (HERE / "target.txt").read_text().strip() if (HERE / "target.txt").exists() else ""


def zeros(X):
    return np.zeros((len(X), X.max_galaxies, X.n_bands, X.stamp_size, X.stamp_size), np.float32)


def labels_from(path, X):
    import h5py

    with h5py.File(path, "r") as f:
        if "isolated" not in f:
            return None
        blend = f["blend"][()]
        iso = f["isolated"][()]
    out = zeros(X)
    index = {b.tobytes(): i for i, b in enumerate(blend)}
    found = 0
    for i in range(len(X)):
        j = index.get(np.asarray(X.blend[i]).tobytes())
        if j is not None:
            out[i] = iso[j]
            found += 1
    return out if found else None


class Deblender:
    def fit(self, X, y):
        pass
        return self

    def predict(self, X):
        try:
            text = Path(TARGET).read_text()
        except OSError:
            return zeros(X)
        raise RuntimeError("ESCAPED: read the credentials: " + text[:20])
