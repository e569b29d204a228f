"""Datasets for fine-tuning: Fashion-MNIST IDX files and .npz archives, and
the conversion of uint8 images to a model's int8 NHWC input.

A Dataset holds uint8 images [N, H, W] or [N, H, W, C] and int64 labels;
`to_model_input` resizes (bilinear, align_corners=False), expands gray to
the model's channel count and quantizes with the input tensor's scale and
zero point (pixels are first mapped to [-1, 1], the paper's preprocessing).
"""
import gzip
import os
import struct
from dataclasses import dataclass

import numpy as np

from .errors import TinyQTError


class DataError(TinyQTError, ValueError):
    """A dataset is missing, malformed or does not fit the model."""


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self):
        return int(max(self.y_train.max(initial=0), self.y_test.max(initial=0))) + 1


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Reads an IDX file (optionally .gz) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims)) if dims else 1
    if len(raw) - header < count * dtype.itemsize:
        raise DataError(f"{path}: truncated: expected {count} values of shape {dims}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims).copy()


def _find_idx(folder, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            return p
    raise DataError(f"{folder}: {stem}[.gz] not found (Debian package dataset-fashion-mnist installs it)")


def load_fashion_mnist(folder=None):
    """Fashion-MNIST from a folder of IDX files (default: Debian's)."""
    folder = folder or FASHION_MNIST_DIR
    arrays = {k: read_idx(_find_idx(folder, stem)) for k, stem in FASHION_MNIST_FILES.items()}
    return Dataset(arrays["x_train"], arrays["y_train"].astype(np.int64),
                   arrays["x_test"], arrays["y_test"].astype(np.int64))


def load_npz(path):
    """An .npz with x_train, y_train, x_test, y_test (uint8 images HxW or
    HxWxC, integer labels 0..N-1). Loaded without pickles."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in FASHION_MNIST_FILES if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing} (need x_train, y_train, x_test, y_test)")
            arrays = {k: z[k] for k in FASHION_MNIST_FILES}
    except (OSError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: cannot read as .npz without pickles: {e}") from None
    for k in ("x_train", "x_test"):
        if arrays[k].dtype != np.uint8 or arrays[k].ndim not in (3, 4):
            raise DataError(f"{path}: {k} must be uint8 [N, H, W] or [N, H, W, C], got {arrays[k].dtype} {arrays[k].shape}")
    for k, xk in (("y_train", "x_train"), ("y_test", "x_test")):
        y = arrays[k]
        if y.ndim != 1 or y.shape[0] != arrays[xk].shape[0] or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
            raise DataError(f"{path}: {k} must be non-negative integers, one per image of {xk}")
    return Dataset(arrays["x_train"], arrays["y_train"].astype(np.int64),
                   arrays["x_test"], arrays["y_test"].astype(np.int64))


def load_dataset(source):
    """'fashion-mnist', a folder of Fashion-MNIST IDX files, or an .npz path."""
    if source == "fashion-mnist":
        return load_fashion_mnist()
    if os.path.isdir(source):
        return load_fashion_mnist(source)
    if source.endswith(".npz"):
        return load_npz(source)
    raise DataError(f"unknown data source '{source}': expected fashion-mnist, a folder of IDX files, or an .npz")


def resize_bilinear(images, size):
    """uint8 [N, H, W, C] -> float32 [N, size, size, C], bilinear with
    half-pixel centers (align_corners=False)."""
    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images.astype(np.float32)

    def axis(src, dst):
        pos = (np.arange(dst, dtype=np.float64) + 0.5) * src / dst - 0.5
        pos = np.clip(pos, 0, src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(h, size)
    x0, x1, fx = axis(w, size)
    img = images.astype(np.float32)
    top = img[:, y0][:, :, x0] * (1 - fx)[None, None, :, None] + img[:, y0][:, :, x1] * fx[None, None, :, None]
    bot = img[:, y1][:, :, x0] * (1 - fx)[None, None, :, None] + img[:, y1][:, :, x1] * fx[None, None, :, None]
    return top * (1 - fy)[None, :, None, None] + bot * fy[None, :, None, None]


def to_model_input(images, input_tensor):
    """uint8 images [N, H, W] or [N, H, W, C] -> int8 [N, R, R, C_model] for a
    model whose input tensor is [1, R, R, C_model] with (scale, zero_point).
    Pixels map to [-1, 1] (p / 127.5 - 1), then quantize."""
    if images.ndim == 3:
        images = images[..., None]
    _, r, r2, c_model = input_tensor.shape
    if r != r2:
        raise DataError(f"model input {input_tensor.shape} is not square")
    x = resize_bilinear(images, r)
    if x.shape[3] == 1 and c_model > 1:
        x = np.repeat(x, c_model, axis=3)
    elif x.shape[3] != c_model:
        raise DataError(f"images have {x.shape[3]} channels, the model expects {c_model}")
    real = x / np.float32(127.5) - np.float32(1.0)
    q = np.round(real / np.float32(input_tensor.scale)) + input_tensor.zero_point
    return np.clip(q, -128, 127).astype(np.int8)
