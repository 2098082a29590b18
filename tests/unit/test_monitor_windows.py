"""Window bucketing, closing and late-data rules of the monitor job (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from monitor.job import due_windows
from monitor.storage import ObservedWindow, ScoredWindow, naive_utc, window_start_of

T0 = datetime(2026, 3, 1, 12, 0)


def window(minute: int, rows: int = 100, ingested_s: int = 10, window_s: int = 300) -> ObservedWindow:
    start = T0 + timedelta(minutes=minute)
    end = start + timedelta(seconds=window_s)
    return ObservedWindow(start, end, rows, end + timedelta(seconds=ingested_s), "m1")


@pytest.mark.parametrize(
    ("ts", "window_s", "expected"),
    [
        (datetime(2026, 3, 1, 12, 4, 59), 300, datetime(2026, 3, 1, 12, 0)),
        (datetime(2026, 3, 1, 12, 5, 0), 300, datetime(2026, 3, 1, 12, 5)),
        (datetime(2026, 3, 1, 0, 0, 1), 3600, datetime(2026, 3, 1, 0, 0)),
        (datetime(2026, 3, 1, 23, 59, 59), 86400, datetime(2026, 3, 1)),
        (datetime(2026, 3, 1, 12, 0, 13), 7, datetime(2026, 3, 1, 12, 0, 7)),  # 12:00:07 is 1772366407 = 7 * 253195201
    ],
)
def test_window_start_is_the_epoch_aligned_bucket(ts: datetime, window_s: int, expected: datetime) -> None:
    assert window_start_of(ts, window_s) == expected


def test_aware_times_are_bucketed_in_utc() -> None:
    local = datetime(2026, 3, 1, 14, 3, tzinfo=timezone(timedelta(hours=2)))
    assert window_start_of(local, 300) == datetime(2026, 3, 1, 12, 0)
    assert naive_utc(datetime(2026, 3, 1, 12, 0, 0, 999_999, tzinfo=UTC)) == datetime(2026, 3, 1, 12, 0)


def test_a_window_is_due_only_after_its_end_plus_grace() -> None:
    first = window(0)  # ends 12:05
    assert due_windows([first], {}, now=datetime(2026, 3, 1, 12, 5, 59), grace_s=60) == []
    assert due_windows([first], {}, now=datetime(2026, 3, 1, 12, 6), grace_s=60) == [first]
    assert due_windows([first], {}, now=datetime(2026, 3, 1, 12, 5), grace_s=0) == [first]


def test_scored_windows_are_not_due_again_unless_late_rows_came() -> None:
    first = window(0, rows=100, ingested_s=10)
    now = datetime(2026, 3, 1, 13, 0)
    scored_after_rows = ScoredWindow(rows=100, scored_at=first.last_ingested + timedelta(seconds=1))
    assert due_windows([first], {first.start: scored_after_rows}, now=now, grace_s=60) == []
    more_rows = ScoredWindow(rows=90, scored_at=first.last_ingested + timedelta(seconds=1))
    assert due_windows([first], {first.start: more_rows}, now=now, grace_s=60) == [first]
    # same count (a row replaced by a re-delivered one) but ingested after the score
    ingested_later = ScoredWindow(rows=100, scored_at=first.last_ingested - timedelta(seconds=1))
    assert due_windows([first], {first.start: ingested_later}, now=now, grace_s=60) == [first]


def test_due_windows_come_oldest_first_and_open_ones_wait() -> None:
    windows = [window(10), window(0), window(5), window(55)]
    due = due_windows(windows, {}, now=datetime(2026, 3, 1, 13, 0), grace_s=60)
    assert [w.start.minute for w in due] == [0, 5, 10]  # 12:55-13:00 closes at 13:01 with grace


def test_aware_now_is_compared_in_utc() -> None:
    first = window(0)  # closes 12:06 UTC with a minute of grace
    before = datetime(2026, 3, 1, 13, 5, 30, tzinfo=timezone(timedelta(hours=1)))  # 12:05:30 UTC
    assert due_windows([first], {}, now=before, grace_s=60) == []
