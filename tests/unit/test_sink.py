"""The sink's contract, driven by a client that fails like a restarting server does."""

import pytest

from streams.sink import ClickHouseSink


class FlakyClient:
    """Raises ConnectionRefusedError for the first `failures` inserts, then records rows."""

    def __init__(self, log: list, failures: int) -> None:
        self.log, self.failures = log, failures

    def execute(self, statement: str, columns: list, columnar: bool = False) -> None:
        assert columnar, "the sink sends columns"
        if self.failures_left() > 0:
            raise ConnectionRefusedError("server is down")
        self.log.append((statement, list(zip(*columns, strict=True))))

    def failures_left(self) -> int:
        self.failures -= 1
        return self.failures + 1

    def disconnect(self) -> None:
        pass


def make_sink(log: list, failures: int = 0, **options) -> ClickHouseSink:
    client = FlakyClient(log, failures)
    return ClickHouseSink(lambda: client, columns={"t": ("id", "value")}, backoff_initial_s=0.001,
                          backoff_max_s=0.002, **options)


def test_flush_retries_until_the_server_takes_the_rows():
    written: list = []
    sink = make_sink(written, failures=3)
    sink.add("t", {"id": "a", "value": 1})
    sink.add("t", {"id": "b", "value": 2})
    assert sink.flush() == 2
    assert written == [("INSERT INTO t (id, value) VALUES", [("a", 1), ("b", 2)])]
    assert sink.stats.retries == 3
    assert sink.pending_rows == 0


def test_size_threshold_and_back_pressure():
    written: list = []
    sink = make_sink(written, batch_rows=2, max_pending_rows=3, flush_interval_s=3600)
    sink.add("t", {"id": "a", "value": 1})
    assert not sink.should_flush()
    sink.add("t", {"id": "b", "value": 2})
    assert sink.should_flush()
    sink.add("t", {"id": "c", "value": 3})  # the third pending row makes add() flush inline
    assert sink.pending_rows == 0
    assert sum(len(rows) for _, rows in written) == 3


def test_time_threshold():
    sink = make_sink([], batch_rows=1000, flush_interval_s=0.0)
    assert not sink.should_flush()  # nothing pending, nothing due
    sink.add("t", {"id": "a", "value": 1})
    assert sink.should_flush()


def test_a_row_missing_a_column_is_refused_at_add():
    sink = make_sink([])
    with pytest.raises(ValueError, match="lacks column 'value'"):
        sink.add("t", {"id": "a"})
