"""The greedy ensemble: its invariants (ramp-board's forward selection with replacement)."""
from __future__ import annotations

import numpy as np
import pytest

from deblendkit.errors import ConfigError, PredictionError
from deblendkit.scoring.ensemble import combine, greedy_selection, mean_contributivity, score_of_mean
from deblendkit.scoring.metrics import deblend_scores
from tests.helpers.synthetic_blends import make_synthetic_blends


@pytest.fixture(scope="module")
def labels():
    _, y = make_synthetic_blends(6, seed=3, noise=False)
    return y.astype(np.float32)


def _loaders(**arrays):
    return {name: (lambda a=a: a) for name, a in arrays.items()}


def _primary(y, p):
    return float(deblend_scores(y, p)[1].mean())


def test_an_ensemble_of_one_member_is_that_member(labels):
    p = labels * 0.8
    sel = greedy_selection(_loaders(a=p), labels)
    assert sel.picks == ("a",) and sel.weights == {"a": 1.0}
    assert sel.score == pytest.approx(_primary(labels, p), abs=1e-12)
    np.testing.assert_array_equal(combine(_loaders(a=p), sel.picks), p)


def test_a_member_with_itself_equals_it(labels):
    p = labels * 0.8 + 0.01
    sel = greedy_selection(_loaders(a=p, b=p.copy()), labels)
    assert sel.score == pytest.approx(_primary(labels, p), abs=1e-12)
    np.testing.assert_allclose(combine(_loaders(a=p, b=p.copy()), sel.picks), p, rtol=1e-6)
    assert sum(sel.weights.values()) == pytest.approx(1.0)


def test_perfect_and_zero_keep_the_perfect_one_alone(labels):
    sel = greedy_selection(_loaders(zero=np.zeros_like(labels), perfect=labels), labels)
    assert sel.picks == ("perfect",) and sel.score == pytest.approx(1.0)
    assert sel.weights == {"perfect": 1.0, "zero": 0.0}
    assert sel.single_scores["zero"] == 0.0


def test_two_complementary_members_beat_either(labels):
    # a is too bright, b too faint by the same factor: their mean is exact.
    a, b = labels * 1.5, labels * 0.5
    sel = greedy_selection(_loaders(a=a, b=b), labels)
    assert sorted(sel.picks) == ["a", "b"] and sel.score == pytest.approx(1.0, abs=1e-6)
    assert sel.score > max(sel.single_scores.values())
    assert sel.weights == {"a": 0.5, "b": 0.5}


def test_contributivities_sum_to_one_and_repeats_weigh(labels):
    a, b = labels * 1.2, labels * 0.4  # best mix is 2 a + 1 b = 0.933 y ... greedy repeats a member
    sel = greedy_selection(_loaders(a=a, b=b), labels, max_size=10)
    assert sum(sel.weights.values()) == pytest.approx(1.0)
    assert len(sel.picks) >= 2 and list(sel.history) == sorted(sel.history)
    np.testing.assert_allclose(
        combine(_loaders(a=a, b=b), sel.picks),
        (sel.picks.count("a") * a + sel.picks.count("b") * b) / len(sel.picks), rtol=1e-5)
    both = mean_contributivity([sel, greedy_selection(_loaders(a=a), labels)])
    assert sum(both.values()) == pytest.approx(1.0) and set(both) == {"a", "b"}


def test_the_order_of_members_does_not_change_the_result(labels):
    rng = np.random.default_rng(0)
    members = {n: labels * f + rng.normal(0, 0.01, labels.shape).astype(np.float32)
               for n, f in (("x", 0.7), ("y", 1.3), ("z", 1.0))}
    members["z2"] = members["z"].copy()  # an exact tie with z
    forward = greedy_selection(_loaders(**members), labels)
    backward = greedy_selection(_loaders(**dict(reversed(list(members.items())))), labels)
    assert forward == backward


def test_score_of_mean_matches_the_plain_mean(labels):
    a, b = labels * 1.1, labels * 0.7
    assert score_of_mean(labels, a + b, 2) == pytest.approx(_primary(labels, (a + b) / 2), abs=1e-9)
    assert score_of_mean(labels, a, 1, b) == pytest.approx(_primary(labels, (a + b) / 2), abs=1e-9)


def test_bad_members_are_refused_with_the_reason(labels):
    with pytest.raises(ConfigError, match=r"^an ensemble needs at least one member, got none$"):
        greedy_selection({}, labels)
    with pytest.raises(PredictionError, match=r"member 'b': predictions of shape \(5,"):
        greedy_selection(_loaders(a=labels, b=labels[:5]), labels)
    with pytest.raises(ConfigError, match=r"^max_size must be a positive integer, got 0$"):
        greedy_selection(_loaders(a=labels), labels, max_size=0)
    with pytest.raises(ConfigError, match=r"picks name members without predictions: \['c'\]"):
        combine(_loaders(a=labels), ["a", "c"])
    nan = labels.copy()
    nan[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(PredictionError):
        greedy_selection(_loaders(a=nan), labels)
