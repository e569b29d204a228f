"""Backward kernels, optimizer and head on the device give the host's bits.

Test vectors are computed on the host with tinyqt.backward (the same C, built
for x86 through Cython); one firmware per (target, variant) runs every case
in QEMU (Cortex-M4 mps2-an386, M7 mps2-an500, M55 mps3-an547; DSP and
portable paths) and compares every output byte on the device: fp32
gradients, updated int8 weights and int32 biases, momentum buffers, fp32
master copies and the xorshift PRNG state. The Cortex-M0+ (soft-float, no
QEMU board) build is compiled and linked."""
import numpy as np
import pytest

import tinyqt.mcu.core as mcu
from tinyqt import backward as B
from tinyqt.mcu.bench import build_cases, run_cases
from tinyqt.mcu.backward_cases import (F32, bottleneck_case, c_conv_params, c_dims, c_sgd, c_state,
                                      forward_mask_case, fused_case, inplace_input_grad_case, input_grad_case,
                                      weight_grad_case)
from tinyqt.mcu.cgen import raw_case
from tinyqt.optim import SGD
from mcu_support import require_build_tools, require_qemu

pytestmark = pytest.mark.mcu

def _tiny_at(shape, at):
    """Gradient scales of the given shape: 1e-36 at flat positions at
    (along the one axis longer than 1), 1 elsewhere."""
    scale = np.ones(int(np.prod(shape)), np.float32)
    scale[list(at)] = 1e-36
    return scale.reshape(shape)


