"""Row-streamed blocks (tq_bottleneck_s8) against the same ops run one by one
(the executor, itself checked against TFLite Micro): generated expand ->
depthwise -> 1x1 chains whose expand is a 1x1 or any dense conv (kernel
1..7, stride 1/2, dilation, SAME/VALID/asymmetric padding, odd sizes)."""
import numpy as np
import pytest

from tinyqt.compiler.fusion import bottleneck_spec, find_blocks
from tinyqt.executor import run_op

from model_gen import _Gen


def _chain(seed):
    """(model, input) of expand -> depthwise 3x3/5x5 -> 1x1, or None when the
    generated depthwise is not fusable (depth multiplier or dilation > 1)."""
    g = _Gen(seed)
    rng = g.rng
    h, w, c = (int(v) for v in (rng.integers(3, 24), rng.integers(3, 24), rng.integers(1, 9)))
    x = g.tensor((1, h, w, c))
    g.m.inputs = [x]
    y = g.conv(x, depthwise=False, k=int(rng.choice([1, 3, 5, 7])) if seed % 2 else 1)
    y = g.conv(y, depthwise=True, k=int(rng.choice([3, 5])))
    y = g.conv(y, depthwise=False, k=1)
    g.m.outputs = [y]
    blocks = find_blocks(g.m)
    if len(blocks) != 1 or blocks[0].pw1 is None:
        return None
    return g.m, rng.integers(-128, 128, (1, h, w, c), dtype=np.int8)


def _chains(n):
    found, seed = [], 0
    while len(found) < n:
        c = _chain(seed)
        if c is not None:
            found.append((seed, c))
        seed += 1
    return found


@pytest.mark.parametrize("seed,chain", _chains(40), ids=lambda v: str(v) if isinstance(v, int) else "")
def test_streamed_block_gives_the_unfused_bytes(seed, chain):
    model, x = chain
    block = find_blocks(model)[0]
    ref = x
    for op in model.ops:
        ref = run_op(model, op, [ref])
    spec = bottleneck_spec(model, block)
    t_in = model.tensors[block.input].shape
    scratch = np.zeros(spec.buffer_size(tuple(t_in)), np.uint8)
    out = np.full(model.tensors[block.output].shape, 99, np.int8)
    assert spec.run(tuple(t_in), x.reshape(-1), out.shape, out.reshape(-1), scratch) == 0
    np.testing.assert_array_equal(out, ref)
    # less scratch than the kernel asked for: an error status, nothing written
    if scratch.size > 4:
        out2 = np.full(out.shape, 99, np.int8)
        assert spec.run(tuple(t_in), x.reshape(-1), out.shape, out2.reshape(-1), scratch[:-4]) != 0
        assert (out2 == 99).all()


def test_dense_expands_are_covered():
    """The generated set holds dense (non-1x1) expands with stride 2 and padding."""
    kinds = set()
    for _, (model, _) in _chains(40):
        e = model.ops[0]
        kinds.add((e.weight.shape[1] > 1, tuple(e.stride) == (2, 2), any(e.padding)))
    assert (True, True, True) in kinds and (False, False, False) in kinds


def _run_over_input(model, block, x, delta):
    """The block's output written delta bytes above its input's start in one
    buffer (output_over_input's placement); returns the output."""
    spec = bottleneck_spec(model, block)
    t_in, t_out = (tuple(model.tensors[n].shape) for n in (block.input, block.output))
    n_in, n_out = x.size, int(np.prod(t_out))
    lo = min(0, delta)
    buf = np.zeros(max(n_in, delta + n_out) - lo, np.int8)
    xi, yo = -lo, delta - lo
    buf[xi:xi + n_in] = x.reshape(-1)
    scratch = np.zeros(spec.buffer_size(t_in), np.uint8)
    assert spec.run(t_in, buf[xi:xi + n_in], t_out, buf[yo:yo + n_out], scratch) == 0
    return buf[yo:yo + n_out].reshape(t_out).copy()


def test_output_written_over_the_dying_input_keeps_the_bytes():
    """Where output_over_input allows it, the streamed kernel writes its
    output over its own input and still gives the unfused bytes; one row
    further up would clobber rows it still reads (the check can fail)."""
    from tinyqt.compiler.fusion import output_over_input
    overlapped = clobbered = 0
    for _, (model, x) in _chains(40):
        block = find_blocks(model)[0]
        delta = output_over_input(model, block, align=8)
        if delta is None:
            continue
        ref = x
        for op in model.ops:
            ref = run_op(model, op, [ref])
        np.testing.assert_array_equal(_run_over_input(model, block, x, delta), ref)
        overlapped += 1
        row_out = int(np.prod(model.tensors[block.output].shape[2:]))
        if not np.array_equal(_run_over_input(model, block, x, delta + 8 * (-(-row_out // 8)) * 2), ref):
            clobbered += 1
    assert overlapped >= 10 and clobbered >= 1


@pytest.mark.parametrize("stage", ["pw1", "dw", "pw2"])
@pytest.mark.parametrize("field", [1, 2])  # the multiplier, the shift
def test_a_bad_multiplier_is_found_before_anything_is_written(stage, field):
    """The block checks each stage's per-channel multipliers and shifts once,
    up front (its row calls skip that loop): a bad value in any stage's last
    channel is TQ_ERR_PARAM with the output untouched."""
    from tinyqt import _ckernels
    from tinyqt.compiler.fusion import _stage
    seed, (model, x) = next((s, c) for s, c in _chains(8) if c[0].ops[0].weight.shape[0] > 1)
    block = find_blocks(model)[0]
    stages = {name: list(_stage(model, getattr(block, name))) for name in ("pw1", "dw", "pw2")}
    bad = np.array(stages[stage][field], dtype=np.int32, copy=True)
    bad[-1] = -5 if field == 1 else 31
    stages[stage][field] = bad
    mid = model.tensors[block.dw.inputs[0]].shape
    spec = _ckernels.BottleneckSpec(tuple(stages["pw1"]), tuple(stages["dw"]), tuple(stages["pw2"]), None, 0,
                                    model.tensors[block.dw.output].shape[2], mid[1], mid[2])
    t_in = model.tensors[block.input].shape
    scratch = np.zeros(spec.buffer_size(tuple(t_in)), np.uint8)
    out = np.full(model.tensors[block.output].shape, 99, np.int8)
    assert spec.run(tuple(t_in), x.reshape(-1), out.shape, out.reshape(-1), scratch) == -3  # TQ_ERR_PARAM
    assert (out == 99).all()
