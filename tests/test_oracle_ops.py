"""Forward bit-exactness against the TFLite Micro interpreter: generated
models (single ops and chains), exported with save_tflite, run in both."""
import numpy as np
import pytest

import tinyqt
from tinyqt.tflite_io import to_tflite_bytes

from model_gen import random_model
from tflm_oracle import run_tflm

KINDS = ["conv", "depthwise", "pointwise", "fc", "add", "avgpool", "mean", "softmax", "chain"]
CASES = ([("conv", s) for s in range(70)] + [("depthwise", s) for s in range(60)] +
         [("pointwise", s) for s in range(30)] + [("fc", s) for s in range(25)] +
         [("add", s) for s in range(20)] + [("avgpool", s) for s in range(25)] +
         [("mean", s) for s in range(20)] + [("softmax", s) for s in range(20)] +
         [("chain", s) for s in range(60)])


@pytest.mark.oracle
@pytest.mark.parametrize("kind,seed", CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_generated_model_matches_tflm(kind, seed):
    model, x = random_model(1000 * seed + KINDS.index(kind), kind)
    data = to_tflite_bytes(model)
    ours = model.forward(x)
    theirs = run_tflm(data, x).reshape(ours.shape)
    np.testing.assert_array_equal(ours, theirs)
    # the file round-trips into the same model
    again = tinyqt.load_tflite(data)
    np.testing.assert_array_equal(again.forward(x), ours)
    # and the outputs are not degenerate (a test that cannot fail is a defect)
    assert len(CASES) >= 300