def _cases():
    rng = np.random.default_rng(2022)
    cases = [
        input_grad_case(rng, "conv3x3 s2 same input grad", 9, 8, 5, 7, 3, 2, (1, 1, 1, 1)),
        input_grad_case(rng, "conv5x5 s1 input grad", 7, 7, 3, 4, 5, 1, (2, 2, 2, 2)),
        input_grad_case(rng, "conv7x7 s2 valid input grad", 11, 9, 2, 3, 7, 2, (0, 0, 0, 0)),
        # RGB first layers: fp32 taps converted once, four output channels per loop step
        input_grad_case(rng, "conv3x3 s2 input grad, RGB to 16", 9, 11, 3, 16, 3, 2, (0, 1, 0, 1)),
        input_grad_case(rng, "conv7x7 s2 input grad, RGB to 16 (taps too many to convert)", 9, 9, 3, 16, 7, 2,
                        (3, 3, 3, 3)),
        input_grad_case(rng, "conv1x1 s1 input grad", 5, 6, 19, 13, 1, 1, (0, 0, 0, 0)),
        input_grad_case(rng, "conv1x1 s2 input grad, 40 out channels", 7, 9, 23, 40, 1, 2, (0, 0, 0, 0)),
        input_grad_case(rng, "conv1x1 input grad, subnormal terms", 4, 5, 8, 6, 1, 1, (0, 0, 0, 0),
                        g_scale=1e-36),
        # sparse masks: the output channels whose four pixels' gradients are all masked drop
        # out of a block's list (odd and even counts, a second channel tile of 5, an input
        # channel tail of 1, and blocks that keep none, which store zeros or leave the sums)
        input_grad_case(rng, "conv1x1 input grad, a sparse mask (25% pass)", 6, 9, 13, 37, 1, 1, (0, 0, 0, 0),
                        mask_range=(-65, 0)),
        input_grad_case(rng, "conv1x1 input grad without a mask (every channel in the blocks)", 6, 9, 13, 37, 1,
                        1, (0, 0, 0, 0), mask_range=None),
        input_grad_case(rng, "conv1x1 input grad, a mask that drops whole blocks (8% pass)", 10, 10, 8, 3, 1, 1,
                        (0, 0, 0, 0), mask_range=(-128, -108)),
        input_grad_case(rng, "conv1x1 input grad, sparse mask and subnormal terms at 3 of 48 pixels", 6, 8, 12,
                        40, 1, 1, (0, 0, 0, 0), g_scale=_tiny_at((1, 48, 1), (5, 30, 47)).reshape(1, 6, 8, 1),
                        mask_range=(-65, 0)),
        # subnormal gradients at a few pixels (input gradient) or output channels (weight
        # gradient) only: on M55 the Helium blocks that meet them fall back to the scalar
        # ones, between blocks that store their own sums
        input_grad_case(rng, "conv1x1 input grad, subnormal terms at 3 of 48 pixels", 6, 8, 12, 40, 1, 1,
                        (0, 0, 0, 0), g_scale=_tiny_at((1, 48, 1), (5, 30, 47)).reshape(1, 6, 8, 1)),
        weight_grad_case(rng, "conv1x1 weight grad, subnormal terms at 2 of 11 channels", 9, 9, 12, 11, 1, 1,
                         g_scale=_tiny_at((1, 1, 1, 11), (2, 9))),
        # depthwise: on M55 the Helium factor rows that meet a tiny gradient fall back to the
        # scalar ones (a K x K patch of tiny pixels: the input pixel at its centre sums tiny
        # terms only, which the scalar FPU keeps)
        input_grad_case(rng, "dw3x3 s1 input grad, subnormal terms in a 3x3 patch of 56 pixels", 7, 8, 8, 8, 3,
                        1, (1, 1, 1, 1), depthwise=True,
                        g_scale=_tiny_at((1, 56, 1), [8 * r + c for r in (2, 3, 4) for c in (2, 3, 4)]
                                         ).reshape(1, 7, 8, 1)),
        input_grad_case(rng, "dw5x5 s1 input grad, subnormal terms in a 5x5 patch of 64 pixels", 8, 8, 8, 8, 5,
                        1, (2, 2, 2, 2), depthwise=True,
                        g_scale=_tiny_at((1, 64, 1), [8 * r + c for r in range(1, 6) for c in range(1, 6)]
                                         ).reshape(1, 8, 8, 1)),
        input_grad_case(rng, "dw3x3 s2 input grad, subnormal terms at 2 of 20 pixels", 8, 10, 8, 8, 3, 2,
                        (1, 1, 1, 1), depthwise=True,
                        g_scale=_tiny_at((1, 20, 1), (3, 16)).reshape(1, 4, 5, 1)),
        weight_grad_case(rng, "conv1x1 weight grad", 9, 7, 13, 11, 1, 1),
        # rows of 8 channels whose mask bits are one byte (an Arm FPU's gather loop), or no mask
        weight_grad_case(rng, "conv1x1 weight grad, 16 out channels", 9, 7, 13, 16, 1, 1),
        weight_grad_case(rng, "conv1x1 weight grad, 24 out channels, no mask", 5, 6, 9, 24, 1, 1, masked=False),
        weight_grad_case(rng, "conv3x3 weight grad, 16 out channels", 6, 7, 5, 16, 3, 1, (1, 1, 1, 1)),
        weight_grad_case(rng, "conv1x1 s2 weight grad, subnormal terms", 8, 9, 8, 5, 1, 2, g_scale=1e-36),
        # 2 input rows under a 7x7 window: most taps reach no pixel (their rows must be zeros)
        weight_grad_case(rng, "conv7x7 s2 weight grad, taps off the map, 3 channels", 2, 9, 3, 10, 7, 2,
                         (3, 3, 3, 3)),
        weight_grad_case(rng, "dw3x3 s2 weight grad", 9, 8, 6, 6, 3, 2, (1, 1, 1, 1), depthwise=True),
        # 72 output pixels: the last tile (the bottom row) reaches no bottom tap, whose rows
        # still get the input scale
        weight_grad_case(rng, "conv3x3 weight grad, last tile misses the bottom taps", 9, 8, 5, 6, 3, 1,
                         (1, 1, 1, 1)),
        input_grad_case(rng, "dw3x3 s1 input grad", 8, 7, 11, 11, 3, 1, (1, 1, 1, 1), depthwise=True),
        # stride 1 on an Arm FPU: factor rows padded with zero columns feed one loop over a
        # whole input row and all its output rows (3x3; up to 7 wide, each filter row in chunks
        # of at most 3 taps); rows too wide to pad keep the edge pixels apart
        input_grad_case(rng, "dw3x3 s1 valid input grad", 6, 9, 8, 8, 3, 1, (0, 0, 0, 0), depthwise=True),
        input_grad_case(rng, "dw3x3 s1 input grad, padding 0/2", 5, 6, 4, 4, 3, 1, (0, 0, 2, 2),
                        depthwise=True),
        input_grad_case(rng, "dw3x3 s1 input grad, rows too wide to pad", 3, 42, 4, 4, 3, 1, (1, 1, 1, 1),
                        depthwise=True),
        input_grad_case(rng, "dw5x5 s1 input grad, 13 channels", 8, 8, 13, 13, 5, 1, (2, 2, 2, 2),
                        depthwise=True),
        input_grad_case(rng, "dw7x7 s1 input grad on a 4x4 map", 4, 4, 8, 8, 7, 1, (3, 3, 3, 3), depthwise=True),
        # even windows: chunks of 3 + 1 and 2 taps, padding 0 on one side and 3 on the other
        input_grad_case(rng, "dw4x4 s1 input grad, padding 1/2", 6, 7, 8, 8, 4, 1, (1, 1, 2, 2), depthwise=True),
        input_grad_case(rng, "dw4x4 s1 input grad, padding 0/3", 5, 6, 4, 4, 4, 1, (0, 0, 3, 3), depthwise=True),
        input_grad_case(rng, "dw2x2 s1 input grad, padding 0/1", 5, 5, 4, 4, 2, 1, (0, 0, 1, 1), depthwise=True),
        input_grad_case(rng, "dw7x7 s1 input grad, rows too wide to pad", 8, 17, 4, 4, 7, 1, (3, 3, 3, 3),
                        depthwise=True),
        input_grad_case(rng, "dw5x5 s2 input grad", 9, 9, 6, 6, 5, 2, (2, 2, 2, 2), depthwise=True),
        # strided gathers whose column classes run with their taps in registers
        input_grad_case(rng, "dw3x3 s2 input grad", 9, 10, 8, 8, 3, 2, (1, 1, 1, 1), depthwise=True),
        input_grad_case(rng, "dw4x4 s2 input grad, padding 0/1", 10, 9, 5, 5, 4, 2, (0, 0, 1, 1),
                        depthwise=True),
        input_grad_case(rng, "dw3x3 s3 input grad", 11, 11, 4, 4, 3, 3, (1, 1, 1, 1), depthwise=True),
        # column classes of 3 and 4 taps in up to 4 output rows, every member in one loop
        # over zero-padded factor rows (proxyless' and mcunet's 7x7 stride-2 layers)
        input_grad_case(rng, "dw7x7 s2 input grad on an 8x8 map", 8, 8, 8, 8, 7, 2, (3, 3, 3, 3), depthwise=True),
        input_grad_case(rng, "dw6x6 s2 input grad, padding 2/2", 9, 10, 4, 4, 6, 2, (2, 2, 2, 2), depthwise=True),
        fused_case(rng, "conv3x3 fused nearest", 7, 7, 4, 6, 3, 1, (1, 1, 1, 1), SGD(0.5)),
        fused_case(rng, "conv3x3 s2 fused stochastic momentum", 8, 9, 5, 4, 3, 2, (0, 0, 1, 1),
                    SGD(0.3, rounding="stochastic", momentum=0.9, seed=7)),
        fused_case(rng, "conv1x1 fused subset stochastic", 6, 5, 16, 9, 1, 1, (0, 0, 0, 0),
                    SGD(0.8, rounding="stochastic", seed=11), sel=[0, 3, 4, 9, 15]),
        fused_case(rng, "conv1x1 fused master no-QAS", 4, 4, 8, 5, 1, 1, (0, 0, 0, 0),
                    SGD(40.0, rounding="master", qas=False), bias=False),
        fused_case(rng, "dw3x3 fused master subset", 7, 6, 8, 8, 3, 1, (1, 1, 1, 1),
                    SGD(0.4, rounding="master", momentum=0.5), depthwise=True, sel=[1, 2, 6]),
        fused_case(rng, "dw7x7 s2 fused stochastic", 10, 10, 4, 4, 7, 2, (3, 3, 3, 3),
                    SGD(0.6, rounding="stochastic", seed=3), depthwise=True),
        # the streamed block backward; pw1's saved inputs in fp32 (x_f32): pairs (M4/M7) or
        # groups of four (M55) of channels, the last group 1, 2 or 3 wide; 81 pixels (two
        # pixel chunks: the second adds to stored sums), 35 and 42 (pixels left after the
        # blocks of four); the master copy shows every bit of the weight gradient
        bottleneck_case(rng, "block backward, x_f32, 9x9, 13 of 16 inputs", 9, 9, 16, 24, 8, 3, 1, 13, 8,
                        SGD(0.5, rounding="master"), x_f32=True),
        bottleneck_case(rng, "block backward, x_f32, 5x7, 10 of 12 inputs, tile tail", 5, 7, 12, 20, 6, 3, 1,
                        10, 16, SGD(0.5, rounding="master"), x_f32=True),
        bottleneck_case(rng, "block backward, x_f32, 6x7 s2, 7 inputs, stochastic", 6, 7, 7, 16, 9, 3, 2, 7, 8,
                        SGD(0.5, rounding="stochastic", seed=5), x_f32=True),
        bottleneck_case(rng, "block backward, x_f32, subnormal gradients", 5, 6, 8, 16, 8, 3, 1, 8, 16,
                        SGD(0.5, rounding="master"), x_f32=True, g_scale=1e-37),
        bottleneck_case(rng, "block backward, int8 inputs, 9x9, 13 of 16 inputs", 9, 9, 16, 24, 8, 3, 1, 13, 8,
                        SGD(0.5, rounding="master")),
    ]
    # the in-place depthwise input gradient (one buffer, a row ring as scratch)
    cases.append(inplace_input_grad_case(rng, "dw5x5 in-place input grad", 7, 6, 10, 5, (2, 2, 2, 2)))
    # 16 channels: whole mask bytes per pixel in the scaling pass, dense lanes
    cases.append(inplace_input_grad_case(rng, "dw3x3 in-place input grad, 16 channels", 6, 7, 16, 3,
                                         (1, 1, 1, 1)))
    # FC: input gradient, fused update (momentum), saturating at the int8 ends
    n_in, n_out = 23, 10
    x = rng.integers(-128, 128, (1, n_in), dtype=np.int8)
    wt = rng.integers(-127, 128, (n_out, n_in), dtype=np.int8)
    wt[0, :4] = (127, -127, 126, -126)
    g = rng.normal(0, 0.05, (1, n_out)).astype(F32)
    g[0, 0] = -5.0
    ws = rng.uniform(0.002, 0.01, n_out).astype(F32)
    gi = B.fc_backward_input(g, wt, ws)
    cases.append(raw_case("fc input grad", f"tq_fc_backward_input_f32(1, {n_in}, {n_out}, {{cn}}_ws, {{cn}}_g, "
                          "NULL, {cn}_w, gi)", {"ws": ws, "g": g, "w": wt}, {"gi": np.zeros_like(gi)}, {"gi": gi}))
    opt = SGD(2.0, momentum=0.9)
    sel = np.array([0, 1, 2, 3, 7, 20], np.int32)
    b = rng.integers(-3000, 3000, n_out, dtype=np.int32)
    state = opt.state_for(wt, sel=sel)
    before = {"w": wt.copy(), "b": b.copy(), "wm": state.w_momentum.copy(), "bm": state.b_momentum.copy(),
              "rng": opt.rng.copy()}
    w2, b2 = wt.copy(), b.copy()
    B.fc_backward_weight_update(g, np.ascontiguousarray(x[:, sel]), w2, b2, ws, opt, state, x_scale=F32(0.05),
                                x_zero_point=3, sel=sel)
    after = {"w": w2, "b": b2, "wm": state.w_momentum, "bm": state.b_momentum, "rng": opt.rng.copy()}
    cases.append(raw_case(
        "fc fused momentum saturating",
        f"tq_fc_backward_weight_update(-3, 0.0500000007f, {{cn}}_ws, 1, {n_in}, {n_out}, {len(sel)}, {{cn}}_sel, "
        f"{{cn}}_x, {{cn}}_g, NULL, w, b, {c_sgd(opt)}, {c_state('rng', 'wm', 'bm')}, scratch, scratch_size)",
        {"ws": ws, "sel": sel, "x": np.ascontiguousarray(x[:, sel]), "g": g}, before, after,
        scratch=4 * len(sel)))
    # QAS nearest update of every input channel (sel NULL, what the training plans pass),
    # with and without QAS: weights at the int8 ends and large steps (saturation), a NaN
    # gradient (its weight stays), and in channel 2 subnormal gradients over a scale just
    # above the smallest normal float, so that each delta is about one step: on M55 the
    # Helium groups that read them flush and fall back to the scalar update
    for qas in (True, False):
        n_in = 13
        wt = rng.integers(-127, 128, (3, 1, 1, n_in), dtype=np.int8)
        wt[0, 0, 0, :4] = (127, -127, 126, -126)
        g = rng.normal(0, 0.3, wt.shape).astype(F32)
        g[0, 0, 0, :4] = (-50.0, 50.0, -0.1, 0.1)
        g[1, 0, 0, 5] = np.nan
        ws = np.array([0.01, 0.02, 1.5e-38 if qas else 1.0], F32)
        g[2, 0, 0, :] = (rng.uniform(0.4, 0.9, n_in) * 1.1e-38).astype(F32)
        opt = SGD(1.0 if qas else 1e38)
        before = {"w": wt.copy(), "rng": opt.rng.copy()}
        w2 = wt.copy()
        B.sgd_update(w2, None, g, None, ws, F32(0.02), opt)
        assert (w2[2] != wt[2]).any()  # the subnormal gradients move channel 2
        cases.append(raw_case(
            f"sgd update nearest, all channels, {'QAS' if qas else 'no QAS'}",
            f"tq_sgd_update_conv({c_sgd(opt)}, {c_state()}, 0.0199999996f, {{cn}}_ws, {c_dims(wt.shape)}, w, "
            f"NULL, {n_in}, NULL, {{cn}}_g, NULL)", {"ws": ws, "g": g}, before, {"w": w2, "rng": opt.rng.copy()}))
    # nearest update at the rounding ties and the saturation edge (no QAS, lr 1, step 1:
    # each weight becomes round-half-away(w - g)), with the ties in every position of a
    # four-weight group and a saturating weight mid-group, checked against numpy too
    w0 = rng.integers(-100, 101, (2, 1, 1, 19), dtype=np.int8)
    v = np.array([0.5, -0.5, 1.5, -2.5, 0.49999997, -0.49999997, 126.5, -126.5, 127.49999, -127.49999,
                  127.5, 3.5, -1e30, 2.5000002, -0.50000006, 0.0, 64.5, -64.5, 1e-40], F32)
    wt = np.stack([w0[0], np.zeros_like(w0[0])])
    g = np.stack([rng.normal(0, 2, (1, 1, 19)).astype(F32), -v[None, None, :]])
    opt = SGD(1.0, qas=False)
    before = {"w": wt.copy(), "rng": opt.rng.copy()}
    w2 = wt.copy()
    B.sgd_update(w2, None, g, None, np.ones(2, F32), F32(1.0), opt)
    with np.errstate(over="ignore"):
        exact = np.sign(v) * np.floor(np.abs(v.astype(np.float64)) + 0.5)
    np.testing.assert_array_equal(w2[1, 0, 0], np.clip(exact, -127, 127).astype(np.int8))
    cases.append(raw_case("sgd update nearest, ties and saturation",
                          f"tq_sgd_update_conv({c_sgd(opt)}, {c_state()}, 1.0f, {{cn}}_ws, {c_dims(wt.shape)}, w, "
                          "NULL, 19, NULL, {cn}_g, NULL)", {"ws": np.ones(2, F32), "g": g}, before,
                          {"w": w2, "rng": opt.rng.copy()}))
    # bias-only update, stochastic
    opt = SGD(0.7, rounding="stochastic", seed=99)
    gb = rng.normal(0, 0.3, 12).astype(F32)
    ws = rng.uniform(0.002, 0.01, 12).astype(F32)
    b = rng.integers(-2**31 + 10, 2**31 - 10, 12, dtype=np.int64).astype(np.int32)
    before = {"b": b.copy(), "rng": opt.rng.copy()}
    B.sgd_update_bias(b, gb, ws, F32(0.03), opt)
    cases.append(raw_case("bias update stochastic", f"tq_sgd_update_bias({c_sgd(opt)}, {c_state()}, 0.0299999993f, "
                          "{cn}_ws, 12, b, {cn}_gb)", {"ws": ws, "gb": gb}, before,
                          {"b": b, "rng": opt.rng.copy()}))
    # pooling, mean, add backward
    g = rng.normal(0, 1, (1, 4, 3, 5)).astype(F32)
    gi = B.avgpool2d_backward(g, (1, 7, 6, 5), (3, 2), stride=(2, 2), padding=(1, 0, 1, 0))
    cases.append(raw_case("avgpool backward", "tq_avgpool_backward_f32(" + c_conv_params((2, 2), (1, 0, 1, 0)) +
                          f", 3, 2, {c_dims(g.shape)}, {{cn}}_g, NULL, {c_dims(gi.shape)}, gi)",
                          {"g": g}, {"gi": np.zeros_like(gi)}, {"gi": gi}))
    g = rng.normal(0, 1, (1, 1, 1, 9)).astype(F32)
    mask = B.clamp_mask(rng.integers(-128, 128, 9, dtype=np.int8), -60, 60)
    gi = B.mean_backward(g, (1, 5, 7, 9), mask=mask)
    cases.append(raw_case("mean backward masked", f"tq_mean_backward_f32({c_dims((1, 5, 7, 9))}, {{cn}}_g, "
                          "{cn}_mask, gi)", {"g": g, "mask": mask}, {"gi": np.zeros_like(gi)}, {"gi": gi}))
    g = rng.normal(0, 1, 37).astype(F32)
    mask = B.clamp_mask(rng.integers(-128, 128, 37, dtype=np.int8), -50, 127)
    ga, _ = B.add_backward(g, mask=mask)
    cases.append(raw_case("add backward masked", "tq_add_backward_f32(37, {cn}_g, {cn}_mask, ga, NULL)",
                          {"g": g, "mask": mask}, {"ga": np.zeros_like(ga)}, {"ga": ga.reshape(-1)}))
    # bias gradients alone: 16 channels (the FPU's mask-byte loop) masked and not, 13 (C)
    for name, shape, masked in (("bias backward masked c16", (1, 5, 3, 16), True),
                                ("bias backward c16", (1, 2, 7, 16), False),
                                ("bias backward masked c13", (1, 3, 3, 13), True)):
        g = rng.normal(0, 1, shape).astype(F32)
        g[0, 0, 0, :] = -0.0  # a -0.0 gradient, kept or masked
        mask = B.clamp_mask(rng.integers(-128, 128, g.size, dtype=np.int8), -60, 60) if masked else None
        gb = B.bias_backward(g, mask=mask)
        args = {"g": g, "mask": mask} if masked else {"g": g}
        cases.append(raw_case(name, f"tq_bias_backward_f32({c_dims(shape)}, {{cn}}_g, "
                              + ("{cn}_mask" if masked else "NULL") + ", gb)",
                              args, {"gb": np.full_like(gb, 7.0)}, {"gb": gb}))
    # the fp32 head: softmax cross-entropy, then backward + update with momentum
    feats = rng.normal(0, 1, (1, 16)).astype(F32)
    hw = rng.normal(0, 0.1, (6, 16)).astype(F32)
    hb = rng.normal(0, 0.1, 6).astype(F32)
    logits = B.linear(feats, hw, hb)
    loss, glog = B.softmax_cross_entropy(logits, np.array([4]))
    cases.append(raw_case("softmax xent", "tq_softmax_xent_f32(1, 6, {cn}_l, {cn}_y, loss, gl)",
                          {"l": logits, "y": np.array([4], np.int32)},
                          {"loss": np.zeros(1, F32), "gl": np.zeros_like(glog)},
                          {"loss": np.array([loss], F32), "gl": glog}))
    wm, bm = np.zeros_like(hw), np.zeros_like(hb)
    before = {"hw": hw.copy(), "hb": hb.copy(), "wm": wm.copy(), "bm": bm.copy(), "gi": np.zeros_like(feats)}
    gi = B.linear_backward_update(feats, glog, hw, hb, F32(0.1), momentum=F32(0.9), w_momentum=wm, b_momentum=bm)
    cases.append(raw_case("head backward update momentum",
                          "tq_linear_backward_update_f32(1, 16, 6, {cn}_x, {cn}_g, hw, hb, 0.100000001f, "
                          "0.899999976f, wm, bm, gi)", {"x": feats, "g": glog}, before,
                          {"hw": hw, "hb": hb, "wm": wm, "bm": bm, "gi": gi}))
    cases += [forward_mask_case(rng, "conv3x3 s2 forward + clamp mask", 9, 8, 5, 7, 3, 2, (1, 1, 1, 1)),
              forward_mask_case(rng, "conv1x1 forward + clamp mask, 37-bit tail", 1, 37, 12, 1, 1, 1, (0, 0, 0, 0)),
              forward_mask_case(rng, "conv1x1 forward + clamp mask", 5, 6, 19, 13, 1, 1, (0, 0, 0, 0)),
              forward_mask_case(rng, "dw3x3 forward + clamp mask", 8, 7, 11, 11, 3, 1, (1, 1, 1, 1),
                                depthwise=True)]
    return cases


