"""The fault tests' order check: a late second copy is a duplicate, a late first copy is not."""

from __future__ import annotations

from tests.integration.faults import Ledger


def ledger(*arrivals: int) -> Ledger:
    book = Ledger()
    book.arrivals = list(arrivals)
    return book


def test_rows_in_order_pass_whatever_other_senders_do() -> None:
    # Client 1 and client 2 interleave; each stream is in order.
    assert ledger(1_000_000, 2_000_005, 1_000_001, 2_000_006, 1_000_002).out_of_order() == []


def test_a_late_second_copy_is_a_duplicate_not_a_reordering() -> None:
    # As recorded under CPU load with a memory alarm: request 375's rows arrived in order, then
    # later rows, then a second copy of request 375 (resent after its confirms came too late).
    first = [1_001_875 + i for i in range(5)]
    later = [1_001_880 + i for i in range(5)]
    book = ledger(*first, *later, *first)
    assert book.out_of_order() == []
    assert book.duplicates() == 5


def test_a_row_whose_only_copy_comes_late_is_out_of_order() -> None:
    # Row 1875 stored after the rest of its request and after the next request.
    book = ledger(1_001_876, 1_001_877, 1_001_880, 1_001_875, 1_001_881)
    assert book.out_of_order() == [1_001_875]


def test_a_later_row_overtaking_the_first_copy_is_out_of_order() -> None:
    # A row of the next request stored before the spooled request it must queue behind.
    book = ledger(1_001_874, 1_001_880, 1_001_875, 1_001_876, 1_001_880)
    assert book.out_of_order() == [1_001_875]
