"""Tests of the package's forward model ``deblendkit.deblend.forward_model``.

The algorithm's own tests load it through the submission that re-exports it
(``tests/submissions/test_submission_forward_model.py``,
``tests/submissions/test_forward_model_batched.py``); these check the package
side: the submission's names are the package's objects, the code needs only
numpy and scipy, the class pickles by reference, and one fit through the
package API.
"""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import cloudpickle
import numpy as np
from rampwf.utils.importing import import_module_from_source

import deblendkit.deblend.forward_model as package
from deblendkit.deblend.forward_model import FitOptions, fit_blend
from tests.helpers.synthetic_blends import make_synthetic_blends

_ROOT = Path(__file__).resolve().parents[2]
_PACKAGE_DIR = _ROOT / "deblendkit" / "deblend" / "forward_model"

_SUBMISSION = _ROOT / "submissions" / "forward_model" / "deblender.py"

fm = import_module_from_source(str(_SUBMISSION), "deblender", sanitize=True)


def test_the_submission_re_exports_the_package_objects_themselves():
    assert fm.Deblender is package.Deblender
    imported = []
    for node in ast.parse(_SUBMISSION.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            assert node.module.startswith("deblendkit.deblend.forward_model."), node.module
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert getattr(fm, alias.name) is getattr(module, alias.name), alias.name
                imported.append(alias.name)
        else:  # the docstring, the imports and __all__: nothing defined there
            assert isinstance(node, ast.Assign | ast.Expr) and (isinstance(node, ast.Expr) or
                                                             node.targets[0].id == "__all__"), ast.dump(node)
    assert sorted(imported) == sorted(fm.__all__)
    # What is public in the submission is public in the package, and the same object.
    public = [n for n in fm.__all__ if not n.startswith("_")]
    assert sorted(public) == sorted(package.__all__)
    assert all(getattr(package, n) is getattr(fm, n) for n in public)


def test_the_package_code_imports_only_the_standard_library_numpy_and_scipy():
    roots = set()
    for path in sorted(_PACKAGE_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots.add(node.module.split(".")[0])
                if node.module.startswith("deblendkit"):  # itself, and the submission-facing API
                    assert node.module.startswith(("deblendkit.deblend.forward_model", "deblendkit.deblend.protocol")), (
                        path.name, node.module)
    assert roots - set(sys.stdlib_module_names) == {"numpy", "scipy", "deblendkit"}, roots


def test_a_deblender_pickles_by_reference_to_the_package():
    model = package.Deblender(max_iter=7)
    model.gain_ = np.array([2.0, np.inf])
    back = cloudpickle.loads(cloudpickle.dumps(model))
    assert type(back) is package.Deblender
    assert back.options == model.options and np.array_equal(back.gain_, model.gain_)


def test_the_models_of_two_overlapping_noiseless_galaxies_add_up_to_the_blend():
    X, y = make_synthetic_blends(1, seed=0, n_galaxies=2, max_galaxies=2, noise=False, min_separation=4.0,
                                 spread=4.0)
    blend = np.asarray(X.blend[0], dtype=np.float64)
    centers = np.asarray(X.centers[0], dtype=np.float64)
    assert np.hypot(*(centers[0] - centers[1])) < 6  # the galaxies overlap
    res = fit_blend(blend, X.psf[0], X.noise_sigma[0], centers, FitOptions())
    assert res.converged
    total = res.models.sum(axis=0)
    assert np.linalg.norm(total - blend) < 0.01 * np.linalg.norm(blend)
    # Flux conserved in every band, and shared out between the two galaxies as in the labels.
    np.testing.assert_allclose(total.sum(axis=(1, 2)), blend.sum(axis=(1, 2)), rtol=5e-3)
    for k in range(2):
        assert np.linalg.norm(res.models[k] - y[0, k]) < 0.05 * np.linalg.norm(y[0, k])
