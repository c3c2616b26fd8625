"""The collector after start-up (heap.py): start-up objects frozen, later ones collected as usual."""

from __future__ import annotations

import gc

from watchword import heap


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_start_up_objects_are_frozen_out_of_what_a_full_collection_walks() -> None:
    try:
        tracked = len(gc.get_objects())
        frozen = heap.freeze_startup_objects()
        assert frozen > 10_000  # the test process's modules, as a server's
        assert len(gc.get_objects()) < tracked / 10  # what a full collection walks from now on
    finally:
        gc.unfreeze()


def test_garbage_made_after_the_freeze_is_still_collected() -> None:
    try:
        heap.freeze_startup_objects()
        Cycle()
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
