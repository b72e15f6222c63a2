"""Why the U-Net lost flux on bright galaxies: units versus signal-to-noise ratio.

Trains the U-Net (or takes a fitted one, ``--model``, a cloudpickle of a fitted
``Deblender``) and predicts the same test blends three ways:

* as they are;
* in other units: blend and noise sigma times ``f`` (labels times ``f``): the network's
  inputs are ratios of ADU, so the prediction must be ``f`` times the first;
* brighter at the same noise: ``blend + (f - 1) * sum_k y_k`` (labels times ``f``; the
  Poisson noise of the added light is left out): the same scenes at a higher
  signal-to-noise ratio, the situation of brighter galaxies.

Prints the primary score and the median predicted / true flux in r for each::

    python submissions/unet/diagnose_snr.py --data data --seconds 240 --n-test 80
    python submissions/unet/diagnose_snr.py --model fitted.pkl
"""
from __future__ import annotations

import argparse
import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from deblendkit.deblend.blendset import load_split  # noqa: E402
from deblendkit.scoring.metrics import deblend_scores  # noqa: E402


class _Blends:
    """The attributes of a BlendSet that the U-Net reads, with other blend and sigma arrays."""

    def __init__(self, X, blend, sigma):
        self.blend, self.noise_sigma = blend, sigma
        self.psf, self.centers = np.asarray(X.psf), np.asarray(X.centers)
        self.n_galaxies, self.bands = np.asarray(X.n_galaxies), X.bands

    def __len__(self):
        return len(self.blend)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parents[1] / "data"))
    ap.add_argument("--model", help="cloudpickle of a fitted Deblender (else one is trained)")
    ap.add_argument("--seconds", type=float, default=240.0, help="training budget when no --model")
    ap.add_argument("--n-train", type=int, default=1067, help="training blends (one CV fold's worth)")
    ap.add_argument("--n-test", type=int, default=80)
    ap.add_argument("--factors", default="10,100")
    args = ap.parse_args(argv)
    if args.model:
        model = pickle.loads(Path(args.model).read_bytes())
    else:
        spec = importlib.util.spec_from_file_location("submission_unet_deblender", HERE / "deblender.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        X, y = load_split(Path(args.data) / "train.h5")
        model = module.Deblender(max_train_seconds=args.seconds, num_threads=1)
        model.fit(X[:args.n_train], np.asarray(y[:args.n_train]))
    Xt, yt = load_split(Path(args.data) / "test.h5")
    Xt, yt = Xt[:args.n_test], np.asarray(yt[:args.n_test])
    blend, sigma = np.asarray(Xt.blend, np.float32), np.asarray(Xt.noise_sigma, np.float32)
    r = list(Xt.bands).index("r")
    cases = [("as is", 1.0, blend, sigma)]
    for f in (float(v) for v in args.factors.split(",")):
        cases.append((f"units x{f:g}", f, blend * np.float32(f), sigma * np.float32(f)))
        cases.append((f"brighter x{f:g}", f, (blend + (f - 1) * yt.sum(axis=1)).astype(np.float32), sigma))
    for label, f, b, s in cases:
        pred = model.predict(_Blends(Xt, b, s))
        real, per_galaxy = deblend_scores(yt * np.float32(f), pred)
        ft = (yt * f)[real][:, r].sum(axis=(-2, -1))
        fp = pred[real][:, r].sum(axis=(-2, -1))
        ok = ft > 0
        print(f"{label:16s} score {per_galaxy.mean():.4f}  median F_pred / F_true (r) {np.median(fp[ok] / ft[ok]):.3f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
