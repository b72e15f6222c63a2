"""What the sandbox tests share: whether bubblewrap can start here, and the marks that follow from it."""
from __future__ import annotations

import os

import pytest

from deblendkit.errors import SandboxError
from deblendkit.ramp.sandbox import check_sandbox


def sandbox_available() -> bool:
    """True when the kit's bubblewrap sandbox can start on this machine."""
    try:
        check_sandbox()
    except SandboxError:
        return False
    return True


#: Slow, and skipped where bubblewrap cannot start, except in CI (which installs it: there it must run).
SANDBOX_MARKS = [pytest.mark.slow, pytest.mark.skipif(not sandbox_available() and not os.environ.get("CI"),
                                                      reason="bubblewrap cannot start here (CI installs it)")]
