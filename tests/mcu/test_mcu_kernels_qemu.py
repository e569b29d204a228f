"""Host and device kernels are bit-identical: test vectors made on the host
with tinyqt.kernels run in one firmware per (target, variant) on QEMU
(Cortex-M4 mps2-an386, Cortex-M7 mps2-an500, Cortex-M55 mps3-an547; ARM DSP
and portable paths); every output byte is compared on the device, the first
mismatch is printed and the exit code is the number of failing cases. The
Cortex-M0+ firmware (no QEMU board) is built and linked only."""
import math

import numpy as np
import pytest

import tinyqt.mcu.core as mcu
from tinyqt import quant
from tinyqt.mcu.bench import build_cases, run_cases
from tinyqt.mcu.cgen import (add_case, avgpool_case, conv_case, fc_case, mean_case,
                             softmax_case)
from mcu_support import require_build_tools, require_qemu

pytestmark = pytest.mark.mcu

VARIANTS = ("dsp", "portable")


def _quant(rng, channels, k_eff, input_offset, spread=2.0):
    """Per-channel (multiplier, shift) that map the accumulator of k_eff
    products of (x + input_offset) * w to roughly the int8 range, jittered
    per channel so multipliers and shifts vary."""
    std = math.sqrt(k_eff) * 73.0 * math.sqrt(74.0 ** 2 + input_offset ** 2)
    mult = np.empty(channels, np.int32)
    shift = np.empty(channels, np.int32)
    for c in range(channels):
        real = 40.0 / std * rng.uniform(1.0 / spread, spread)
        mult[c], shift[c] = quant.quantize_multiplier(real)
    return mult, shift


def _conv(rng, name, h, w, c_in, c_out, k, stride=1, padding=(0, 0, 0, 0), dilation=1, batch=1,
          depthwise=False, input_offset=None, output_offset=None, bias=True, act=(-128, 127),
          kw=None, shifts=None, biases=None, mults=None):
    kh, kw = k, (kw or k)
    x = rng.integers(-128, 128, (batch, h, w, c_in), dtype=np.int8)
    if depthwise:
        wt = rng.integers(-127, 128, (1, kh, kw, c_out), dtype=np.int8)
        k_eff = kh * kw
    else:
        wt = rng.integers(-127, 128, (c_out, kh, kw, c_in), dtype=np.int8)
        k_eff = kh * kw * c_in
    if input_offset is None:
        input_offset = int(rng.integers(-127, 129))
    if output_offset is None:
        output_offset = int(rng.integers(-128, 128))
    b = rng.integers(-30000, 30000, c_out, dtype=np.int32) if bias else None
    if biases is not None:  # chosen biases, repeated over the channels
        b = np.resize(np.asarray(biases, np.int32), c_out)
    mult, shift = _quant(rng, c_out, k_eff, input_offset)
    if shifts is not None:  # right shifts, none, and left shifts (the vector requantizations' lanes)
        shift = np.resize(np.asarray(shifts, np.int32), c_out)
    if mults is not None:
        mult = np.resize(np.asarray(mults, np.int32), c_out)
    return conv_case(name, x, wt, b, mult, shift, stride=(stride, stride), padding=padding,
                     dilation=dilation if isinstance(dilation, tuple) else (dilation, dilation),
                     input_offset=input_offset,
                     output_offset=output_offset, act_min=act[0], act_max=act[1],
                     depthwise=depthwise)


