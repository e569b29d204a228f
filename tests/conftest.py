"""Shared fixtures. Tests needing ../shared skip where it is absent (a user's
fresh clone), never in CI (CI=true), where it is always present."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_MODELS = os.path.join(os.path.dirname(REPO), "shared", "models", "imagenet-int8")
PAPER_MODELS = ("mbv2-w0.35", "mcunet-5fps", "proxyless-w0.3")
IN_CI = os.environ.get("CI") == "true"


def require(condition, reason):
    """Skips with reason when condition is false, except in CI where it fails."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def shared_models_dir():
    require(os.path.isdir(SHARED_MODELS), f"{SHARED_MODELS} not found (../shared sits beside the repository)")
    return SHARED_MODELS


def shared_model_json(name):
    require(os.path.isdir(SHARED_MODELS), f"{SHARED_MODELS} not found (../shared sits beside the repository)")
    return os.path.join(SHARED_MODELS, name + ".json")

