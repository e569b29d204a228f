"""Quantization arithmetic exactly as TFLite computes it on the host side:
Q31 multipliers from real scales, fused-activation clamp ranges, and the
parameter sets of ADD and SOFTMAX. All scales are taken as float32 (what a
.tflite file stores) and combined in float64, as TFLite does."""
import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def quantize_multiplier(real):
    """TFLite QuantizeMultiplier: real (float64) -> (Q31 multiplier, shift).

    Returns (0, 0) for real == 0. shift > 0 means a left shift."""
    real = float(real)
    if real == 0.0:
        return 0, 0
    if real < 0 or not math.isfinite(real):
        raise ValueError(f"quantize_multiplier: scale ratio must be positive and finite, got {real}")
    q, shift = math.frexp(real)
    q_fixed = int(round_half_away(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        shift = 30
        q_fixed = (1 << 31) - 1
    return q_fixed, shift


def round_half_away(x):
    """std::round semantics (ties away from zero)."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def f32(x):
    """The float32 value a .tflite file stores for x, as a Python float."""
    return float(np.float32(x))


def quantize_multipliers(reals):
    """Vectorized quantize_multiplier over a float64 array -> (int32
    multipliers, int32 shifts), identical to the scalar version elementwise."""
    reals = np.asarray(reals, dtype=np.float64)
    if not np.all(np.isfinite(reals)) or np.any(reals < 0):
        raise ValueError("quantize_multipliers: scale ratios must be positive and finite")
    q, shift = np.frexp(reals)
    scaled = q * float(1 << 31)
    q_fixed = np.where(scaled >= 0, np.floor(scaled + 0.5), -np.floor(-scaled + 0.5)).astype(np.int64)
    top = q_fixed == (1 << 31)
    q_fixed = np.where(top, q_fixed // 2, q_fixed)
    shift = np.where(top, shift + 1, shift).astype(np.int64)
    tiny = (shift < -31) | (reals == 0)
    big = shift > 30
    q_fixed = np.where(tiny, 0, np.where(big, (1 << 31) - 1, q_fixed))
    shift = np.where(tiny, 0, np.where(big, 30, shift))
    return q_fixed.astype(np.int32), shift.astype(np.int32)


def conv_multipliers(input_scale, weight_scales, output_scale):
    """Per-channel (multiplier, shift) int32 arrays for conv / FC layers:
    s_x * s_w[c] / s_y in double, from float32 scales (TFLite's
    PopulateConvolutionQuantizationParams)."""
    ws = np.asarray(weight_scales, dtype=np.float32).reshape(-1).astype(np.float64)
    return quantize_multipliers(f32(input_scale) * ws / f32(output_scale))


def activation_range(activation, scale, zero_point):
    """TFLite CalculateActivationRangeQuantized for int8: the clamp range of a
    fused activation 'NONE' | 'RELU' | 'RELU6' | 'RELU_N1_TO_1'."""
    scale = f32(scale)

    def q(f):
        return zero_point + int(round_half_away(float(np.float32(f) / np.float32(scale))))

    if activation == "NONE":
        return INT8_MIN, INT8_MAX
    if activation == "RELU":
        return max(INT8_MIN, q(0.0)), INT8_MAX
    if activation == "RELU6":
        return max(INT8_MIN, q(0.0)), min(INT8_MAX, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(INT8_MIN, q(-1.0)), min(INT8_MAX, q(1.0))
    raise ValueError(f"unknown fused activation {activation!r}")


def add_params(s1, z1, s2, z2, s_out, z_out, act_min, act_max):
    """tq_add_params field tuple for TFLite int8 ADD (left_shift 20)."""
    left_shift = 20
    s1, s2, s_out = f32(s1), f32(s2), f32(s_out)
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * s_out))
    return (-z1, -z2, z_out, m1, sh1, m2, sh2, mo, sho, left_shift, act_min, act_max)


def mean_params(s_in, z_in, s_out, z_out):
    """tq_mean_params field tuple for TFLite int8 MEAN over H, W."""
    m, sh = quantize_multiplier(f32(s_in) / f32(s_out))
    return (z_in, z_out, m, sh)


def softmax_params(input_scale, beta=1.0):
    """tq_softmax_params field tuple (input_multiplier, input_left_shift,
    diff_min) for int8 SOFTMAX: TFLite's PreprocessSoftmaxScaling and
    CalculateInputRadius with kScaledDiffIntegerBits = 5."""
    integer_bits = 5
    real = min(float(beta) * f32(input_scale) * (1 << (31 - integer_bits)), (1 << 31) - 1.0)
    mult, left_shift = quantize_multiplier(real)
    if left_shift < 0:
        raise ValueError(f"softmax: beta * input_scale = {beta * input_scale} is too small")
    max_input_rescaled = 1.0 * ((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift)
    return mult, left_shift, -int(math.floor(max_input_rescaled))
