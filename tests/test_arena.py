"""The C arena: hard bounds, nothing handed out past the end, and the numbers
an error message needs."""
import numpy as np

from tinyqt import _ckernels

TQ_ERR_NO_MEMORY = -5


def test_bump_allocations_fit_exactly():
    buf = np.zeros(64, np.uint8)
    arena = _ckernels.Arena(buf)
    assert arena.alloc(40, 4) == (0, 0)
    st, off = arena.alloc(24, 4)
    assert (st, off) == (0, 40)
    assert arena.remaining == 0
    assert arena.high_water == 64


def test_overflow_is_refused_and_reports_sizes():
    arena = _ckernels.Arena(np.zeros(100, np.uint8))
    assert arena.alloc(60, 1)[0] == 0
    st, off = arena.alloc(41, 1)
    assert st == TQ_ERR_NO_MEMORY and off == -1
    assert arena.last_request == 41 and arena.last_available == 40
    assert arena.remaining == 40  # the failed request took nothing
    assert arena.alloc(40, 1)[0] == 0


def test_alignment_padding_counts_against_the_size():
    arena = _ckernels.Arena(np.zeros(16, np.uint8))
    assert arena.alloc(3, 1)[0] == 0
    st, off = arena.alloc(4, 8)
    assert st == 0 and off % 8 == 0 or st == TQ_ERR_NO_MEMORY


def test_planned_regions_are_bounds_checked_without_overflow():
    arena = _ckernels.Arena(np.zeros(256, np.uint8))
    assert arena.at(0, 256) == 0
    assert arena.at(200, 56) == 0
    assert arena.at(200, 57) == TQ_ERR_NO_MEMORY
    assert arena.last_request == 57 and arena.last_available == 56
    assert arena.at(2**63, 2**63) == TQ_ERR_NO_MEMORY
    assert arena.at(300, 0) == TQ_ERR_NO_MEMORY


def test_reset_releases_bump_allocations():
    arena = _ckernels.Arena(np.zeros(32, np.uint8))
    arena.alloc(32, 1)
    arena.reset()
    assert arena.remaining == 32
