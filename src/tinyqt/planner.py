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

Anchors: a buffer may be anchored to another, {child: (parent, delta)},
meaning the two may share bytes when the child sits exactly delta bytes
above the parent (a kernel that writes its output over its dying input in
a safe order, e.g. a row-streamed block, compiler/fusion.py). The greedy
orderings then place the pair as one unit (on the paper's plans that never
packed worse than placing them apart), the first-fit baseline runs both
ways, and verify() allows the overlap only at that exact distance.

All functions are pure; sizes are rounded up to `align` bytes.
"""
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np


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


def _footprint(parent, child, delta, align):
    """Bytes an anchored pair spans when both are live (the bound ignores
    chains: a pair's saving counts once per op where both are live)."""
    lo, hi = min(0, delta), max(_align(parent.size, align), delta + _align(child.size, align))
    return hi - lo


def live_bytes(buffers: Sequence[Buffer], align=4, anchors=None):
    """{op: aligned bytes live at that op} for every op where a buffer starts
    or ends (an anchored pair live together counts its footprint)."""
    by_name = {b.name: b for b in buffers}
    events = {}
    for b in buffers:
        events.setdefault(b.first, 0)
        events.setdefault(b.last, 0)
    out = {}
    for t in events:
        live = sum(_align(b.size, align) for b in buffers if b.first <= t <= b.last)
        for child, (parent, delta) in (anchors or {}).items():
            c, p = by_name[child], by_name[parent]
            if c.first <= t <= c.last and p.first <= t <= p.last:
                live -= _align(c.size, align) + _align(p.size, align) - _footprint(p, c, delta, align)
        out[t] = live
    return out


def lower_bound(buffers: Sequence[Buffer], align=4, anchors=None):
    """max over ops of the aligned bytes live at that op (an anchored pair
    live together counts its footprint)."""
    return max(live_bytes(buffers, align, anchors).values(), default=0)


def _place_in_order(order, align, anchors=None):
    """Places buffers one by one at the lowest aligned offset where they do not
    collide with an already placed, time-overlapping buffer (an anchored pair
    as one unit, when its first member comes up)."""
    groups = _anchor_groups(order, anchors or {})
    placed = []  # (offset, end, buffer)
    offsets = {}
    # the placed buffers' lifetimes and spans as arrays: the time-overlap
    # filter is the planner's inner loop
    n = len(order)
    first, last = np.empty(n, np.int64), np.empty(n, np.int64)
    start, end = np.empty(n, np.int64), np.empty(n, np.int64)

    def put(offset, m):
        i = len(placed)
        placed.append((offset, offset + _align(m.size, align), m))
        first[i], last[i], start[i], end[i] = m.first, m.last, offset, offset + _align(m.size, align)

    for b in order:
        if b.name in offsets:
            continue
        if b.name in groups:
            base = _lowest_base(groups[b.name], len(placed), first, last, start, end, align)
            for m, rel in groups[b.name]:
                offsets[m.name] = base + rel
                put(base + rel, m)
            continue
        size = _align(b.size, align)
        k = len(placed)
        hit = (first[:k] <= b.last) & (b.first <= last[:k]) & (end[:k] > start[:k])
        offset = 0
        if hit.any():
            # sweep the busy spans by start: the offset before span i is the
            # highest aligned end of the spans before it; take the first gap
            o = start[:k][hit]
            by_start = np.argsort(o, kind="stable")
            o = o[by_start]
            e = (end[:k][hit][by_start] + align - 1) // align * align
            before = np.concatenate(([0], np.maximum.accumulate(e)[:-1]))
            fits = before + size <= o
            offset = int(before[np.argmax(fits)]) if fits.any() else max(0, int(e.max()))
        offsets[b.name] = offset
        put(offset, b)
    return offsets


def _anchor_groups(buffers, anchors):
    """{name: [(buffer, offset relative to the group's lowest member)]} for
    every buffer in a chain of anchors (a -> b -> c places all three)."""
    by_name = {b.name: b for b in buffers}
    root = {}

    def find(n):
        while n in anchors:
            n = anchors[n][0]
        return n

    def rel(n):
        return 0 if n not in anchors else rel(anchors[n][0]) + anchors[n][1]
    for child in anchors:
        root.setdefault(find(child), set()).update((child, anchors[child][0]))
    groups = {}
    for members in root.values():
        offs = {n: rel(n) for n in members}
        low = min(offs.values())
        group = [(by_name[n], offs[n] - low) for n in sorted(members, key=offs.get)]
        for n in members:
            groups[n] = group
    return groups


def _lowest_base(members, k, first, last, start, end, align):
    """Lowest base offset at which every (buffer, relative offset) member is
    clear of the k placed buffers (arrays of their lifetimes and spans) it
    overlaps in time."""
    busy = [((first[:k] <= m.last) & (m.first <= last[:k]) & (end[:k] > start[:k]), m, rel) for m, rel in members]
    cands = {0}
    for hit, m, rel in busy:
        cands.update(np.maximum(0, (end[:k][hit] - rel + align - 1) // align * align).tolist())
    for base in sorted(cands):
        if not any(np.any(hit & (start[:k] < base + rel + _align(m.size, align)) & (base + rel < end[:k]))
                   for hit, m, rel in busy):
            return base
    raise AssertionError("no base offset found")  # unreachable: above every placed buffer is free


def _occupied(buffers, offsets, align, t):
    """Bytes covered at op t by the buffers live there (overlapping anchored
    pairs count once)."""
    spans = sorted((offsets[b.name], offsets[b.name] + _align(b.size, align))
                   for b in buffers if b.first <= t <= b.last)
    total, end = 0, 0
    for o, e in spans:
        if e > end:
            total += e - max(o, end)
            end = e
    return total


def _peak_and_live(buffers, offsets, align):
    peak = max((offsets[b.name] + _align(b.size, align) for b in buffers), default=0)
    live = []
    # the op at which the highest-ending buffer is live and the most bytes are
    # occupied, and everything live there; occupied <= the plain sum, so the
    # ops are tried by decreasing sum until no better one can follow
    top = max(buffers, key=lambda b: offsets[b.name] + _align(b.size, align), default=None)
    if top is not None:
        first = np.array([b.first for b in buffers])
        last = np.array([b.last for b in buffers])
        size = np.array([_align(b.size, align) for b in buffers])
        ops = np.arange(top.first, top.last + 1)
        sums = ((first[None, :] <= ops[:, None]) & (ops[:, None] <= last[None, :])) @ size
        best_t, best_sum = top.first, -1
        for i in np.argsort(-sums, kind="stable"):
            if sums[i] <= best_sum:
                break
            t = int(ops[i])
            occupied = _occupied(buffers, offsets, align, t)
            if occupied > best_sum or (occupied == best_sum and t < best_t):
                best_t, best_sum = t, occupied
        live = sorted((b.name for b in buffers if b.first <= best_t <= b.last),
                      key=lambda n: offsets[n])
    return peak, live


def _finish(buffers, offsets, align, strategy):
    peak, live = _peak_and_live(buffers, offsets, align)
    return MemoryPlan(offsets, peak, live, strategy)


def plan_first_fit_by_lifetime(buffers: Sequence[Buffer], align=4, anchors=None) -> MemoryPlan:
    """Baseline: buffers in order of first use (ties: larger first)."""
    _check(buffers)
    order = sorted(buffers, key=lambda b: (b.first, -b.size, b.name))
    return _finish(buffers, _place_in_order(order, align, anchors), align, "first-fit-by-lifetime")


_ORDERINGS = {
    "greedy-size": lambda b: (-b.size, b.first, b.name),
    "greedy-size-x-lifetime": lambda b: (-b.size * (b.last - b.first + 1), -b.size, b.name),
    "greedy-lifetime": lambda b: (-(b.last - b.first), -b.size, b.name),
    "greedy-conflicts": None,  # filled per call: most time-overlapping bytes first
}


def plan_greedy(buffers: Sequence[Buffer], align=4, anchors=None) -> MemoryPlan:
    """Best of several greedy orderings (with the anchored pairs as units) and
    the first-fit baseline (without and with them)."""
    _check(buffers)
    candidates = [plan_first_fit_by_lifetime(buffers, align)]
    if anchors:
        candidates.append(plan_first_fit_by_lifetime(buffers, align, anchors))
    f = np.array([b.first for b in buffers])
    la = np.array([b.last for b in buffers])
    sz = np.array([b.size for b in buffers], np.int64)
    together = (f[:, None] <= la[None, :]) & (f[None, :] <= la[:, None])
    conflict_bytes = dict(zip((b.name for b in buffers), (together @ sz).tolist()))
    for name, key in _ORDERINGS.items():
        if key is None:
            key = lambda b: (-conflict_bytes[b.name], -b.size, b.name)  # noqa: E731
        order = sorted(buffers, key=key)
        candidates.append(_finish(buffers, _place_in_order(order, align, anchors), align, name))
    return min(candidates, key=lambda p: (p.peak, p.strategy != "greedy-size"))


def verify(buffers: Sequence[Buffer], plan: MemoryPlan, align=4, anchors=None):
    """Raises AssertionError naming the pair when two time-overlapping buffers
    share bytes (an anchored pair may, at exactly its distance), or a buffer
    ends past the plan's peak."""
    allowed = {frozenset((c, p)) for c, (p, d) in (anchors or {}).items()
               if plan.offsets[c] - plan.offsets[p] == d}
    items = sorted(buffers, key=lambda b: plan.offsets[b.name])
    for i, a in enumerate(items):
        oa = plan.offsets[a.name]
        if oa % align or oa + a.size > plan.peak:
            raise AssertionError(f"buffer '{a.name}' at {oa}+{a.size} is misaligned or past the peak {plan.peak}")
        for b in items[i + 1:]:
            ob = plan.offsets[b.name]
            if ob >= oa + a.size:
                break
            if a.overlaps(b) and a.size and b.size and frozenset((a.name, b.name)) not in allowed:
                raise AssertionError(f"buffers '{a.name}' [{oa}, {oa + a.size}) and '{b.name}' "
                                     f"[{ob}, {ob + b.size}) overlap in memory and in time")
