"""faceprint.prefetch.ahead: results in order, one step computed ahead, errors where taken."""

from __future__ import annotations

import threading

import pytest

from faceprint.prefetch import ahead


def test_results_come_in_order_and_the_next_step_runs_while_the_caller_works() -> None:
    started: list[int] = []
    gate = threading.Event()

    def work(i: int) -> int:
        started.append(i)
        if i == 1:
            gate.set()
        return i * i

    out = []
    for r in ahead(range(4), work):
        if r == 0:  # while the caller holds result 0, step 1 has been started in the background
            assert gate.wait(5)
        out.append(r)
    assert out == [0, 1, 4, 9] and started == [0, 1, 2, 3]
    assert list(ahead([], work)) == []


def test_an_error_is_raised_where_its_result_is_taken() -> None:
    def work(i: int) -> int:
        if i == 2:
            raise ValueError("bad image #2")
        return i

    got = []
    with pytest.raises(ValueError, match="bad image #2"):
        for r in ahead(range(5), work):
            got.append(r)
    assert got == [0, 1]
