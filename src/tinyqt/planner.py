"""Static memory planning: one offset in one arena for every buffer.

A buffer is live from the op that writes it first to the op that reads it
last (inclusive op indices). Two buffers whose lifetimes intersect must not
share bytes. The planner minimizes the arena size (the peak).

- `plan_first_fit_by_lifetime`: the baseline (buffers in order of first use,
  each at the lowest free offset), what a naive runtime allocator achieves.
- `plan_greedy`: TFLite Micro's GreedyMemoryPlanner idea (largest first, each
  at the lowest offset that fits among the already placed buffers it overlaps
  in time), run over several orderings; the best result is kept, and it is
  never worse than the baseline because the baseline is one of the candidates.
- `lower_bound`: the largest total size live at one op; no plan can be
  smaller.

All functions are pure; sizes are rounded up to `align` bytes.
"""
from dataclasses import dataclass
from typing import Dict, List, Sequence


@dataclass(frozen=True)
class Buffer:
    """A tensor to place: bytes, and the first and last op index that use it."""
    name: str
    size: int
    first: int
    last: int

    def overlaps(self, other):
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    """Offsets by buffer name, the arena size (peak) and the buffers live at
    the op where the peak is reached."""
    offsets: Dict[str, int]
    peak: int
    live_at_peak: List[str]
    strategy: str

    def end(self, buffers):
        return max((self.offsets[b.name] + b.size for b in buffers), default=0)


def _align(n, align):
    return (n + align - 1) // align * align


def _check(buffers):
    names = set()
    for b in buffers:
        if b.size < 0 or b.first < 0 or b.last < b.first:
            raise ValueError(f"buffer '{b.name}': size {b.size}, lifetime [{b.first}, {b.last}] is invalid")
        if b.name in names:
            raise ValueError(f"buffer '{b.name}' is listed twice")
        names.add(b.name)


def lower_bound(buffers: Sequence[Buffer], align=4):
    """max over ops of the aligned bytes live at that op."""
    events = {}
    for b in buffers:
        events.setdefault(b.first, 0)
        events.setdefault(b.last, 0)
    best = 0
    for t in events:
        best = max(best, sum(_align(b.size, align) for b in buffers if b.first <= t <= b.last))
    return best


def _place_in_order(order, align):
    """Places buffers one by one at the lowest aligned offset where they do not
    collide with an already placed, time-overlapping buffer."""
    placed = []  # (offset, end, buffer)
    offsets = {}
    for b in order:
        size = _align(b.size, align)
        busy = sorted((o, e) for o, e, p in placed if p.overlaps(b) and e > o)
        offset = 0
        for o, e in busy:
            if offset + size <= o:
                break
            offset = max(offset, _align(e, align))
        offsets[b.name] = offset
        placed.append((offset, offset + size, b))
    return offsets


def _peak_and_live(buffers, offsets, align):
    peak = max((offsets[b.name] + _align(b.size, align) for b in buffers), default=0)
    live = []
    # the op at which the highest-ending buffer is live, and everything live there
    top = max(buffers, key=lambda b: offsets[b.name] + _align(b.size, align), default=None)
    if top is not None:
        best_t, best_sum = top.first, -1
        for t in range(top.first, top.last + 1):
            s = sum(_align(b.size, align) for b in buffers if b.first <= t <= b.last)
            if s > best_sum:
                best_t, best_sum = t, s
        live = sorted((b.name for b in buffers if b.first <= best_t <= b.last),
                      key=lambda n: offsets[n])
    return peak, live


def _finish(buffers, offsets, align, strategy):
    peak, live = _peak_and_live(buffers, offsets, align)
    return MemoryPlan(offsets, peak, live, strategy)


def plan_first_fit_by_lifetime(buffers: Sequence[Buffer], align=4) -> MemoryPlan:
    """Baseline: buffers in order of first use (ties: larger first)."""
    _check(buffers)
    order = sorted(buffers, key=lambda b: (b.first, -b.size, b.name))
    return _finish(buffers, _place_in_order(order, align), align, "first-fit-by-lifetime")


_ORDERINGS = {
    "greedy-size": lambda b: (-b.size, b.first, b.name),
    "greedy-size-x-lifetime": lambda b: (-b.size * (b.last - b.first + 1), -b.size, b.name),
    "greedy-lifetime": lambda b: (-(b.last - b.first), -b.size, b.name),
    "greedy-conflicts": None,  # filled per call: most time-overlapping bytes first
}


def plan_greedy(buffers: Sequence[Buffer], align=4) -> MemoryPlan:
    """Best of several greedy orderings and the first-fit baseline."""
    _check(buffers)
    candidates = [plan_first_fit_by_lifetime(buffers, align)]
    conflict_bytes = {b.name: sum(o.size for o in buffers if o.overlaps(b)) for b in buffers}
    for name, key in _ORDERINGS.items():
        if key is None:
            key = lambda b: (-conflict_bytes[b.name], -b.size, b.name)  # noqa: E731
        order = sorted(buffers, key=key)
        candidates.append(_finish(buffers, _place_in_order(order, align), align, name))
    return min(candidates, key=lambda p: (p.peak, p.strategy != "greedy-size"))


def verify(buffers: Sequence[Buffer], plan: MemoryPlan, align=4):
    """Raises AssertionError naming the pair when two time-overlapping buffers
    share bytes, or a buffer ends past the plan's peak."""
    items = sorted(buffers, key=lambda b: plan.offsets[b.name])
    for i, a in enumerate(items):
        oa = plan.offsets[a.name]
        if oa % align or oa + a.size > plan.peak:
            raise AssertionError(f"buffer '{a.name}' at {oa}+{a.size} is misaligned or past the peak {plan.peak}")
        for b in items[i + 1:]:
            ob = plan.offsets[b.name]
            if ob >= oa + a.size:
                break
            if a.overlaps(b) and a.size and b.size:
                raise AssertionError(f"buffers '{a.name}' [{oa}, {oa + a.size}) and '{b.name}' "
                                     f"[{ob}, {ob + b.size}) overlap in memory and in time")
