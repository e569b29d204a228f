"""The static memory planner: no two simultaneously live buffers overlap, the
peak never exceeds the first-fit baseline, and never beats the lower bound."""
import random

import pytest

from tinyqt.planner import Buffer, MemoryPlan, lower_bound, plan_first_fit_by_lifetime, plan_greedy, verify


def _random_buffers(rng, n_ops, n_bufs):
    bufs = []
    for i in range(n_bufs):
        first = rng.randrange(n_ops)
        last = min(n_ops - 1, first + rng.choice([0, 1, 1, 2, 3, rng.randrange(n_ops)]))
        bufs.append(Buffer(f"b{i}", rng.choice([4, 16, 100, 1000, 4096, rng.randrange(1, 20000)]),
                           first, last))
    return bufs


@pytest.mark.parametrize("seed", range(60))
def test_random_plans_are_valid_and_no_worse_than_baseline(seed):
    rng = random.Random(seed)
    bufs = _random_buffers(rng, rng.randrange(2, 40), rng.randrange(1, 60))
    base = plan_first_fit_by_lifetime(bufs)
    best = plan_greedy(bufs)
    verify(bufs, base)
    verify(bufs, best)
    assert lower_bound(bufs) <= best.peak <= base.peak
    assert set(best.live_at_peak) <= {b.name for b in bufs}


def test_greedy_beats_first_fit_on_a_known_case():
    # First-fit places 'a' (first used at op 1, larger) at 0 and 'c' above it;
    # 'b' then lands above 'c' at 300. Largest-first puts 'b' at 0, 'c' at
    # 300 and 'a' at 0 beside 'b' in time: 400 bytes, the lower bound.
    bufs = [Buffer("a", 200, 1, 2), Buffer("b", 300, 3, 3), Buffer("c", 100, 1, 3)]
    base = plan_first_fit_by_lifetime(bufs)
    best = plan_greedy(bufs)
    verify(bufs, best)
    assert base.peak == 600
    assert best.peak == lower_bound(bufs) == 400


def test_greedy_is_strictly_better_on_average():
    rng = random.Random(1234)
    wins = 0
    for _ in range(200):
        bufs = _random_buffers(rng, 30, 40)
        if plan_greedy(bufs).peak < plan_first_fit_by_lifetime(bufs).peak:
            wins += 1
    assert wins >= 40  # a real improvement, not a tie in disguise


def test_live_at_peak_names_the_peak_buffers():
    bufs = [Buffer("a", 10, 0, 1), Buffer("b", 20, 1, 2), Buffer("c", 5, 3, 3)]
    plan = plan_greedy(bufs)
    assert plan.peak == 32  # 12 + 20 aligned to 4
    assert sorted(plan.live_at_peak) == ["a", "b"]


def test_verify_catches_an_overlap():
    bufs = [Buffer("a", 8, 0, 1), Buffer("b", 8, 1, 2)]
    plan = plan_greedy(bufs)
    plan.offsets["b"] = plan.offsets["a"]
    with pytest.raises(AssertionError, match="'a'.*'b'|'b'.*'a'"):
        verify(bufs, plan)


def test_bad_buffers_are_rejected():
    with pytest.raises(ValueError, match="'x'"):
        plan_greedy([Buffer("x", 4, 3, 1)])
    with pytest.raises(ValueError, match="twice"):
        plan_greedy([Buffer("x", 4, 0, 1), Buffer("x", 4, 0, 1)])


def test_anchored_pair_shares_bytes_only_at_its_distance():
    """A streamed block's output anchored over its dying input: the pair is
    placed as one unit (less memory), verify() accepts exactly that overlap."""
    bufs = [Buffer("in", 96, 0, 1), Buffer("out", 64, 1, 3), Buffer("next", 48, 2, 3), Buffer("keep", 16, 0, 3)]
    anchors = {"out": ("in", 32)}
    plain = plan_greedy(bufs, align=8)
    best = plan_greedy(bufs, align=8, anchors=anchors)
    assert best.offsets["out"] - best.offsets["in"] == 32
    assert best.peak < plain.peak == 16 + 96 + 64
    assert lower_bound(bufs, 8, anchors) == 128 <= best.peak
    verify(bufs, best, align=8, anchors=anchors)
    moved = MemoryPlan(dict(best.offsets, out=best.offsets["in"] + 8), best.peak, [], "moved")
    with pytest.raises(AssertionError, match="overlap"):
        verify(bufs, moved, align=8, anchors=anchors)
    with pytest.raises(AssertionError, match="overlap"):
        verify(bufs, best, align=8)  # without the anchor the overlap is an error


def test_anchor_chains_are_placed_together():
    bufs = [Buffer("a", 80, 0, 1), Buffer("b", 48, 1, 2), Buffer("c", 40, 2, 3), Buffer("z", 8, 0, 3)]
    anchors = {"b": ("a", 16), "c": ("b", -8)}
    plan = plan_greedy(bufs, align=8, anchors=anchors)
    o = plan.offsets
    assert o["b"] - o["a"] == 16 and o["c"] - o["b"] == -8
    verify(bufs, plan, align=8, anchors=anchors)
    assert plan.peak == 80 + 8
