"""The training compiler: pruned autodiff, lifetimes, the arena plan, budgets."""
import pytest

import tinyqt
from tinyqt.compiler import BudgetExceededError, body_convs, compile, parse_bytes
from tinyqt.compiler.training_graph import update_steps
from tinyqt.planner import Buffer, verify
from tinyqt.schemes import SchemeError

from conftest import shared_model_json


@pytest.fixture(scope="module")
def mcunet():
    return tinyqt.load_tiny_training(shared_model_json("mcunet-5fps"))


def _overlap_free(plan):
    bufs = [Buffer(s.name, s.nbytes, s.first, s.last) for s in plan.tensors.values() if s.first >= 0]
    verify(bufs, plan.memory, align=8, anchors=plan.anchors)
    # and independently: every pair of simultaneously live tensors is disjoint,
    # but a streamed block's output placed exactly at its anchor over its input
    off = plan.memory.offsets
    allowed = {frozenset((c, p)) for c, (p, d) in plan.anchors.items() if off[c] - off[p] == d}
    for c, (p, d) in plan.anchors.items():
        assert any(s.kind == "fused_block" and s.reads == [p] and s.writes == [c] for s in plan.steps)
    items = [(off[b.name], b) for b in bufs]
    for i, (oa, a) in enumerate(items):
        for ob, b in items[i + 1:]:
            if a.overlaps(b) and a.size and b.size and frozenset((a.name, b.name)) not in allowed:
                assert oa + a.size <= ob or ob + b.size <= oa, (a.name, b.name)


@pytest.mark.parametrize("scheme", ["paper:99kb", "bias-only:8", "last:6", "full", "paper:49kb"])
def test_no_two_live_tensors_overlap(mcunet, scheme):
    plan = compile(mcunet, scheme, num_classes=10)
    _overlap_free(plan)
    assert plan.peak_sram_bytes >= max(s.nbytes for s in plan.tensors.values())