@pytest.fixture(scope="module")
def cases():
    return _cases()


@pytest.mark.parametrize("target", ["m4", "m7", "m55"])
def test_backward_kernels_bit_exact_on_device(target, cases, tmp_path):
    require_qemu()
    # M55 also without Helium floating point (its fp32 blocks then run the scalar FPU)
    variants = ("dsp", "portable", "scalar-fp") if target == "m55" else ("dsp", "portable")
    recs = run_cases(cases, targets=(target,), variants=variants, out_dir=str(tmp_path), timeout=600)
    bad = [(r["variant"], r["case"], r["status"], r["detail"]) for r in recs if r["status"] != "OK"]
    assert not bad, bad
    assert len(recs) == len(variants) * len(cases)


def test_backward_kernels_build_for_cortex_m0plus(cases, tmp_path):
    require_build_tools()
    elf = build_cases(mcu.get_target("m0plus"), cases, "portable", out_dir=str(tmp_path))
    assert elf.exists() and elf.stat().st_size > 0


def test_non_finite_floats_reach_the_firmware_exactly_or_not_at_all():
    """The case generator writes the infinities and the default quiet NaN as
    GCC constants (the NaN gradient of the update cases above) and refuses a
    NaN whose payload no literal reproduces."""
    from tinyqt.mcu.cgen import c_array, c_float
    assert c_float(np.float32("nan")) == '__builtin_nanf("")'
    assert c_float(np.float32("-inf")) == "-__builtin_inff()"
    assert c_float(np.float32(-0.0)) == "-0.0f"
    payload = np.array([0x7FC00001], np.uint32).view(np.float32)
    with pytest.raises(ValueError, match="g: float32 0x7fc00001"):
        c_array("float", "g", payload)
