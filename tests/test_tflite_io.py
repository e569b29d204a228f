"""TFLite files: the paper's models exported and run in TFLite Micro, files
written whole, and malformed input rejected with a named reason."""

import flatbuffers
import numpy as np
import pytest
import tflite

import tinyqt
from tinyqt.errors import ModelFormatError, ShapeError, UnsupportedOpError
from tinyqt.tflite_io import to_tflite_bytes

from conftest import PAPER_MODELS, shared_model_json
from model_gen import random_model
from tflm_oracle import run_tflm


@pytest.mark.oracle
@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_models_bit_exact_in_tflm(name, tmp_path):
    model = tinyqt.load_tiny_training(shared_model_json(name))
    path = tmp_path / f"{name}.tflite"
    tinyqt.save_tflite(model, str(path))
    x = np.random.default_rng(7).integers(-128, 128, (2, 128, 128, 3), dtype=np.int8)
    ours = model.forward(x)
    theirs = run_tflm(path.read_bytes(), x)
    np.testing.assert_array_equal(ours, theirs)
    assert len(np.unique(ours)) > 20  # real logits, not a saturated constant
    again = tinyqt.load_tflite(str(path))
    np.testing.assert_array_equal(again.forward(x), ours)
    assert [type(o).__name__ for o in again.ops] == [type(o).__name__ for o in model.ops]


def test_save_leaves_no_partial_file(tmp_path, monkeypatch):
    model, _ = random_model(5, "conv")
    target = tmp_path / "m.tflite"
    monkeypatch.setattr("tinyqt.tflite_io.to_tflite_bytes", lambda m: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        tinyqt.save_tflite(model, str(target))
    assert list(tmp_path.iterdir()) == []


def _bytes():
    return to_tflite_bytes(random_model(3, "chain")[0])


def test_truncated_and_garbage_files_are_rejected():
    data = _bytes()
    for cut in (0, 7, 64, len(data) // 3, len(data) - 100):
        with pytest.raises(ModelFormatError):
            tinyqt.load_tflite(data[:cut])
    with pytest.raises(ModelFormatError, match="file identifier"):
        tinyqt.load_tflite(b"\x00" * 64)
    rng = np.random.default_rng(0)
    for _ in range(30):  # random corruption: an error or a model, never a crash
        bad = bytearray(data)
        for i in rng.integers(8, len(bad), 20):
            bad[i] = int(rng.integers(0, 256))
        try:
            tinyqt.load_tflite(bytes(bad))
        except (ModelFormatError, UnsupportedOpError):
            pass


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ModelFormatError, match="absent.tflite"):
        tinyqt.load_tflite(str(tmp_path / "absent.tflite"))


def _single_op_model(opcode, input_type=tflite.TensorType.INT8):
    """A minimal model with one operator of the given builtin code."""
    b = flatbuffers.Builder(256)
    tensors = []
    for name in ("in", "out"):
        n = b.CreateString(name)
        tflite.TensorStartShapeVector(b, 2)
        b.PrependInt32(4)
        b.PrependInt32(1)
        shape = b.EndVector()
        tflite.QuantizationParametersStartScaleVector(b, 1)
        b.PrependFloat32(0.1)
        sc = b.EndVector()
        tflite.QuantizationParametersStartZeroPointVector(b, 1)
        b.PrependInt64(0)
        zp = b.EndVector()
        tflite.QuantizationParametersStart(b)
        tflite.QuantizationParametersAddScale(b, sc)
        tflite.QuantizationParametersAddZeroPoint(b, zp)
        q = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, input_type)
        tflite.TensorAddName(b, n)
        tflite.TensorAddQuantization(b, q)
        tensors.append(tflite.TensorEnd(b))
    tflite.OperatorStartInputsVector(b, 1)
    b.PrependInt32(0)
    ins = b.EndVector()
    tflite.OperatorStartOutputsVector(b, 1)
    b.PrependInt32(1)
    outs = b.EndVector()
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, ins)
    tflite.OperatorAddOutputs(b, outs)
    op = tflite.OperatorEnd(b)
    tflite.SubGraphStartTensorsVector(b, 2)
    for t in reversed(tensors):
        b.PrependUOffsetTRelative(t)
    tv = b.EndVector()
    tflite.SubGraphStartOperatorsVector(b, 1)
    b.PrependUOffsetTRelative(op)
    ov = b.EndVector()
    tflite.SubGraphStartInputsVector(b, 1)
    b.PrependInt32(0)
    iv = b.EndVector()
    tflite.SubGraphStartOutputsVector(b, 1)
    b.PrependInt32(1)
    outv = b.EndVector()
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tv)
    tflite.SubGraphAddOperators(b, ov)
    tflite.SubGraphAddInputs(b, iv)
    tflite.SubGraphAddOutputs(b, outv)
    sg = tflite.SubGraphEnd(b)
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddBuiltinCode(b, opcode)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(opcode, 127))
    oc = tflite.OperatorCodeEnd(b)
    tflite.ModelStartOperatorCodesVector(b, 1)
    b.PrependUOffsetTRelative(oc)
    ocv = b.EndVector()
    tflite.ModelStartSubgraphsVector(b, 1)
    b.PrependUOffsetTRelative(sg)
    sgv = b.EndVector()
    tflite.BufferStart(b)
    buf0 = tflite.BufferEnd(b)
    tflite.ModelStartBuffersVector(b, 1)
    b.PrependUOffsetTRelative(buf0)
    bv = b.EndVector()
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, ocv)
    tflite.ModelAddSubgraphs(b, sgv)
    tflite.ModelAddBuffers(b, bv)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_unsupported_op_is_named():
    with pytest.raises(UnsupportedOpError, match=r"op 0 \(LOGISTIC\) is not supported"):
        tinyqt.load_tflite(_single_op_model(tflite.BuiltinOperator.LOGISTIC))


def test_float_model_is_rejected():
    with pytest.raises(UnsupportedOpError, match="not int8"):
        tinyqt.load_tflite(_single_op_model(tflite.BuiltinOperator.SOFTMAX, tflite.TensorType.FLOAT32))


def test_wrong_input_is_named():
    model, x = random_model(4, "conv")
    with pytest.raises(ShapeError, match="expected an int8 numpy array, got float32"):
        model.forward(x.astype(np.float32))
    with pytest.raises(ShapeError, match=r"expected shape \(N, "):
        model.forward(x[:, :, :-1])
    with pytest.raises(ShapeError, match="got list"):
        model.forward(x.tolist())


def test_info_reads_tflite(tmp_path, capsys):
    from tinyqt.cli import main
    model, _ = random_model(9, "chain")
    path = tmp_path / "m.tflite"
    tinyqt.save_tflite(model, str(path))
    assert main(["info", str(path)]) == 0
    assert f"total: {len(model.ops)} ops" in capsys.readouterr().out
