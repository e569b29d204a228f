"""tinyqt: on-device training for microcontrollers.

int8 forward kernels bit-exact with TFLite Micro, in portable C shared by the
host (through Cython) and Cortex-M firmware.
"""
from .errors import (ArenaOverflowError, KernelError, ModelFormatError, ShapeError, TinyQTError,
                     UnsupportedOpError)
from .compiler import compile
from .from_torch import from_torch
from .graph import Model, Tensor
from .tflite_io import load_tflite, save_tflite, to_tflite_bytes
from .tiny_training import load_tiny_training

__version__ = "0.1.0"

__all__ = [
    "Model", "Tensor", "compile", "from_torch", "load_tiny_training", "load_tflite", "save_tflite", "to_tflite_bytes", "TinyQTError", "ModelFormatError", "UnsupportedOpError", "ShapeError",
    "KernelError", "ArenaOverflowError", "__version__",
]
