"""Host forward executor: runs a Model's ops in order with the C kernels."""
import numpy as np

from . import kernels, quant
from .errors import UnsupportedOpError
from .graph import Add, AvgPool2D, Conv2D, FullyConnected, Mean, Reshape, Softmax


def _clamp(op, t_out):
    return quant.activation_range(op.activation, t_out.scale, t_out.zero_point)


def _conv(model, op, x):
    t_in, t_out = model.tensors[op.inputs[0]], model.tensors[op.output]
    m, s = quant.conv_multipliers(t_in.scale, op.w_scales, t_out.scale)
    lo, hi = _clamp(op, t_out)
    return kernels.conv2d(x, op.weight, op.bias, m, s, stride=op.stride, padding=op.padding,
                          dilation=op.dilation, input_offset=-t_in.zero_point,
                          output_offset=t_out.zero_point, act_min=lo, act_max=hi,
                          depthwise=op.depthwise)


def _fc(model, op, x):
    t_in, t_out = model.tensors[op.inputs[0]], model.tensors[op.output]
    scales = np.broadcast_to(np.asarray(op.w_scales, np.float32), (op.weight.shape[0],))
    m, s = quant.conv_multipliers(t_in.scale, scales, t_out.scale)
    lo, hi = _clamp(op, t_out)
    y = kernels.fully_connected(x.reshape(-1, op.weight.shape[1]), op.weight, op.bias, m, s,
                                input_offset=-t_in.zero_point, output_offset=t_out.zero_point,
                                act_min=lo, act_max=hi)
    return y.reshape((x.shape[0],) + t_out.shape[1:])


def _add(model, op, a, b, mask_out=None):
    t1, t2, t_out = (model.tensors[n] for n in (*op.inputs, op.output))
    lo, hi = _clamp(op, t_out)
    params = quant.add_params(t1.scale, t1.zero_point, t2.scale, t2.zero_point, t_out.scale,
                              t_out.zero_point, lo, hi)
    return kernels.add(a, b, params, mask_out=mask_out)


def _avgpool(model, op, x):
    t_out = model.tensors[op.output]
    lo, hi = _clamp(op, t_out)
    return kernels.avgpool2d(x, op.filter, stride=op.stride, padding=op.padding, act_min=lo,
                             act_max=hi)


def _mean(model, op, x):
    t_in, t_out = model.tensors[op.inputs[0]], model.tensors[op.output]
    params = quant.mean_params(t_in.scale, t_in.zero_point, t_out.scale, t_out.zero_point)
    y = kernels.mean_hw(x, params)
    return y.reshape((x.shape[0],) + t_out.shape[1:])


def _softmax(model, op, x):
    t_in = model.tensors[op.inputs[0]]
    return kernels.softmax(x, quant.softmax_params(t_in.scale, op.beta))


def run_op(model, op, args, mask_out=None):
    """Executes one op on its int8 input arrays; returns the int8 output.
    mask_out (an Add only): a uint8 buffer the kernel fills with the
    output's packed clamp mask (tinyqt.kernels)."""
    if mask_out is not None and not isinstance(op, Add):
        raise UnsupportedOpError(f"op '{op.name}': run_op writes clamp masks for adds only")
    if isinstance(op, Conv2D):
        return _conv(model, op, args[0])
    if isinstance(op, FullyConnected):
        return _fc(model, op, args[0])
    if isinstance(op, Add):
        return _add(model, op, args[0], args[1], mask_out)
    if isinstance(op, AvgPool2D):
        return _avgpool(model, op, args[0])
    if isinstance(op, Mean):
        return _mean(model, op, args[0])
    if isinstance(op, Reshape):
        t_out = model.tensors[op.output]
        return args[0].reshape((args[0].shape[0],) + t_out.shape[1:])
    if isinstance(op, Softmax):
        return _softmax(model, op, args[0])
    raise UnsupportedOpError(f"op '{op.name}': no host executor for {type(op).__name__}")


def run_forward(model, x, return_all=False):
    """Runs every op of model in order on x (int8, batch first)."""
    model.check_input(x)
    values = {model.inputs[0]: np.ascontiguousarray(x)}
    for op in model.ops:
        values[op.output] = run_op(model, op, [values[n] for n in op.inputs])
    if return_all:
        return values
    return values[model.outputs[0]]
