"""Shared fixtures of the benchmark suites (run: python -m pytest bench/ --benchmark-only)."""
import os

import pytest

SHARED_MODELS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "models", "imagenet-int8")


def shared_model_path(name):
    """Path of a shared ImageNet int8 model's json; skips the bench when absent."""
    path = os.path.join(SHARED_MODELS, name + ".json")
    if not os.path.exists(path):
        pytest.skip(f"{path} not found (the shared models sit next to the repository)")
    return path
