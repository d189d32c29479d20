"""Shared fixtures. Real ALFWorld games come from $ALFWORLD_DATA (CI unpacks ../shared/alfworld).

Without the data, tests that need it skip with a reason locally and *fail* in CI (CI=true), so a
broken data set-up can never turn the suite green by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentprm.envs.games import DATA_SUBDIR, data_root


def _need_alfworld() -> Path:
    root = data_root()
    missing = [s for s in ("train", "valid_seen") if not (root / DATA_SUBDIR / s).is_dir()]
    try:
        import alfworld  # noqa: F401
        import textworld  # noqa: F401
    except ImportError:
        missing.append("the alfworld/textworld packages")
    if missing:
        msg = f"ALFWorld data/engine missing at {root}: {', '.join(missing)} (see README: ALFWORLD_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def alfworld_root() -> Path:
    """The ALFWorld data root; use in every test that plays real games."""
    return _need_alfworld()


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """Path of the seeded tiny random LM (built once per cache; seconds on CPU)."""
    from agentprm.models import tiny_dir

    return str(tiny_dir())