def _same(h, k, s):
    """TFLite SAME padding (before, after) along one axis."""
    out = -(-h // s)
    total = max((out - 1) * s + k - h, 0)
    return total // 2, total - total // 2


def make_cases(seed=1234):
    rng = np.random.default_rng(seed)
    cases = []
    # 1x1 (pointwise): channel counts incl. non-multiples of 4, strides 1 and 2.
    for c_in, c_out, h, w, s in ((1, 1, 5, 7, 1), (3, 5, 7, 5, 1), (4, 8, 6, 6, 1),
                                 (5, 7, 9, 9, 2), (16, 17, 5, 5, 1), (33, 64, 3, 5, 1),
                                 (64, 70, 4, 4, 1), (70, 33, 7, 7, 2), (70, 70, 3, 3, 1),
                                 (17, 3, 11, 1, 2), (8, 16, 8, 8, 1),
                                 # the DSP path's unrolled input channel counts, over
                                 # more than one 32-pixel tile with a partial last block
                                 (16, 9, 7, 9, 1), (24, 13, 5, 9, 1), (32, 6, 7, 7, 1),
                                 (40, 5, 6, 7, 1), (48, 7, 9, 5, 1),
                                 # K = 8's assembly blocks: one block and a tail; a tile
                                 # of 8 blocks and one of a single pixel
                                 (8, 5, 1, 5, 1), (8, 6, 3, 11, 1)):
        cases.append(_conv(rng, f"pw{c_in}to{c_out}_{h}x{w}_s{s}", h, w, c_in, c_out, 1, s))
    cases.append(_conv(rng, "pw_batch2_nobias_relu", 5, 5, 12, 10, 1, batch=2, bias=False,
                       act=(-128, 0), input_offset=128, output_offset=-128))
    # dense conv: kernels 1 (dilated, so not the 1x1 kernel), 3, 5, 7; strides 1, 2;
    # SAME / VALID / asymmetric padding.
    for name, h, w, c_in, c_out, k, s, pad, dil in (
            ("conv1x1_dil2_s2", 9, 7, 3, 4, 1, 2, (0, 0, 0, 0), 2),
            ("conv3_s1_same_c1", 9, 9, 1, 4, 3, 1, None, 1),
            ("conv3_s2_same_c3", 15, 13, 3, 16, 3, 2, None, 1),
            ("conv3_s1_same_c3_k27_tiles", 9, 11, 3, 7, 3, 1, None, 1),
            ("conv3_s1_valid_c5", 7, 9, 5, 7, 3, 1, (0, 0, 0, 0), 1),
            ("conv3_s2_pad1_c17", 10, 10, 17, 9, 3, 2, (1, 1, 1, 1), 1),
            ("conv3_s1_dil2", 11, 9, 4, 5, 3, 1, (2, 2, 2, 2), 2),
            ("conv5_s1_same_c8", 8, 8, 8, 12, 5, 1, None, 1),
            ("conv5_s2_valid_c6", 13, 11, 6, 5, 5, 2, (0, 0, 0, 0), 1),
            ("conv7_s2_same_c3", 17, 17, 3, 8, 7, 2, None, 1),
            ("conv7_s1_asym", 9, 10, 2, 3, 7, 1, (3, 0, 2, 1), 1),
            ("conv3_s1_c70", 5, 5, 70, 6, 3, 1, None, 1),
            ("conv3_s2_c33_to70", 7, 7, 33, 70, 3, 2, None, 1),
            # window sizes that are whole 16-byte vectors (Helium path: no tail)
            ("conv3_s1_c16_k144", 6, 6, 16, 5, 3, 1, None, 1),
            ("conv1x1_dil2_c32_k32", 7, 7, 32, 6, 1, 1, (0, 0, 0, 0), 2)):
        if pad is None:
            ph, pw = _same(h, (k - 1) * dil + 1, s), _same(w, (k - 1) * dil + 1, s)
            pad = (ph[0], pw[0], ph[1], pw[1])
        cases.append(_conv(rng, name, h, w, c_in, c_out, k, s, pad, dil))
    cases.append(_conv(rng, "conv3_batch2_relu6_nobias", 6, 6, 4, 4, 3, 1, (1, 1, 1, 1),
                       batch=2, bias=False, act=(-128, 40)))
    cases.append(_conv(rng, "conv_1x3_kernel", 6, 8, 5, 4, 1, 1, (0, 1, 0, 1), kw=3))
    # RGB windows with rows two apart (dilation 2 down, 1 across): the Helium row copies
    # step down by the dilation
    cases.append(_conv(rng, "conv3_dil2x1_c3", 9, 8, 3, 6, 3, 1, (2, 1, 2, 1), dilation=(2, 1)))
    # depthwise: kernels 1, 3, 5, 7; strides 1, 2; channels 1..96; multiplier 2.
    for name, h, w, c, k, s, pad, mult in (
            ("dw3_s1_same_c1", 7, 7, 1, 3, 1, None, 1),
            ("dw3_s1_same_c5", 9, 7, 5, 3, 1, None, 1),
            ("dw3_s2_same_c16", 11, 11, 16, 3, 2, None, 1),
            ("dw3_s2_pad1_c48", 12, 12, 48, 3, 2, (1, 1, 1, 1), 1),
            ("dw3_s1_valid_c70", 6, 6, 70, 3, 1, (0, 0, 0, 0), 1),
            ("dw5_s1_same_c33", 9, 9, 33, 5, 1, None, 1),
            ("dw5_s2_same_c7", 10, 9, 7, 5, 2, None, 1),
            ("dw7_s1_same_c4", 8, 8, 4, 7, 1, None, 1),
            ("dw7_s2_same_c9", 13, 13, 9, 7, 2, None, 1),
            ("dw3_s1_mult2_c3", 6, 6, 3, 3, 1, (1, 1, 1, 1), 2),
            ("dw1_s1_c13", 4, 5, 13, 1, 1, (0, 0, 0, 0), 1),
            ("dw3_s1_c96_16x16", 16, 16, 96, 3, 1, (1, 1, 1, 1), 1)):
        if pad is None:
            ph, pw = _same(h, k, s), _same(w, k, s)
            pad = (ph[0], pw[0], ph[1], pw[1])
        cases.append(_conv(rng, name, h, w, c, c * mult, k, s, pad, depthwise=True))
    cases.append(_conv(rng, "dw3_batch2_relu_nobias", 5, 5, 6, 6, 3, 1, (1, 1, 1, 1), batch=2,
                       depthwise=True, bias=False, act=(-128, 0)))
    # every kind of requantization shift in one layer: right, none, left
    cases.append(_conv(rng, "dw3_mixed_shifts_c11", 6, 6, 11, 11, 3, 1, (1, 1, 1, 1), depthwise=True,
                       shifts=(-14, -1, 0, 1, 3, -20), act=(-100, 90)))
    cases.append(_conv(rng, "pw_mixed_shifts_c9", 5, 5, 21, 9, 1, shifts=(-15, 0, 2, -1, -25)))
    # the fast requantization's shift range [-23, -2] with the whole int8 range, and the
    # channels just outside it, in one 4-channel group (offset folded into the high word)
    cases.append(_conv(rng, "dw3_fast_rq_edges_c8", 7, 9, 8, 8, 3, 1, (1, 1, 1, 1), depthwise=True,
                       shifts=(-2, -23, -9, -5, -24, -1, -2, -23), output_offset=127))
    cases.append(_conv(rng, "pw_fast_rq_edges_c8", 5, 6, 8, 8, 1, shifts=(-2, -23, -24, -1, -12, -13, -14, -11),
                       output_offset=-128))
    # the doubled-sum requantization's bias bound (|bias| + K * 255 * 128 <= 2^29): at it,
    # and one past it (the six-instruction form), both signs, with shift -1 and -23
    for k_in in (8, 16):
        edge = (1 << 29) - k_in * 32640
        cases.append(_conv(rng, f"pw_rq2_bias_bound_k{k_in}", 3, 5, k_in, 6, 1, output_offset=-3,
                           biases=(edge, edge + 1, -edge, -edge - 1, 0, 5000), shifts=(-23, -23, -22, -23, -1, -1)))
    # shifts below -23 and biases past 2^29 (channels whose weights all but vanished):
    # where every output is the same, the doubled-sum form's multiplier 0 gives it; with
    # multiplier 2^30 and shift -24 a bias of 2^24 straddles a rounding step, so those
    # channels keep the general requantization
    h = 1 << 30
    cases.append(_conv(rng, "pw_rq2_constant_or_not_k8", 4, 6, 8, 8, 1, output_offset=-100,
                       biases=(1 << 24, -(1 << 24), (1 << 24) + 7000, 0, (1 << 31) - 300000, 1000, -2000, 3000),
                       shifts=(-24, -24, -24, -24, -30, -10, -11, -12), mults=(h, h, h, h, h, h + 5, h + 99, h + 7)))
    big = 1 << 28
    for k_in in (8, 16):
        cases.append(_conv(rng, f"pw_tiny_mult_k{k_in}", 3, 5, k_in, 8, 1, output_offset=-128,
                           biases=(5000, big, -big, 0, big, -(1 << 20), 700, -900),
                           shifts=(-24, -24, -29, -31, -23, -26, -10, -11)))
    cases.append(_conv(rng, "dw3_tiny_mult_c12", 6, 7, 12, 12, 3, 1, (1, 1, 1, 1), depthwise=True, output_offset=5,
                       biases=(300, 0, -7000, big, 5, -big, 0, 2, 40, -40, 400, -400),
                       shifts=(-24, -30, -28, -24, -26, -25, -31, -27, -9, -10, -11, -12)))
    # a dilated window that steps over a one-pixel-wide input: its taps miss the input
    # in every column, so only the (on the DSP path doubled) bias is left
    cases.append(_conv(rng, "dw3_dil2_no_tap_windows_c8", 3, 1, 8, 8, 3, 1, (2, 1, 2, 3), dilation=2,
                       depthwise=True))
    # rows of 16+ outputs, where Cortex-M55 takes its Helium path for 3x3 windows
    # (the DSP path elsewhere); their own generator keeps the other cases' data
    rng_rows = np.random.default_rng(seed + 1)
    cases.append(_conv(rng_rows, "dw3_s2_c8_rows17", 6, 34, 8, 8, 3, 2, (1, 1, 1, 1), depthwise=True))
    cases.append(_conv(rng_rows, "dw5_s1_c8_rows18", 5, 18, 8, 8, 5, 1, (2, 2, 2, 2), depthwise=True))
    # Cortex-M55's 8-channel 3x3 runs: channels 0-7 and 16-23 (shifts of none and right
    # ones, differing between even and odd channels), 8-15 back on 4-channel runs (a
    # left shift in channel 11), a 4-channel tail
    cases.append(_conv(rng_rows, "dw3_s1_c28_rows21_pairs", 3, 21, 28, 28, 3, 1, (1, 1, 1, 1), depthwise=True,
                       shifts=(-14, 0, -1, -9, -20, 0, -3, -7, -5, 0, -2, 1, -6, -8, 0, -12), act=(-100, 90)))
    # ... and 5x5 / 7x7 (3 output rows, padding (top, left, bottom, right) only at the sides)
    cases.append(_conv(rng_rows, "dw5_s1_c16_rows20_pairs", 7, 20, 16, 16, 5, 1, (0, 2, 0, 2), depthwise=True,
                       shifts=(-9, -7, -12, -8, -10)))
    cases.append(_conv(rng_rows, "dw7_s2_c16_rows15_pairs", 11, 30, 16, 16, 7, 2, (0, 3, 0, 3), depthwise=True,
                       shifts=(-11, -9, -13)))
    # right shifts of 1 and 2 beside each other on small accumulators, so that the
    # outputs do not saturate: a shift of 1 must not take the fast requantization
    for name, dw in (("pw_shift1_small_acc_c8", False), ("dw_shift1_small_acc_c8", True)):
        x = rng_rows.integers(-3, 4, (1, 6, 7, 8), dtype=np.int8)
        w = rng_rows.integers(-3, 4, (1, 3, 3, 8) if dw else (8, 1, 1, 8), dtype=np.int8)
        mult = rng_rows.integers(1 << 30, (1 << 31) - 1, 8, dtype=np.int64).astype(np.int32)
        shift = np.array([-1, -2, -1, -3, -2, -1, -2, -1], np.int32)
        pad = (1, 1, 1, 1) if dw else (0, 0, 0, 0)
        cases.append(conv_case(name, x, w, rng_rows.integers(-20, 21, 8, dtype=np.int32), mult, shift,
                               padding=pad, input_offset=1, output_offset=5, depthwise=dw))
    # a dilated depthwise window (clipped windows with taps 2 pixels apart)
    cases.append(_conv(rng, "dw3_dilation2_c12", 9, 10, 12, 12, 3, 1, (2, 2, 2, 2), dilation=2,
                       depthwise=True))
    # fully connected.
    for batches, n_in, n_out in ((1, 1, 1), (1, 7, 10), (3, 17, 5), (1, 64, 70), (2, 70, 13),
                                 (1, 280, 10)):
        x = rng.integers(-128, 128, (batches, n_in), dtype=np.int8)
        w = rng.integers(-127, 128, (n_out, n_in), dtype=np.int8)
        off = int(rng.integers(-127, 129))
        m, s = _quant(rng, n_out, n_in, off)
        b = rng.integers(-30000, 30000, n_out, dtype=np.int32) if n_in != 17 else None
        cases.append(fc_case(f"fc{batches}x{n_in}to{n_out}", x, w, b, m, s, input_offset=off,
                             output_offset=int(rng.integers(-128, 128))))
    # average pool.
    for name, shape, f, s, pad in (("avg2_s2_c5", (1, 8, 8, 5), (2, 2), 2, (0, 0, 0, 0)),
                                   ("avg3_s1_same_c7", (1, 7, 9, 7), (3, 3), 1, (1, 1, 1, 1)),
                                   ("avg3_s2_same_c16", (2, 9, 9, 16), (3, 3), 2, (1, 1, 1, 1)),
                                   ("avg_global7_c70", (1, 7, 7, 70), (7, 7), 1, (0, 0, 0, 0))):
        x = rng.integers(-128, 128, shape, dtype=np.int8)
        cases.append(avgpool_case(name, x, f, stride=(s, s), padding=pad))
    cases.append(avgpool_case("avg2_clamped", rng.integers(-128, 128, (1, 6, 6, 3), dtype=np.int8),
                              (2, 2), stride=(2, 2), act_min=-20, act_max=60))
    # mean over H, W: same and different quantization.
    for name, shape, qp in (("mean_same_c7", (1, 5, 5, 7), (0.05, 3, 0.05, 3)),
                            ("mean_requant_c70", (1, 7, 7, 70), (0.05, -10, 0.02, 5)),
                            ("mean_requant_b2_c3", (2, 4, 6, 3), (0.1, -128, 0.1, -128)),
                            ("mean_same_4x4_c96", (1, 4, 4, 96), (0.02, -128, 0.02, -128))):
        x = rng.integers(-128, 128, shape, dtype=np.int8)
        cases.append(mean_case(name, x, quant.mean_params(*qp)))
    # add.
    for name, size, qp in (("add_1", 1, (0.1, 0, 0.1, 0, 0.2, 0)),
                           ("add_17", 17, (0.05, -3, 0.08, 10, 0.1, -5)),
                           ("add_1000", 1000, (0.02, -128, 0.03, -128, 0.04, -128)),
                           # residual adds as in the paper's models: the larger input
                           # scale's term a halving (first or second input), the other's
                           # a right shift of 1 or 2, the output's about 19
                           ("add_residual_half1_600", 600, (0.05, -3, 0.03, 5, 0.06, -10)),
                           ("add_residual_half2_333", 333, (0.02, 7, 0.045, -128, 0.05, 3))):
        a = rng.integers(-128, 128, size, dtype=np.int8)
        b = rng.integers(-128, 128, size, dtype=np.int8)
        cases.append(add_case(name, a, b, quant.add_params(*qp, -128, 127)))
    cases.append(add_case("add_relu_300", rng.integers(-128, 128, 300, dtype=np.int8),
                          rng.integers(-128, 128, 300, dtype=np.int8),
                          quant.add_params(0.05, 2, 0.05, -2, 0.05, -20, -20, 127)))
    # softmax (the host may not implement it yet: then the device may say unsupported).
    for name, rows, depth, scale in (("softmax_1x10", 1, 10, 0.1), ("softmax_3x17", 3, 17, 0.05),
                                     ("softmax_2x100", 2, 100, 0.25)):
        x = rng.integers(-128, 128, (rows, depth), dtype=np.int8)
        cases.append(softmax_case(name, x, quant.softmax_params(scale)))
    return cases


@pytest.fixture(scope="module")
def cases():
    return make_cases()


@pytest.fixture(scope="module")
def device_results(cases, tmp_path_factory):
    """Every case on every runnable target and variant (6 firmwares, built and run in parallel)."""
    require_qemu()
    out = tmp_path_factory.mktemp("mcu_kernels")
    return run_cases(cases, targets=mcu.RUNNABLE_TARGETS, variants=VARIANTS, out_dir=out,
                     timeout=240)


def test_cases_cover_the_brief(cases):
    kinds = {c.kind for c in cases}
    assert {"conv", "1x1", "depthwise", "fc", "avgpool", "mean", "add", "softmax"} <= kinds
    chans = {c.params["in_dims"][3] for c in cases if c.kind in ("conv", "1x1", "depthwise")}
    assert 1 in chans and 70 in chans and any(ch % 4 for ch in chans)
    ks = {c.params["f_dims"][1] for c in cases if c.kind in ("conv", "1x1", "depthwise")}
    assert {1, 3, 5, 7} <= ks
    # outputs are not all saturated: the quantization keeps them informative
    for c in cases:
        if c.expected is not None and c.expected.size >= 16 and c.kind != "softmax":
            assert np.unique(c.expected).size > 4, c.name


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("target", mcu.RUNNABLE_TARGETS)
def test_device_matches_host(device_results, cases, target, variant):
    recs = [r for r in device_results if r["target"] == target and r["variant"] == variant]
    assert len(recs) == len(cases)
    allowed_skip = {c.name for c in cases if c.allow_unsupported}
    bad = [f"{r['case']}: {r['status']} {r['detail']}" for r in recs
           if r["status"] != "OK" and not (r["status"] == "SKIP" and r["case"] in allowed_skip)]
    assert not bad, f"{target}/{variant}: {len(bad)} failing case(s):\n" + "\n".join(bad)
    assert recs[0]["exit_code"] == 0


def test_softmax_on_device(device_results, cases):
    unsupported = [c.name for c in cases if c.kind == "softmax" and c.allow_unsupported]
    if unsupported:
        pytest.skip("tq_softmax_s8 returns TQ_ERR_UNSUPPORTED on the host (not implemented yet)")
    recs = [r for r in device_results if r["kind"] == "softmax"]
    assert recs and all(r["status"] == "OK" for r in recs), recs


@pytest.mark.parametrize("variant", VARIANTS)
def test_m0plus_firmware_builds(cases, variant, tmp_path):
    """No QEMU board has a Cortex-M0+: the same firmware is compiled and linked only."""
    require_build_tools()
    elf = build_cases("m0plus", cases, variant, out_dir=tmp_path)
    assert elf.is_file()
