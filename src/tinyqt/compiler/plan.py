"""tinyqt.compile: (int8 model, update scheme, budgets) -> a static Plan.

A Plan is the step list of one training step (training_graph.py) and an
offset in one SRAM arena for every tensor, from the memory planner. Its
report: peak SRAM (the arena size), what is live at the peak, Flash bytes
and trainable parameters. A plan over either budget raises
BudgetExceededError naming the tensors live at the peak.
"""
import re
from dataclasses import dataclass
from typing import Dict, Optional

from ..errors import TinyQTError
from ..planner import Buffer, MemoryPlan, live_bytes, lower_bound, plan_first_fit_by_lifetime, plan_greedy, verify
from ..schemes import parse_scheme
from .fusion import BACKWARD_TILES, block_backward_scratch_bytes, block_scratch_bytes, output_over_input
from .training_graph import KINDS, build_training_graph, update_steps

ALIGN = 8


class BudgetExceededError(TinyQTError):
    """The plan does not fit the SRAM or Flash budget."""


def parse_bytes(text):
    """'256KB', '1MB', '320kB', '262144' -> bytes (KB = 1024)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]i?[bB]?|[bB])?\s*", str(text))
    if not m:
        raise TinyQTError(f"cannot read '{text}' as a size (examples: 256KB, 1MB, 131072)")
    value, unit = float(m.group(1)), (m.group(2) or "").lower()
    mult = 1024 if unit.startswith("k") else (1 << 20 if unit.startswith("m") else 1)
    return int(value * mult)


@dataclass
class Plan:
    model_name: str
    scheme_name: str
    steps: list
    tensors: Dict
    memory: MemoryPlan
    flash_bytes: int
    trainable_params: int
    sram_budget: Optional[int]
    flash_budget: Optional[int]
    graph: object
    first_fit_peak: int = 0
    lower_bound: int = 0
    anchors: Dict = None   # planner anchors: streamed blocks' outputs over their inputs

    @property
    def peak_sram_bytes(self):
        return self.memory.peak

    @property
    def accumulates(self):
        """True when compiled with accumulate=True (gradient sums in the arena)."""
        return "gradacc:head" in self.tensors

    @property
    def fits(self):
        return ((self.sram_budget is None or self.peak_sram_bytes <= self.sram_budget) and
                (self.flash_budget is None or self.flash_bytes <= self.flash_budget))

    def live_at_peak(self):
        """[(name, kind, bytes)] of the tensors live where the peak is reached,
        largest first (a streamed block's output placed over its input shares
        bytes with it: see to_json's output_over_input)."""
        specs = [self.tensors[n] for n in self.memory.live_at_peak]
        return sorted(((s.name, s.kind, s.nbytes) for s in specs), key=lambda r: -r[2])

    def bytes_by_kind(self):
        """Bytes of the tensors live at the peak, by kind."""
        out = {k: 0 for k in KINDS}
        for _, kind, n in self.live_at_peak():
            out[kind] += n
        return {k: v for k, v in out.items() if v}

    def to_json(self):
        return {
            "model": self.model_name, "scheme": self.scheme_name,
            "peak_sram_bytes": self.peak_sram_bytes, "flash_bytes": self.flash_bytes,
            "trainable_params": self.trainable_params, "fits": self.fits,
            "sram_budget": self.sram_budget, "flash_budget": self.flash_budget,
            "live_at_peak": [{"name": n, "kind": k, "bytes": b} for n, k, b in self.live_at_peak()],
            "live_at_peak_by_kind": self.bytes_by_kind(),
            "steps": len(self.steps), "memory_strategy": self.memory.strategy,
            "first_fit_peak_bytes": self.first_fit_peak, "lower_bound_bytes": self.lower_bound,
            # streamed blocks writing their output over their input: {output: [input, byte distance]}
            # (such a pair may both be live at the peak and share bytes)
            "output_over_input": {c: [p, d] for c, (p, d) in (self.anchors or {}).items()
                                  if self.memory.offsets[c] - self.memory.offsets[p] == d},
        }


def _streamed_overlaps(model, graph):
    """Anchors {block output: (block input, delta)} of the row-streamed
    blocks that may write their output over their input: the input's last
    reader is the block (compiler/fusion.py, output_over_input)."""
    anchors = {}
    for k, s in enumerate(graph.steps):
        if s.kind != "fused_block":
            continue
        x, y = s.reads[0], s.writes[0]
        if graph.tensors[x].last != k or graph.tensors[y].first != k:
            continue
        delta = output_over_input(model, s.attrs["block"], ALIGN)
        if delta is not None:
            anchors[y] = (x, delta)
    return anchors


def _place(model, graph):
    """(buffers, anchors, verified memory plan) of a training graph."""
    buffers = [Buffer(s.name, s.nbytes, s.first, s.last) for s in graph.tensors.values() if s.first >= 0]
    anchors = _streamed_overlaps(model, graph)
    memory = plan_greedy(buffers, align=ALIGN, anchors=anchors)
    verify(buffers, memory, align=ALIGN, anchors=anchors)
    return buffers, anchors, memory


def _room(buffers, anchors, spend):
    """(live bytes at each step, the bound they may grow to): the plan's
    lower bound plus spend bytes. With spend 0 the bound does not move when
    a step's own scratch (live at that step only) grows up to it."""
    live = live_bytes(buffers, ALIGN, anchors)
    return live, max(live.values(), default=0) + spend


def _x_f32_blocks(model, graph, buffers, anchors, spend=0):
    """Names of the streamed block backwards whose pw1 update has room below
    the bound (_room) for its saved inputs in fp32 (tinyqt/backward.h,
    pw1_x_f32): about a quarter of that weight gradient's instructions."""
    live, bound = _room(buffers, anchors, spend)
    names = []
    for k, s in enumerate(graph.steps):
        if s.kind != "backward_block" or not s.attrs["n_sel"] or s.attrs["x_f32"]:
            continue
        blk = s.attrs["block"]
        extra = block_backward_scratch_bytes(model, blk, s.attrs["n_sel"], s.attrs["tile"], True) - \
            graph.tensors[s.scratch].nbytes
        if live[k] + extra <= bound:
            names.append(blk.name)
    return names


def _wider_tiles(model, graph, buffers, anchors, spend=0):
    """{block: tile} widening the streamed block backwards' tiles as far as
    their step has room below the bound (_room): fewer, wider tiles spend
    fewer instructions rescaling gradients."""
    live, bound = _room(buffers, anchors, spend)
    tiles = {}
    for k, s in enumerate(graph.steps):
        if s.kind != "backward_block":
            continue
        blk, have = s.attrs["block"], graph.tensors[s.scratch].nbytes
        c_mid = blk.dw.weight.shape[3]
        for tile in BACKWARD_TILES:
            if tile <= s.attrs["tile"]:
                break
            if tile > c_mid and tile // 2 >= c_mid:
                continue  # no wider than the channels need
            extra = block_backward_scratch_bytes(model, blk, s.attrs["n_sel"], tile, s.attrs["x_f32"]) - have
            if live[k] + extra <= bound:
                tiles[blk.name] = tile
                break
    return tiles


def _planar_blocks(model, graph, buffers, anchors, spend=0):
    """Names of the streamed forward blocks whose planar depthwise ring
    (tinyqt/fused.h) fits in their step's room below the plan's lower bound
    plus spend bytes, as _wider_tiles: the ring takes instructions off the
    3x3 depthwise rows on Cortex-M4/M7."""
    live, bound = _room(buffers, anchors, spend)
    names = []
    for k, s in enumerate(graph.steps):
        if s.kind != "fused_block":
            continue
        blk = s.attrs["block"]
        extra = block_scratch_bytes(model, blk, True) - graph.tensors[s.scratch].nbytes
        if 0 < extra and live[k] + extra <= bound:
            names.append(blk.name)
    return names


def _keep_if_peak_holds(model, build, graph, placed, options, limit):
    """(kept options, (graph, placed)): options (a list) tried on the plan
    (graph, placed = _place's result) all at once, else one by one, each
    kept when build(kept + trial) places with a peak of at most limit bytes;
    graph and placed are those of the last kept trial."""
    kept = []
    trials = [options] + ([[o] for o in options] if len(options) > 1 else []) if options else []
    for trial in trials:
        tried = build(kept + trial)
        tried_placed = _place(model, tried)
        if tried_placed[2].peak <= limit:
            kept += trial
            graph, placed = tried, tried_placed
            if trial is options:
                break
    return kept, (graph, placed)


def _flash_bytes(model, graph):
    """Frozen int8 weights, int32 biases and per-channel requantization
    (multiplier + shift) of every conv, plus the head's fp32 initial values."""
    total = 0
    for op in graph.convs:
        total += op.weight.size + 4 * op.out_channels + 8 * op.out_channels
    classes, features = graph.head_shape
    return total + 4 * (classes * features + classes)


def _trainable_params(graph):
    """Weights and biases the step updates, the fp32 head included."""
    classes, features = graph.head_shape
    body = sum(s.attrs.get("trained_params", 0) for s in update_steps(graph.steps))
    return body + classes * features + classes


def compile(model, scheme, sram=None, flash=None, num_classes=None, momentum=0.0, rounding="nearest",
            fuse=True, split_weights=True, accumulate=False, fuse_backward=True, widen_tiles=True,
            speed_sram=0):
    """Plan of one batch-1 training step of model (int8 IR) under scheme
    (a Scheme or its spelling, see tinyqt.schemes; fuse: row-streamed frozen
    inverted-bottleneck blocks, see compiler/fusion.py; fuse_backward: the
    backward of blocks with frozen depthwise / projection weights streamed
    over expanded channels, see training_graph.py; widen_tiles: then widen
    their tiles, give the streamed forward blocks the planar depthwise ring
    (tinyqt/fused.h) and the streamed backwards pw1's saved inputs in fp32
    (pw1_x_f32), where the plan has room (fewer instructions, the
    same peak or lower; False plans once, faster, for callers that only need
    the peak); speed_sram: bytes (or a string like '32KB') the peak may grow
    over the plan without them, and never past the sram budget, to widen
    tiles and give rings and fp32 inputs where there is no room (default 0: the peak does
    not move);
    split_weights: only
    the trained slice of a partially trained layer's weights in SRAM; accumulate:
    room for gradient accumulation, see Trainer(accumulate=N)) within sram / flash
    budgets (bytes or strings like '256KB'; None = unbounded). Raises
    SchemeError for a malformed scheme and BudgetExceededError when over a
    budget (after planning, naming what is live at the peak)."""
    from .training_graph import body_convs
    convs = body_convs(model)
    scheme = parse_scheme(scheme, model.name, len(convs))

    def build(block_tiles=None, planar=(), x_f32=()):
        return build_training_graph(model, scheme, num_classes=num_classes, momentum=bool(momentum),
                                    master_copy=(rounding == "master"), fuse=fuse, split_weights=split_weights,
                                    accumulate=accumulate, fuse_backward=fuse_backward, block_tiles=block_tiles,
                                    planar_blocks=planar, x_f32_blocks=x_f32)

    spend = parse_bytes(speed_sram)
    if spend < 0:
        raise TinyQTError(f"speed_sram must be 0 or more bytes, got {spend:,}")
    graph = build()
    placed = _place(model, graph)
    limit = placed[2].peak + spend
    if sram is not None:  # never spend past the SRAM budget
        limit = max(min(limit, parse_bytes(sram)), placed[2].peak)
    # the same plan with wider tiles where they fit under the lower bound (+ spend),
    # if it packs under the limit; then the planar depthwise rings of the streamed
    # blocks, then pw1's saved inputs in fp32, the same way
    tiles = list(_wider_tiles(model, graph, *placed[:2], limit - placed[2].peak).items()) if widen_tiles else []
    tiles, (graph, placed) = _keep_if_peak_holds(model, lambda kept: build(dict(kept)), graph, placed, tiles,
                                                 limit)
    limit = min(limit, placed[2].peak + spend)  # wider tiles may have lowered the peak
    rings = _planar_blocks(model, graph, *placed[:2], limit - placed[2].peak) if widen_tiles else []
    rings, (graph, placed) = _keep_if_peak_holds(model, lambda kept: build(dict(tiles), kept), graph, placed,
                                                 rings, limit)
    xf = _x_f32_blocks(model, graph, *placed[:2], limit - placed[2].peak) if widen_tiles else []
    _, (graph, placed) = _keep_if_peak_holds(model, lambda kept: build(dict(tiles), rings, kept), graph, placed,
                                             xf, limit)
    buffers, anchors, memory = placed
    plan = Plan(model.name, scheme.name, graph.steps, graph.tensors, memory, _flash_bytes(model, graph),
                _trainable_params(graph), parse_bytes(sram) if sram is not None else None,
                parse_bytes(flash) if flash is not None else None, graph,
                first_fit_peak=plan_first_fit_by_lifetime(buffers, align=ALIGN).peak,
                lower_bound=lower_bound(buffers, align=ALIGN, anchors=anchors))
    plan.anchors = anchors
    if not plan.fits:
        live = ", ".join(f"{n} ({k}, {b:,} B)" for n, k, b in plan.live_at_peak()[:12])
        over = []
        if plan.sram_budget is not None and plan.peak_sram_bytes > plan.sram_budget:
            over.append(f"peak SRAM {plan.peak_sram_bytes:,} B > budget {plan.sram_budget:,} B")
        if plan.flash_budget is not None and plan.flash_bytes > plan.flash_budget:
            over.append(f"Flash {plan.flash_bytes:,} B > budget {plan.flash_budget:,} B")
        err = BudgetExceededError(f"{model.name} with {scheme.name}: {'; '.join(over)}; live at the peak: {live}")
        err.plan = plan
        raise err
    return plan
