"""The TFLite Micro interpreter (PyPI tflite-micro) as the forward oracle."""
import numpy as np

from conftest import require

try:
    from tflite_micro.python.tflite_micro import runtime as _tflm
except ImportError:  # pragma: no cover - the skip/fail below reports it
    _tflm = None


def tflm_available():
    require(_tflm is not None, "tflite-micro is not installed (pip install tflite-micro)")


def run_tflm(tflite_bytes, x, arena_size=None):
    """Runs each image of x (int8, batch first) through TFLM; returns the
    stacked int8 outputs."""
    tflm_available()
    arena = arena_size or max(len(tflite_bytes) * 4, 1 << 20)
    interp = _tflm.Interpreter.from_bytes(bytes(tflite_bytes), arena_size=arena)
    outs = []
    for i in range(x.shape[0]):
        interp.set_input(np.ascontiguousarray(x[i:i + 1]), 0)
        interp.invoke()
        outs.append(interp.get_output(0).copy())
        interp.reset()
    return np.concatenate(outs, axis=0)
