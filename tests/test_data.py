"""Dataset loading (IDX, npz) and conversion to a model's int8 input."""
import gzip
import os
import struct

import numpy as np
import pytest

from tinyqt.data import (FASHION_MNIST_DIR, DataError, load_dataset, load_npz, read_idx,
                         resize_bilinear, to_model_input)
from tinyqt.graph import Tensor


def _write_idx(path, arr, gz=False):
    code = {np.uint8: 0x08}[arr.dtype.type]
    raw = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)


def test_idx_roundtrip_and_errors(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(str(tmp_path / "a.idx"), a)
    _write_idx(str(tmp_path / "a.idx.gz"), a, gz=True)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a.idx")), a)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a.idx.gz")), a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(str(tmp_path / "bad"))
    raw = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "trunc").write_bytes(raw[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(str(tmp_path / "trunc"))


def test_fashion_mnist_folder(tmp_path):
    for name, arr in [("train-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8)),
                      ("train-labels-idx1-ubyte", np.arange(5, dtype=np.uint8)),
                      ("t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8)),
                      ("t10k-labels-idx1-ubyte", np.array([9, 1], np.uint8))]:
        _write_idx(str(tmp_path / (name + ".gz")), arr, gz=True)
    ds = load_dataset(str(tmp_path))
    assert ds.x_train.shape == (5, 28, 28) and ds.num_classes == 10


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR) and os.environ.get("CI") != "true",
                    reason="Debian dataset-fashion-mnist not installed")
def test_debian_fashion_mnist():
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.num_classes == 10 and np.bincount(ds.y_test).tolist() == [1000] * 10


def test_npz_validation(tmp_path):
    good = dict(x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array([0, 1, 2, 1]),
                x_test=np.zeros((2, 8, 8, 3), np.uint8), y_test=np.array([1, 0]))
    np.savez(tmp_path / "g.npz", **good)
    assert load_npz(str(tmp_path / "g.npz")).num_classes == 3
    np.savez(tmp_path / "m.npz", **{k: v for k, v in good.items() if k != "y_test"})
    with pytest.raises(DataError, match="missing arrays"):
        load_npz(str(tmp_path / "m.npz"))
    np.savez(tmp_path / "f.npz", **{**good, "x_train": good["x_train"].astype(np.float32)})
    with pytest.raises(DataError, match="x_train must be uint8"):
        load_npz(str(tmp_path / "f.npz"))
    np.savez(tmp_path / "o.npz", x_train=np.array([object()], dtype=object), y_train=good["y_train"],
             x_test=good["x_test"], y_test=good["y_test"])
    with pytest.raises(DataError, match="without pickles"):
        load_npz(str(tmp_path / "o.npz"))


def test_bilinear_resize_is_half_pixel():
    img = np.array([[[0], [255]]], np.uint8).reshape(1, 1, 2, 1).repeat(2, axis=1)
    out = resize_bilinear(img, 4)
    np.testing.assert_allclose(out[0, 0, :, 0], [0, 63.75, 191.25, 255])


def test_quantized_input_maps_pixels_to_minus_one_one():
    t = Tensor("in", (1, 4, 4, 3), 1 / 127.5, 0)
    imgs = np.array([[[0, 255], [128, 64]]], np.uint8)
    q = to_model_input(imgs, t)
    assert q.shape == (1, 4, 4, 3) and q.dtype == np.int8
    # pixel 0 -> -1.0 -> -127.5 LSB (either neighbour), 255 -> +127.5 -> 127 (clamped)
    assert q[0, 0, 0, 0] in (-128, -127) and q[0, 0, 3, 0] == 127
    real = resize_bilinear(imgs[..., None], 4) / 127.5 - 1
    assert np.abs(q[..., :1] * t.scale - real).max() <= 0.5 * t.scale + 1e-6
