"""The host's x86-64 AVX2 paths of the int8 conv, 1x1 and depthwise kernels give
the portable path's bytes, on generated shapes (channel tails of the 8-lane
blocks, pixel tails of the 4-pixel groups, strides, padding, dilation) and
requantization parameters that stress every lane-wise step (left shifts
that wrap, right shifts up to 31, negative accumulators at rounding ties).
The portable path itself is held to TFLite's reference by
test_kernels_reference.py and test_oracle_ops.py."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinyqt import _ckernels, kernels

AVX2 = _ckernels.host_simd_enable(True)
pytestmark = pytest.mark.skipif(not AVX2, reason="the host has no AVX2 (or is not x86-64): one path only")


def _both_paths(fn):
    try:
        assert _ckernels.host_simd_enable(True)
        fast = fn()
        assert not _ckernels.host_simd_enable(False)
        slow = fn()
    finally:
        _ckernels.host_simd_enable(True)
    return fast, slow


def _requant(rng, c, wild):
    if wild:  # any multiplier in [2^30, 2^31), shifts from a 31-bit right shift to a wrapping left shift
        m = rng.integers(1 << 30, (1 << 31) - 1, c, dtype=np.int64).astype(np.int32)
        s = rng.integers(-31, 9, c).astype(np.int32)
    else:  # what conv layers use
        m = rng.integers(1 << 30, (1 << 31) - 1, c, dtype=np.int64).astype(np.int32)
        s = rng.integers(-12, 1, c).astype(np.int32)
    return m, s


@settings(max_examples=120, deadline=None)
@given(depthwise=st.booleans(), n=st.integers(1, 2), h=st.integers(1, 9), w=st.integers(1, 9),
       c_in=st.integers(1, 41), c_out=st.integers(1, 41), k=st.sampled_from([1, 3, 5]),
       stride=st.sampled_from([1, 2]), dil=st.sampled_from([1, 1, 2]), wild=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_avx2_paths_give_the_portable_bytes(depthwise, n, h, w, c_in, c_out, k, stride, dil, wild, seed):
    rng = np.random.default_rng(seed)
    c_out = c_in if depthwise else c_out
    eff = (k - 1) * dil + 1
    pad = tuple(int(v) for v in rng.integers(0, eff, 4))  # k = 1: no padding, the 1x1 kernel
    h, w = max(h, eff - pad[0] - pad[2]), max(w, eff - pad[1] - pad[3])
    x = rng.integers(-128, 128, (n, h, w, c_in), dtype=np.int8)
    wt = rng.integers(-127, 128, (1, k, k, c_out) if depthwise else (c_out, k, k, c_in), dtype=np.int8)
    bias = rng.integers(-(1 << 20), 1 << 20, c_out, dtype=np.int32) if rng.random() < 0.8 else None
    m, s = _requant(rng, c_out, wild)
    lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2))
    kw = dict(stride=(stride, stride), padding=pad, dilation=(dil, dil), depthwise=depthwise,
              input_offset=int(rng.integers(-127, 129)), output_offset=int(rng.integers(-128, 128)),
              act_min=lo, act_max=hi)
    fast, slow = _both_paths(lambda: kernels.conv2d(x, wt, bias, m, s, **kw))
    assert fast.tobytes() == slow.tobytes()


def test_avx2_1x1_on_wide_layers_and_the_fallback_past_its_stack_limit():
    """Layers as wide as the zoo's last 1x1 (and one past the packed
    filter's 64 KB, which takes the portable path) agree too."""
    rng = np.random.default_rng(5)
    for c_in, c_out in ((96, 576), (320, 1280), (1100, 24)):
        x = rng.integers(-128, 128, (1, 3, 5, c_in), dtype=np.int8)
        wt = rng.integers(-127, 128, (c_out, 1, 1, c_in), dtype=np.int8)
        bias = rng.integers(-50000, 50000, c_out, dtype=np.int32)
        m, s = _requant(rng, c_out, False)
        fast, slow = _both_paths(lambda: kernels.conv2d(x, wt, bias, m, s, input_offset=7, output_offset=-3))
        assert fast.tobytes() == slow.tobytes()
