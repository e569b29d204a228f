"""int8 TFLite flatbuffers <-> the tinyqt graph IR.

Reading and writing go through the flatc-generated schema classes of the
`tflite` package and the `flatbuffers` builder: no code from the file is ever
executed. Supported: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD,
AVERAGE_POOL_2D, MEAN (over H, W), RESHAPE, SOFTMAX, and PAD in front of a
conv (folded into the conv's explicit padding); fused NONE / RELU / RELU6 /
RELU_N1_TO_1. Activations int8 per-tensor, weights int8 symmetric per output
channel (per-tensor accepted), biases int32.

The exporter writes SAME or VALID where the IR's explicit padding equals
what TFLite computes for them, and otherwise a PAD op (zero-point filled)
followed by a VALID conv, so every IR model has an exact TFLite twin.
"""

import flatbuffers
import numpy as np
import tflite

from .errors import ModelFormatError, UnsupportedOpError
from .graph import (ACTIVATIONS, Add, AvgPool2D, Conv2D, FullyConnected, Mean, Model, Reshape,
                    Softmax)

_OPS = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_ACT_CODES = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
_ACT_NAMES = {v: k for k, v in _ACT_CODES.items()}
_SUPPORTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D", "MEAN",
              "RESHAPE", "SOFTMAX", "PAD"}


# ----------------------------------------------------------------------------- padding

