"""The registry of scene modes: ``config.mode`` names the function that simulates a blend.

Each mode is a function ``simulate(config, *, seed, split, index) -> BlendSample``,
deterministic in its arguments. :func:`simulate_scene` looks ``config.mode`` up
here instead of an if/else on the mode, so a new mode is one module and one
:func:`register_mode` call (plus its name in :data:`deblendkit.config.MODES`, which
validates ``SimConfig.mode``).

========= ==========================================================================
mode      function
========= ==========================================================================
``blend`` :func:`deblendkit.sim.blend_mode.simulate_blend_mode`: 2..K galaxies placed
          around the centre with a controlled overlap
``field`` :func:`deblendkit.sim.field_mode.simulate_field_mode`: a patch of simulated
          sky, blends from the number counts
========= ==========================================================================
"""
from __future__ import annotations

from collections.abc import Callable

from deblendkit.config import SimConfig
from deblendkit.errors import ConfigError
from deblendkit.sim.blend_mode import simulate_blend_mode
from deblendkit.sim.field_mode import simulate_field_mode
from deblendkit.sim.sample import BlendSample

__all__ = ["SimulateFn", "register_mode", "registered_modes", "mode_function", "simulate_scene"]

#: ``simulate(config, *, seed, split, index) -> BlendSample``.
SimulateFn = Callable[..., BlendSample]

_MODES: dict[str, SimulateFn] = {}


def register_mode(name: str, simulate_fn: SimulateFn) -> None:
    """Register ``simulate_fn`` as the simulator of mode ``name``.

    Raises
    ------
    ConfigError
        If ``name`` is not a non-empty string, ``simulate_fn`` is not callable, or
        the name is already registered (to another function).
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a mode name must be a non-empty string, got {name!r}", value=name)
    if not callable(simulate_fn):
        raise ConfigError(f"the simulator of mode {name!r} must be callable, got {simulate_fn!r}",
                          value=simulate_fn)
    if _MODES.get(name, simulate_fn) is not simulate_fn:
        raise ConfigError(f"mode {name!r} is already registered (to {_MODES[name].__name__})", value=name,
                          allowed=registered_modes())
    _MODES[name] = simulate_fn


def registered_modes() -> tuple[str, ...]:
    """Names of the registered modes, sorted."""
    return tuple(sorted(_MODES))


def mode_function(name: str) -> SimulateFn:
    """The simulator of mode ``name``; ConfigError naming the registered modes otherwise."""
    try:
        return _MODES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown mode {name!r}; allowed: {list(registered_modes())}", value=name,
                          allowed=registered_modes()) from None


def simulate_scene(config: SimConfig, *, seed: int, split: str, index: int) -> BlendSample:
    """Simulate blend ``index`` of ``split`` in the mode ``config.mode`` names.

    Deterministic in ``(config, seed, split, index)``: a blend is the same bytes
    whatever the number of workers or the chunking (see :mod:`deblendkit.sim.sample`).
    """
    return mode_function(config.mode)(config, seed=seed, split=split, index=index)


register_mode("blend", simulate_blend_mode)
register_mode("field", simulate_field_mode)