@pytest.mark.parametrize("streamed", [False, True])
def test_pruning_follows_the_scheme(mcunet, streamed):
    plan = compile(mcunet, "paper:99kb", num_classes=10, fuse_backward=streamed)
    convs = body_convs(mcunet)
    names = [s.name for s in plan.steps] + [s.name for s in update_steps(plan.steps) if s not in plan.steps]
    # deepest trained layer: conv 21 (weights) vs the last 22 biases -> conv 20
    deepest = min(21, len(convs) - 22)
    assert not any(n.startswith(f"backward_input:{convs[deepest].name}") for n in names)
    assert f"update_bias:{convs[deepest].name}" in names
    assert not any(f"update:{convs[i].name}" in names for i in range(deepest))
    assert f"update:{convs[21].name}" in names and f"update:{convs[36].name}" in names
    # input gradient before the update of the same layer (it needs the old
    # weights; the streamed blocks keep this order inside, tile by tile)
    for op in convs[deepest + 1:]:
        if f"update:{op.name}" in names and f"backward_input:{op.name}" in names:
            assert names.index(f"backward_input:{op.name}") < names.index(f"update:{op.name}")
    # only the selected channels are saved: conv 36 trains 1/8 of its inputs
    saved = plan.tensors[f"saved:{convs[36].name}"]
    x = mcunet.tensors[convs[36].inputs[0]].shape
    assert saved.nbytes == x[1] * x[2] * -(-x[3] // 8)
    # nothing below the deepest layer has a mask or a gradient
    early = {op.output for op in mcunet.ops[:mcunet.ops.index(convs[deepest])]}
    assert not any(t in plan.tensors for t in (f"grad:{o}" for o in early))


def test_sparse_update_costs_less_than_full(mcunet):
    full = compile(mcunet, "full", num_classes=10)
    sparse = compile(mcunet, "paper:49kb", num_classes=10)
    bias = compile(mcunet, "bias-only:4", num_classes=10)
    assert bias.peak_sram_bytes <= sparse.peak_sram_bytes < full.peak_sram_bytes
    assert bias.trainable_params < sparse.trainable_params < full.trainable_params


def test_over_budget_names_the_live_tensors(mcunet):
    with pytest.raises(BudgetExceededError, match=r"peak SRAM [\d,]+ B > budget 65,536 B; live at the peak: .*blocks\.1"):
        compile(mcunet, "paper:99kb", sram="64KB", num_classes=10)
    with pytest.raises(BudgetExceededError, match="Flash"):
        compile(mcunet, "bias-only:2", flash="100KB", num_classes=10)
    plan = compile(mcunet, "bias-only:2", sram="1MB", flash="1MB", num_classes=10)
    assert plan.fits and plan.to_json()["fits"] is True


def test_malformed_schemes_are_rejected(mcunet, tmp_path):
    with pytest.raises(SchemeError, match="conv index 99 does not exist"):
        p = tmp_path / "s.json"
        p.write_text('{"bias_k": 1, "weights": {"99": 1}}')
        compile(mcunet, str(p))
    with pytest.raises(SchemeError, match="outside"):
        p.write_text('{"bias_k": 1, "weights": {"5": 2}}')
        compile(mcunet, str(p))


def test_parse_bytes():
    assert parse_bytes("256KB") == 262144 and parse_bytes("1MB") == 1 << 20
    assert parse_bytes("320kb") == 327680 and parse_bytes(4096) == 4096
    with pytest.raises(tinyqt.TinyQTError, match="cannot read"):
        parse_bytes("lots")


def test_planner_beats_first_fit_on_a_real_training_plan(mcunet):
    plan = compile(mcunet, "paper:99kb", num_classes=10)
    assert plan.lower_bound <= plan.peak_sram_bytes < plan.first_fit_peak
    assert plan.peak_sram_bytes <= 1.02 * plan.lower_bound
    report = plan.to_json()
    assert report["first_fit_peak_bytes"] == plan.first_fit_peak


def test_streamed_backward_tiles_widen_only_into_room():
    """Wider tiles (fewer gradient rescales) only where their step has room
    below the plan's lower bound: mbv2 paper:99kb keeps its peak at the
    bound with some blocks on wider tiles."""
    from tinyqt.compiler.fusion import block_backward_tile
    model = tinyqt.load_tiny_training(shared_model_json("mbv2-w0.35"))
    plan = compile(model, "paper:99kb", num_classes=10)
    blocks = [s for s in plan.steps if s.kind == "backward_block"]
    wider = [s for s in blocks if s.attrs["tile"] > block_backward_tile(model, s.attrs["block"])]
    assert wider and plan.peak_sram_bytes == plan.lower_bound
    # the scratch of a widened step is what its tile needs, and the step still fits under the peak
    from tinyqt.compiler.fusion import block_backward_scratch_bytes
    for s in wider:
        assert plan.tensors[s.scratch].nbytes == block_backward_scratch_bytes(
            model, s.attrs["block"], s.attrs["n_sel"], s.attrs["tile"], s.attrs["x_f32"])


def test_pw1_inputs_in_fp32_only_into_room():
    """pw1's saved inputs go to fp32 once per streamed block backward
    (pw1_x_f32: more scratch, fewer instructions) only where the step has
    room below the peak after the tiles and rings: mbv2 paper:99kb keeps
    its peak at the bound with some blocks converted, not all; with
    --speed-sram bytes to spend every block that trains pw1 converts."""
    from tinyqt.compiler.fusion import block_backward_scratch_bytes
    model = tinyqt.load_tiny_training(shared_model_json("mbv2-w0.35"))
    plan = compile(model, "paper:99kb", num_classes=10)
    blocks = [s for s in plan.steps if s.kind == "backward_block" and s.attrs["n_sel"]]
    converted = [s for s in blocks if s.attrs["x_f32"]]
    assert 0 < len(converted) < len(blocks) and plan.peak_sram_bytes == plan.lower_bound
    for s in blocks:
        assert plan.tensors[s.scratch].nbytes == block_backward_scratch_bytes(
            model, s.attrs["block"], s.attrs["n_sel"], s.attrs["tile"], s.attrs["x_f32"])
    # the conversion takes H x W x n_sel floats
    s = converted[0]
    extra = block_backward_scratch_bytes(model, s.attrs["block"], s.attrs["n_sel"], s.attrs["tile"], True) - \
        block_backward_scratch_bytes(model, s.attrs["block"], s.attrs["n_sel"], s.attrs["tile"], False)
    h, w = model.tensors[s.attrs["block"].input].shape[1:3]
    assert extra == h * w * s.attrs["n_sel"] * 4
    assert not any(s.attrs["x_f32"] for s in compile(model, "paper:99kb", num_classes=10, widen_tiles=False).steps
                   if s.kind == "backward_block")
    spent = compile(model, "paper:99kb", num_classes=10, speed_sram="64KB")
    assert all(s.attrs["x_f32"] for s in spent.steps if s.kind == "backward_block" and s.attrs["n_sel"])


def test_planar_depthwise_rings_only_into_room():
    """The streamed forward blocks keep the planar depthwise ring (fewer
    instructions on Cortex-M4/M7) only where their step has room below the
    peak: mbv2 paper:99kb plans the same peak as without any ring, some
    blocks take it, and the first block, whose step is the peak, does not."""
    from tinyqt.compiler.fusion import block_scratch_bytes
    model = tinyqt.load_tiny_training(shared_model_json("mbv2-w0.35"))
    plan = compile(model, "paper:99kb", num_classes=10)
    bare = compile(model, "paper:99kb", num_classes=10, widen_tiles=False)
    fused = [s for s in plan.steps if s.kind == "fused_block"]
    ringed = [s for s in fused if s.attrs["planar_rows"]]
    assert ringed and not fused[0].attrs["planar_rows"]
    assert plan.peak_sram_bytes <= bare.peak_sram_bytes
    for s in fused:
        blk = s.attrs["block"]
        assert plan.tensors[s.scratch].nbytes == block_scratch_bytes(model, blk, s.attrs["planar_rows"])
        assert block_scratch_bytes(model, blk, True) >= block_scratch_bytes(model, blk, False)


def test_speed_sram_buys_rings_and_tiles_within_its_bytes():
    """speed_sram lets the peak grow by at most that many bytes, and never
    past the SRAM budget, to give every streamed block its planar ring and
    wider backward tiles: on mbv2 paper:99kb, 64 KB gives the first block
    (the lean plan's peak step) its ring; a budget just above the lean
    peak caps what is spent; a negative size is refused."""
    from tinyqt.compiler.fusion import block_scratch_bytes
    from tinyqt.errors import TinyQTError
    model = tinyqt.load_tiny_training(shared_model_json("mbv2-w0.35"))
    lean = compile(model, "paper:99kb", num_classes=10)
    fast = compile(model, "paper:99kb", num_classes=10, speed_sram="64KB")
    assert lean.peak_sram_bytes < fast.peak_sram_bytes <= lean.peak_sram_bytes + 65536

    def rings(plan):
        return [s.attrs["planar_rows"] for s in plan.steps if s.kind == "fused_block"]

    def tiles(plan):
        return [s.attrs["tile"] for s in plan.steps if s.kind == "backward_block"]
    fused = [s for s in fast.steps if s.kind == "fused_block"]
    can = [block_scratch_bytes(model, s.attrs["block"], True) > block_scratch_bytes(model, s.attrs["block"], False)
           for s in fused]
    assert rings(fast) == can and not rings(lean)[0]
    assert all(f >= t for f, t in zip(tiles(fast), tiles(lean))) and tiles(fast) != tiles(lean)
    capped = compile(model, "paper:99kb", num_classes=10, speed_sram="64KB", sram=lean.peak_sram_bytes + 4096)
    assert lean.peak_sram_bytes <= capped.peak_sram_bytes <= lean.peak_sram_bytes + 4096
    with pytest.raises(TinyQTError, match="speed_sram"):
        compile(model, "paper:99kb", num_classes=10, speed_sram=-1)