def same_padding(size, k, stride, dilation=1):
    """TFLite's SAME padding along one axis: (before, after)."""
    eff = (k - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _padding_kind(op_padding, in_shape, k, stride, dilation):
    """'SAME' / 'VALID' when the explicit padding is what TFLite computes for
    it, else None."""
    (h, w), (kh, kw) = in_shape, k
    pt, pl, pb, pr = op_padding
    if (pt, pl, pb, pr) == (0, 0, 0, 0):
        return "VALID"
    sh, sw = same_padding(h, kh, stride[0], dilation[0]), same_padding(w, kw, stride[1], dilation[1])
    if (pt, pb) == sh and (pl, pr) == sw:
        return "SAME"
    return None


# ----------------------------------------------------------------------------- import

class _Reader:
    def __init__(self, buf, where):
        self.buf = buf
        self.where = where
        if len(buf) < 8:
            raise ModelFormatError(f"{where}: {len(buf)} bytes is too short for a TFLite flatbuffer")
        if buf[4:8] != b"TFL3":
            raise ModelFormatError(f"{where}: file identifier is {bytes(buf[4:8])!r}, expected b'TFL3' (not a .tflite file)")
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        if self.model.SubgraphsLength() != 1:
            raise ModelFormatError(f"{where}: {self.model.SubgraphsLength()} subgraphs; tinyqt reads single-subgraph models")
        self.sg = self.model.Subgraphs(0)

    def op_name(self, op):
        code = self.model.OperatorCodes(op.OpcodeIndex())
        return _OPS.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")

    def tensor(self, i):
        if not 0 <= i < self.sg.TensorsLength():
            raise ModelFormatError(f"{self.where}: tensor index {i} out of range")
        return self.sg.Tensors(i)

    def name(self, i):
        n = self.tensor(i).Name()
        return n.decode("utf-8", "replace") if n else f"t{i}"

    def shape(self, i):
        return tuple(int(s) for s in self.tensor(i).ShapeAsNumpy()) if self.tensor(i).ShapeLength() else ()

    def data(self, i, dtype, what):
        t = self.tensor(i)
        b = self.model.Buffers(t.Buffer())
        if b is None or b.DataLength() == 0:
            raise ModelFormatError(f"{self.where}: {what} tensor '{self.name(i)}' has no constant data")
        raw = b.DataAsNumpy().tobytes()
        shape = self.shape(i)
        count = int(np.prod(shape)) if shape else 1
        if len(raw) != count * np.dtype(dtype).itemsize:
            raise ModelFormatError(f"{self.where}: {what} tensor '{self.name(i)}': {len(raw)} bytes for shape {shape}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()

    def quant(self, i, what):
        t = self.tensor(i)
        q = t.Quantization()
        if q is None or q.ScaleLength() == 0:
            raise ModelFormatError(f"{self.where}: {what} tensor '{self.name(i)}' has no quantization parameters")
        scales = q.ScaleAsNumpy().astype(np.float32)
        zps = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(len(scales), np.int64)
        return scales, np.asarray(zps, np.int64), q.QuantizedDimension()

    def act_tensor(self, i, what):
        if self.tensor(i).Type() != tflite.TensorType.INT8:
            raise UnsupportedOpError(f"{self.where}: {what} tensor '{self.name(i)}' is not int8 (type {self.tensor(i).Type()}); only int8 models are supported")
        scales, zps, _ = self.quant(i, what)
        if len(scales) != 1 or not scales[0] > 0:
            raise ModelFormatError(f"{self.where}: {what} tensor '{self.name(i)}' needs one positive scale")
        return float(scales[0]), int(zps[0])


def _options(op, cls):
    table = op.BuiltinOptions()
    if table is None:
        return None
    opt = cls()
    opt.Init(table.Bytes, table.Pos)
    return opt


def _activation(code, where):
    if code not in _ACT_NAMES:
        raise UnsupportedOpError(f"{where}: fused activation {code} is not supported (NONE, RELU, RELU6, RELU_N1_TO_1)")
    return _ACT_NAMES[code]


def load_tflite(path_or_bytes):
    """Model from an int8 .tflite file (path) or its bytes. Raises
    ModelFormatError / UnsupportedOpError naming the op or field at fault."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        buf, where = bytearray(path_or_bytes), "<bytes>"
    else:
        where = str(path_or_bytes)
        try:
            with open(path_or_bytes, "rb") as f:
                buf = bytearray(f.read())
        except OSError as e:
            raise ModelFormatError(f"{where}: {e.strerror}") from None
    try:
        return _import(_Reader(buf, where))
    except (ModelFormatError, UnsupportedOpError):
        raise
    except Exception as e:  # noqa: BLE001 - any decoding failure of untrusted bytes
        raise ModelFormatError(f"{where}: malformed or truncated flatbuffer ({type(e).__name__}: {e})") from None


def _import(r):
    sg = r.sg
    desc = r.model.Description()
    model = Model(desc.decode("utf-8", "replace").replace("tinyqt:", "") if desc else "tflite-model")
    if sg.InputsLength() != 1 or sg.OutputsLength() != 1:
        raise UnsupportedOpError(f"{r.where}: {sg.InputsLength()} inputs / {sg.OutputsLength()} outputs; one of each is supported")
    in_idx, out_idx = sg.Inputs(0), sg.Outputs(0)
    names = {}

    def tname(i):
        if i not in names:
            base = r.name(i)
            names[i] = base if base not in model.tensors else f"{base}#{i}"
        return names[i]

    def declare(i, what):
        scale, zp = r.act_tensor(i, what)
        shape = r.shape(i)
        model.add_tensor(tname(i), shape, scale, zp)
        return tname(i)

    declare(in_idx, "input")
    model.inputs = [tname(in_idx)]
    pending_pad = {}  # output tensor of a PAD -> (input tensor index, (top, left, bottom, right))
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        kind = r.op_name(op)
        where = f"op {k} ({kind})"
        if kind not in _SUPPORTED:
            raise UnsupportedOpError(f"{r.where}: {where} is not supported; tinyqt reads {', '.join(sorted(_SUPPORTED))}")
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        outs = [op.Outputs(j) for j in range(op.OutputsLength())]
        if len(outs) != 1:
            raise ModelFormatError(f"{r.where}: {where} has {len(outs)} outputs")
        out = outs[0]
        if kind == "PAD":
            pads = r.data(ins[1], np.int32, f"{where} paddings").reshape(-1, 2)
            if pads.shape != (4, 2) or pads[0].any() or pads[3].any() or (pads < 0).any():
                raise UnsupportedOpError(f"{r.where}: {where}: only non-negative spatial padding of NHWC tensors is supported")
            pending_pad[out] = (ins[0], (int(pads[1, 0]), int(pads[2, 0]), int(pads[1, 1]), int(pads[2, 1])))
            continue
        x_idx = ins[0]
        extra_pad = (0, 0, 0, 0)
        if x_idx in pending_pad:
            if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                raise UnsupportedOpError(f"{r.where}: {where}: a PAD is only supported in front of a conv")
            x_idx, extra_pad = pending_pad.pop(x_idx)
            pad_zp = r.act_tensor(ins[0], f"{where} padded input")[1]
            if pad_zp != r.act_tensor(x_idx, "pad input")[1]:
                raise UnsupportedOpError(f"{r.where}: {where}: PAD changes the quantization")
        if tname(x_idx) not in model.tensors:
            raise ModelFormatError(f"{r.where}: {where}: input tensor '{r.name(x_idx)}' is used before it is produced")
        y = declare(out, f"{where} output")
        x = tname(x_idx)
        t_x = model.tensors[x]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            model.ops.append(_import_conv(r, op, kind, where, ins, x, y, t_x, extra_pad, model))
        elif kind == "FULLY_CONNECTED":
            model.ops.append(_import_fc(r, op, where, ins, x, y, t_x, model))
        elif kind == "ADD":
            b = tname(ins[1])
            if b not in model.tensors:
                raise ModelFormatError(f"{r.where}: {where}: input tensor '{r.name(ins[1])}' is used before it is produced")
            if model.tensors[b].shape != t_x.shape or model.tensors[y].shape != t_x.shape:
                raise UnsupportedOpError(f"{r.where}: {where}: broadcasting ADD is not supported ({t_x.shape} + {model.tensors[b].shape})")
            opt = _options(op, tflite.AddOptions)
            model.ops.append(Add(name=y, inputs=[x, b], output=y,
                                 activation=_activation(opt.FusedActivationFunction() if opt else 0, where)))
        elif kind == "AVERAGE_POOL_2D":
            opt = _options(op, tflite.Pool2DOptions)
            if opt is None:
                raise ModelFormatError(f"{r.where}: {where}: missing Pool2DOptions")
            kh, kw, sh, sw = opt.FilterHeight(), opt.FilterWidth(), opt.StrideH(), opt.StrideW()
            if min(kh, kw, sh, sw) < 1:
                raise ModelFormatError(f"{r.where}: {where}: filter {kh}x{kw} stride {sh}x{sw} invalid")
            pad = _import_padding(opt.Padding(), t_x.shape, (kh, kw), (sh, sw), (1, 1), where, r)
            _check_same_quant(model, x, y, where, r)
            model.ops.append(AvgPool2D(name=y, inputs=[x], output=y, filter=(kh, kw), stride=(sh, sw),
                                       padding=pad, activation=_activation(opt.FusedActivationFunction(), where)))
        elif kind == "MEAN":
            axes = sorted(int(a) % 4 for a in r.data(ins[1], np.int32, f"{where} axis").reshape(-1))
            if len(t_x.shape) != 4 or axes != [1, 2]:
                raise UnsupportedOpError(f"{r.where}: {where}: MEAN is supported over axes (1, 2) of a 4-D tensor, got {axes}")
            model.ops.append(Mean(name=y, inputs=[x], output=y))
        elif kind == "RESHAPE":
            if int(np.prod(model.tensors[y].shape)) != int(np.prod(t_x.shape)):
                raise ModelFormatError(f"{r.where}: {where}: reshape {t_x.shape} -> {model.tensors[y].shape} changes the size")
            _check_same_quant(model, x, y, where, r)
            model.ops.append(Reshape(name=y, inputs=[x], output=y))
        elif kind == "SOFTMAX":
            opt = _options(op, tflite.SoftmaxOptions)
            t_y = model.tensors[y]
            if abs(t_y.scale - 1 / 256) > 1e-9 or t_y.zero_point != -128:
                raise UnsupportedOpError(f"{r.where}: {where}: int8 SOFTMAX output must have scale 1/256 and zero point -128")
            model.ops.append(Softmax(name=y, inputs=[x], output=y, beta=float(opt.Beta()) if opt else 1.0))
    if pending_pad:
        raise UnsupportedOpError(f"{r.where}: a PAD op does not feed a conv")
    if tname(out_idx) not in model.tensors:
        raise ModelFormatError(f"{r.where}: the graph output '{r.name(out_idx)}' is never produced")
    model.outputs = [tname(out_idx)]
    for t in model.tensors.values():
        if any(s < 1 for s in t.shape):
            raise ModelFormatError(f"{r.where}: tensor '{t.name}' has shape {t.shape}")
    return model


def _check_same_quant(model, x, y, where, r):
    a, b = model.tensors[x], model.tensors[y]
    if np.float32(a.scale) != np.float32(b.scale) or a.zero_point != b.zero_point:
        raise UnsupportedOpError(f"{r.where}: {where}: input and output quantization must match")


def _import_padding(code, shape, k, stride, dilation, where, r):
    if code == tflite.Padding.VALID:
        return (0, 0, 0, 0)
    if code == tflite.Padding.SAME:
        (pt, pb), (pl, pr) = (same_padding(shape[1], k[0], stride[0], dilation[0]),
                              same_padding(shape[2], k[1], stride[1], dilation[1]))
        return (pt, pl, pb, pr)
    raise ModelFormatError(f"{r.where}: {where}: unknown padding code {code}")


def _import_conv(r, op, kind, where, ins, x, y, t_x, extra_pad, model):
    depthwise = kind == "DEPTHWISE_CONV_2D"
    opt = _options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
    if opt is None:
        raise ModelFormatError(f"{r.where}: {where}: missing options")
    if len(ins) < 2:
        raise ModelFormatError(f"{r.where}: {where}: needs input and filter tensors")
    if r.tensor(ins[1]).Type() != tflite.TensorType.INT8:
        raise UnsupportedOpError(f"{r.where}: {where}: filter is not int8")
    w = r.data(ins[1], np.int8, f"{where} filter")
    if w.ndim != 4:
        raise ModelFormatError(f"{r.where}: {where}: filter shape {w.shape} is not 4-D")
    c_out = w.shape[3] if depthwise else w.shape[0]
    w_scales, w_zps, qdim = r.quant(ins[1], f"{where} filter")
    if (w_zps != 0).any():
        raise UnsupportedOpError(f"{r.where}: {where}: filter zero points must be 0 (symmetric weights)")
    if len(w_scales) == 1:
        w_scales = np.full(c_out, w_scales[0], np.float32)
    elif len(w_scales) != c_out or qdim != (3 if depthwise else 0):
        raise ModelFormatError(f"{r.where}: {where}: {len(w_scales)} filter scales on dimension {qdim} for {c_out} output channels")
    bias = None
    if len(ins) > 2 and ins[2] >= 0:
        bias = r.data(ins[2], np.int32, f"{where} bias").reshape(-1)
        if bias.shape != (c_out,):
            raise ModelFormatError(f"{r.where}: {where}: bias shape {bias.shape}, expected ({c_out},)")
    stride = (opt.StrideH(), opt.StrideW())
    dilation = (opt.DilationHFactor() or 1, opt.DilationWFactor() or 1)
    if min(stride) < 1 or min(dilation) < 1:
        raise ModelFormatError(f"{r.where}: {where}: stride {stride} / dilation {dilation} invalid")
    pt, pl, pb, pr = extra_pad
    in_shape = (t_x.shape[0], t_x.shape[1] + pt + pb, t_x.shape[2] + pl + pr, t_x.shape[3])
    pad = _import_padding(opt.Padding(), in_shape, w.shape[1:3], stride, dilation, where, r)
    if extra_pad != (0, 0, 0, 0) and pad != (0, 0, 0, 0):
        pad = tuple(a + b for a, b in zip(pad, extra_pad))
    elif extra_pad != (0, 0, 0, 0):
        pad = extra_pad
    if depthwise:
        mult = opt.DepthMultiplier() or 1
        if w.shape[0] != 1 or c_out != t_x.shape[3] * mult:
            raise ModelFormatError(f"{r.where}: {where}: depthwise filter {w.shape} does not fit {t_x.shape[3]} channels x multiplier {mult}")
    elif w.shape[3] != t_x.shape[3]:
        raise ModelFormatError(f"{r.where}: {where}: filter {w.shape} does not fit an input with {t_x.shape[3]} channels")
    op_ir = Conv2D(name=y, inputs=[x], output=y, weight=w, bias=bias, w_scales=w_scales, stride=stride,
                   padding=pad, dilation=dilation, depthwise=depthwise,
                   activation=_activation(opt.FusedActivationFunction(), where))
    _check_conv_output(r, where, op_ir, t_x, model.tensors[y])
    return op_ir


def _check_conv_output(r, where, op, t_x, t_y):
    from .kernels import conv_output_size
    kh, kw = op.weight.shape[1:3]
    pt, pl, pb, pr = op.padding
    oh = conv_output_size(t_x.shape[1], kh, op.stride[0], op.dilation[0], pt, pb)
    ow = conv_output_size(t_x.shape[2], kw, op.stride[1], op.dilation[1], pl, pr)
    want = (t_x.shape[0], oh, ow, op.out_channels)
    if tuple(t_y.shape) != want:
        raise ModelFormatError(f"{r.where}: {where}: output shape {t_y.shape}, but the conv gives {want}")


def _import_fc(r, op, where, ins, x, y, t_x, model):
    opt = _options(op, tflite.FullyConnectedOptions)
    if r.tensor(ins[1]).Type() != tflite.TensorType.INT8:
        raise UnsupportedOpError(f"{r.where}: {where}: weights are not int8")
    w = r.data(ins[1], np.int8, f"{where} weights")
    if w.ndim != 2:
        raise ModelFormatError(f"{r.where}: {where}: weights shape {w.shape} is not 2-D")
    w_scales, w_zps, _ = r.quant(ins[1], f"{where} weights")
    if (w_zps != 0).any():
        raise UnsupportedOpError(f"{r.where}: {where}: weight zero points must be 0")
    if len(w_scales) not in (1, w.shape[0]):
        raise ModelFormatError(f"{r.where}: {where}: {len(w_scales)} weight scales for {w.shape[0]} outputs")
    if int(np.prod(t_x.shape)) % w.shape[1]:
        raise ModelFormatError(f"{r.where}: {where}: input {t_x.shape} is not a multiple of {w.shape[1]} features")
    bias = None
    if len(ins) > 2 and ins[2] >= 0:
        bias = r.data(ins[2], np.int32, f"{where} bias").reshape(-1)
        if bias.shape != (w.shape[0],):
            raise ModelFormatError(f"{r.where}: {where}: bias shape {bias.shape}, expected ({w.shape[0]},)")
    act = _activation(opt.FusedActivationFunction() if opt else 0, where)
    return FullyConnected(name=y, inputs=[x], output=y, weight=w, bias=bias, w_scales=w_scales, activation=act)


# ----------------------------------------------------------------------------- export

class _Writer:
    def __init__(self):
        self.b = flatbuffers.Builder(1 << 16)
        self.buffers = [b""]
        self.tensors = []  # (name, shape, type, buffer index, scales, zps, qdim)
        self.index = {}
        self.opcodes = []
        self.ops = []  # (opcode index, inputs, outputs, options type, options builder fn)

    def buffer(self, data):
        self.buffers.append(bytes(data))
        return len(self.buffers) - 1

    def tensor(self, name, shape, ttype, scales, zps, qdim=0, data=None):
        buf = self.buffer(data) if data is not None else 0
        self.tensors.append((name, tuple(int(s) for s in shape), ttype, buf,
                             [float(s) for s in scales], [int(z) for z in zps], qdim))
        self.index[name] = len(self.tensors) - 1
        return self.index[name]

    def opcode(self, code):
        if code not in self.opcodes:
            self.opcodes.append(code)
        return self.opcodes.index(code)

    def op(self, code, inputs, outputs, opt_type=0, opt_fn=None):
        self.ops.append((self.opcode(code), inputs, outputs, opt_type, opt_fn))

    # -- serialization
    def _vec_i32(self, values):
        b = self.b
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependInt32(int(v))
        return b.EndVector()

    def _vec_f32(self, values):
        b = self.b
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(float(v))
        return b.EndVector()

    def _vec_i64(self, values):
        b = self.b
        b.StartVector(8, len(values), 8)
        for v in reversed(values):
            b.PrependInt64(int(v))
        return b.EndVector()

    def _vec_tables(self, start_fn, offsets):
        start_fn(self.b, len(offsets))
        for o in reversed(offsets):
            self.b.PrependUOffsetTRelative(o)
        return self.b.EndVector()

    def finish(self, inputs, outputs, description="tinyqt"):
        b = self.b
        buf_offs = []
        for data in self.buffers:
            if data:
                b.StartVector(1, len(data), 16)
                b.head = b.head - len(data)
                b.Bytes[b.head:b.head + len(data)] = data
                vec = b.EndVector()
                tflite.BufferStart(b)
                tflite.BufferAddData(b, vec)
            else:
                tflite.BufferStart(b)
            buf_offs.append(tflite.BufferEnd(b))
        tensor_offs = []
        for name, shape, ttype, buf, scales, zps, qdim in self.tensors:
            name_off = b.CreateString(name)
            shape_off = self._vec_i32(shape)
            q_off = None
            if scales:
                s_off, z_off = self._vec_f32(scales), self._vec_i64(zps)
                tflite.QuantizationParametersStart(b)
                tflite.QuantizationParametersAddScale(b, s_off)
                tflite.QuantizationParametersAddZeroPoint(b, z_off)
                tflite.QuantizationParametersAddQuantizedDimension(b, qdim)
                q_off = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape_off)
            tflite.TensorAddType(b, ttype)
            tflite.TensorAddBuffer(b, buf)
            tflite.TensorAddName(b, name_off)
            if q_off is not None:
                tflite.TensorAddQuantization(b, q_off)
            tensor_offs.append(tflite.TensorEnd(b))
        op_offs = []
        for opcode, ins, outs, opt_type, opt_fn in self.ops:
            in_off, out_off = self._vec_i32(ins), self._vec_i32(outs)
            opt_off = opt_fn(b) if opt_fn else None
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, opcode)
            tflite.OperatorAddInputs(b, in_off)
            tflite.OperatorAddOutputs(b, out_off)
            if opt_off is not None:
                tflite.OperatorAddBuiltinOptionsType(b, opt_type)
                tflite.OperatorAddBuiltinOptions(b, opt_off)
            op_offs.append(tflite.OperatorEnd(b))
        tensors_vec = self._vec_tables(tflite.SubGraphStartTensorsVector, tensor_offs)
        ops_vec = self._vec_tables(tflite.SubGraphStartOperatorsVector, op_offs)
        in_vec, out_vec = self._vec_i32(inputs), self._vec_i32(outputs)
        sg_name = b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors_vec)
        tflite.SubGraphAddInputs(b, in_vec)
        tflite.SubGraphAddOutputs(b, out_vec)
        tflite.SubGraphAddOperators(b, ops_vec)
        tflite.SubGraphAddName(b, sg_name)
        sg = tflite.SubGraphEnd(b)
        code_offs = []
        for code in self.opcodes:
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, 1)
            code_offs.append(tflite.OperatorCodeEnd(b))
        codes_vec = self._vec_tables(tflite.ModelStartOperatorCodesVector, code_offs)
        sgs_vec = self._vec_tables(tflite.ModelStartSubgraphsVector, [sg])
        bufs_vec = self._vec_tables(tflite.ModelStartBuffersVector, buf_offs)
        desc = b.CreateString(description)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, codes_vec)
        tflite.ModelAddSubgraphs(b, sgs_vec)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, bufs_vec)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())


_INT8, _INT32 = tflite.TensorType.INT8, tflite.TensorType.INT32
_BO = tflite.BuiltinOptions


def _conv_options(op, padding_code, depth_multiplier=None):
    act = _ACT_CODES[op.activation]

    def build(b):
        if op.depthwise:
            tflite.DepthwiseConv2DOptionsStart(b)
            tflite.DepthwiseConv2DOptionsAddPadding(b, padding_code)
            tflite.DepthwiseConv2DOptionsAddStrideW(b, op.stride[1])
            tflite.DepthwiseConv2DOptionsAddStrideH(b, op.stride[0])
            tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, depth_multiplier)
            tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(b, act)
            tflite.DepthwiseConv2DOptionsAddDilationWFactor(b, op.dilation[1])
            tflite.DepthwiseConv2DOptionsAddDilationHFactor(b, op.dilation[0])
            return tflite.DepthwiseConv2DOptionsEnd(b)
        tflite.Conv2DOptionsStart(b)
        tflite.Conv2DOptionsAddPadding(b, padding_code)
        tflite.Conv2DOptionsAddStrideW(b, op.stride[1])
        tflite.Conv2DOptionsAddStrideH(b, op.stride[0])
        tflite.Conv2DOptionsAddFusedActivationFunction(b, act)
        tflite.Conv2DOptionsAddDilationWFactor(b, op.dilation[1])
        tflite.Conv2DOptionsAddDilationHFactor(b, op.dilation[0])
        return tflite.Conv2DOptionsEnd(b)
    return build


def _act_tensor(w, model, name):
    t = model.tensors[name]
    if name not in w.index:
        w.tensor(name, t.shape, _INT8, [t.scale], [t.zero_point])
    return w.index[name]


def _export_conv(w, model, op):
    t_x = model.tensors[op.inputs[0]]
    x = _act_tensor(w, model, op.inputs[0])
    kind = _padding_kind(op.padding, t_x.shape[1:3], op.weight.shape[1:3], op.stride, op.dilation)
    if kind is None:
        pt, pl, pb, pr = op.padding
        padded = op.name + "/pad"
        w.tensor(padded, (t_x.shape[0], t_x.shape[1] + pt + pb, t_x.shape[2] + pl + pr, t_x.shape[3]),
                 _INT8, [t_x.scale], [t_x.zero_point])
        pads = w.tensor(op.name + "/paddings", (4, 2), _INT32, [], [],
                        data=np.array([[0, 0], [pt, pb], [pl, pr], [0, 0]], np.int32).tobytes())

        def pad_opts(b):
            tflite.PadOptionsStart(b)
            return tflite.PadOptionsEnd(b)
        w.op(tflite.BuiltinOperator.PAD, [x, pads], [w.index[padded]], _BO.PadOptions, pad_opts)
        x, kind = w.index[padded], "VALID"
    scales = np.asarray(op.w_scales, np.float32)
    c_out = op.out_channels
    wt = w.tensor(op.name + "/weight", op.weight.shape, _INT8, scales, [0] * c_out,
                  qdim=3 if op.depthwise else 0, data=np.ascontiguousarray(op.weight, np.int8).tobytes())
    bias = op.bias if op.bias is not None else np.zeros(c_out, np.int32)
    bias_scales = [float(np.float32(t_x.scale)) * float(s) for s in scales]
    bt = w.tensor(op.name + "/bias", (c_out,), _INT32, bias_scales, [0] * c_out, qdim=0,
                  data=np.ascontiguousarray(bias, np.int32).tobytes())
    y = _act_tensor(w, model, op.output)
    code = getattr(tflite.Padding, kind)
    if op.depthwise:
        mult = c_out // t_x.shape[3]
        w.op(tflite.BuiltinOperator.DEPTHWISE_CONV_2D, [x, wt, bt], [y], _BO.DepthwiseConv2DOptions,
             _conv_options(op, code, mult))
    else:
        w.op(tflite.BuiltinOperator.CONV_2D, [x, wt, bt], [y], _BO.Conv2DOptions, _conv_options(op, code))


def _export_fc(w, model, op):
    t_x = model.tensors[op.inputs[0]]
    x = _act_tensor(w, model, op.inputs[0])
    scales = np.asarray(op.w_scales, np.float32).reshape(-1)
    n_out = op.weight.shape[0]
    wt = w.tensor(op.name + "/weight", op.weight.shape, _INT8, scales, [0] * len(scales), qdim=0,
                  data=np.ascontiguousarray(op.weight, np.int8).tobytes())
    bias = op.bias if op.bias is not None else np.zeros(n_out, np.int32)
    bs = [float(np.float32(t_x.scale)) * float(s) for s in scales]
    bt = w.tensor(op.name + "/bias", (n_out,), _INT32, bs, [0] * len(bs), qdim=0,
                  data=np.ascontiguousarray(bias, np.int32).tobytes())
    y = _act_tensor(w, model, op.output)
    act = _ACT_CODES[op.activation]

    def opts(b):
        tflite.FullyConnectedOptionsStart(b)
        tflite.FullyConnectedOptionsAddFusedActivationFunction(b, act)
        tflite.FullyConnectedOptionsAddKeepNumDims(b, len(model.tensors[op.output].shape) > 2)
        return tflite.FullyConnectedOptionsEnd(b)
    w.op(tflite.BuiltinOperator.FULLY_CONNECTED, [x, wt, bt], [y], _BO.FullyConnectedOptions, opts)


def _export_simple(w, model, op):
    ins = [_act_tensor(w, model, n) for n in op.inputs]
    y = _act_tensor(w, model, op.output)
    if isinstance(op, Add):
        act = _ACT_CODES[op.activation]

        def opts(b):
            tflite.AddOptionsStart(b)
            tflite.AddOptionsAddFusedActivationFunction(b, act)
            return tflite.AddOptionsEnd(b)
        w.op(tflite.BuiltinOperator.ADD, ins, [y], _BO.AddOptions, opts)
    elif isinstance(op, AvgPool2D):
        t_x = model.tensors[op.inputs[0]]
        kind = _padding_kind(op.padding, t_x.shape[1:3], op.filter, op.stride, (1, 1))
        if kind is None:
            raise UnsupportedOpError(f"op '{op.name}': average pool padding {op.padding} is neither SAME nor VALID")
        code, act = getattr(tflite.Padding, kind), _ACT_CODES[op.activation]

        def opts(b):
            tflite.Pool2DOptionsStart(b)
            tflite.Pool2DOptionsAddPadding(b, code)
            tflite.Pool2DOptionsAddStrideW(b, op.stride[1])
            tflite.Pool2DOptionsAddStrideH(b, op.stride[0])
            tflite.Pool2DOptionsAddFilterWidth(b, op.filter[1])
            tflite.Pool2DOptionsAddFilterHeight(b, op.filter[0])
            tflite.Pool2DOptionsAddFusedActivationFunction(b, act)
            return tflite.Pool2DOptionsEnd(b)
        w.op(tflite.BuiltinOperator.AVERAGE_POOL_2D, ins, [y], _BO.Pool2DOptions, opts)
    elif isinstance(op, Mean):
        axis = w.tensor(op.name + "/axis", (2,), _INT32, [], [], data=np.array([1, 2], np.int32).tobytes())
        keep = len(model.tensors[op.output].shape) == 4

        def opts(b):
            tflite.ReducerOptionsStart(b)
            tflite.ReducerOptionsAddKeepDims(b, keep)
            return tflite.ReducerOptionsEnd(b)
        w.op(tflite.BuiltinOperator.MEAN, ins + [axis], [y], _BO.ReducerOptions, opts)
    elif isinstance(op, Reshape):
        shape = model.tensors[op.output].shape
        st = w.tensor(op.name + "/shape", (len(shape),), _INT32, [], [],
                      data=np.array(shape, np.int32).tobytes())

        def opts(b):
            tflite.ReshapeOptionsStart(b)
            return tflite.ReshapeOptionsEnd(b)
        w.op(tflite.BuiltinOperator.RESHAPE, ins + [st], [y], _BO.ReshapeOptions, opts)
    elif isinstance(op, Softmax):
        beta = op.beta

        def opts(b):
            tflite.SoftmaxOptionsStart(b)
            tflite.SoftmaxOptionsAddBeta(b, beta)
            return tflite.SoftmaxOptionsEnd(b)
        w.op(tflite.BuiltinOperator.SOFTMAX, ins, [y], _BO.SoftmaxOptions, opts)
    else:
        raise UnsupportedOpError(f"op '{op.name}': {type(op).__name__} cannot be exported to TFLite")


def to_tflite_bytes(model):
    """The .tflite flatbuffer of model (runs in TFLite Micro)."""
    for op in model.ops:
        if getattr(op, "activation", "NONE") not in ACTIVATIONS:
            raise UnsupportedOpError(f"op '{op.name}': unknown activation {op.activation!r}")
    w = _Writer()
    _act_tensor(w, model, model.inputs[0])
    for op in model.ops:
        if isinstance(op, Conv2D):
            _export_conv(w, model, op)
        elif isinstance(op, FullyConnected):
            _export_fc(w, model, op)
        else:
            _export_simple(w, model, op)
    return w.finish([w.index[model.inputs[0]]], [w.index[model.outputs[0]]], description=f"tinyqt:{model.name}")


def save_tflite(model, path):
    """Writes model as an int8 .tflite file; the file appears only complete
    (written to a temporary name, then renamed)."""
    import os
    data = to_tflite_bytes(model)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
