"""Tests of deblendkit.sim.modes: the registry that maps ``config.mode`` to its simulator."""
from __future__ import annotations

import re

import numpy as np
import pytest

from deblendkit.config import MODES, SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim import modes
from deblendkit.sim.blend_mode import simulate_blend_mode
from deblendkit.sim.field_mode import simulate_field_mode


def test_every_mode_the_config_allows_is_registered():
    assert modes.registered_modes() == tuple(sorted(MODES))
    assert modes.mode_function("blend") is simulate_blend_mode
    assert modes.mode_function("field") is simulate_field_mode


@pytest.mark.parametrize("mode, fn", [("blend", simulate_blend_mode), ("field", simulate_field_mode)])
def test_simulate_scene_is_the_mode_s_function(mode, fn):
    config = SimConfig(mode=mode, bands=("r",), noise="none")
    a = modes.simulate_scene(config, seed=3, split="test", index=2)
    b = fn(config, seed=3, split="test", index=2)
    np.testing.assert_array_equal(a.blend, b.blend)
    np.testing.assert_array_equal(a.isolated, b.isolated)
    assert a.n_galaxies == b.n_galaxies


def test_the_two_modes_give_different_scenes():
    blend = modes.simulate_scene(SimConfig(bands=("r",)), seed=0, split="train", index=0)
    field = modes.simulate_scene(SimConfig(mode="field", bands=("r",)), seed=0, split="train", index=0)
    assert not np.array_equal(blend.blend, field.blend)
    assert np.all(blend.truth["labelled"] == 1) and np.any(field.truth["labelled"] == 0)


def test_unknown_mode_names_the_registered_ones():
    with pytest.raises(ConfigError, match=re.escape("unknown mode 'spiral'; allowed: ['blend', 'field']")) as info:
        modes.mode_function("spiral")
    assert info.value.value == "spiral" and info.value.allowed == ("blend", "field")
    with pytest.raises(ConfigError, match=re.escape("unknown mode ['blend']; allowed: ['blend', 'field']")):
        modes.mode_function(["blend"])  # unhashable: still a ConfigError


def test_register_mode_refuses_bad_names_functions_and_a_second_function_for_a_name(monkeypatch):
    monkeypatch.setattr(modes, "_MODES", dict(modes._MODES))  # leave the real registry alone
    with pytest.raises(ConfigError, match=re.escape("a mode name must be a non-empty string, got ''")):
        modes.register_mode("", simulate_blend_mode)
    with pytest.raises(ConfigError, match=re.escape("the simulator of mode 'x' must be callable, got 3")):
        modes.register_mode("x", 3)
    with pytest.raises(ConfigError, match=re.escape(
            "mode 'blend' is already registered (to simulate_blend_mode)")):
        modes.register_mode("blend", simulate_field_mode)
    modes.register_mode("blend", simulate_blend_mode)  # the same function again: a no-op

    def simulate_other(config, *, seed, split, index):
        return simulate_blend_mode(config, seed=seed + 1, split=split, index=index)

    modes.register_mode("other", simulate_other)
    assert modes.registered_modes() == ("blend", "field", "other")
    assert modes.mode_function("other") is simulate_other
