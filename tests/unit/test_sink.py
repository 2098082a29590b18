"""The sink's contract, driven by a client that fails like a restarting server does."""

import threading
import time

import pytest

from streams.sink import ClickHouseSink, RowsRefusedError, SinkStoppedError, is_transient


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


def test_size_threshold_and_back_pressure_signal():
    written: list = []
    sink = make_sink(written, batch_rows=2, max_pending_rows=3, flush_interval_s=3600)
    sink.add("t", {"id": "a", "value": 1})
    assert not sink.should_flush()
    sink.add("t", {"id": "b", "value": 2})
    assert sink.should_flush() and not sink.over_limit
    sink.add("t", {"id": "c", "value": 3})  # add() never writes: the caller sees over_limit and waits for a write
    assert sink.over_limit and written == []
    assert sink.flush() == 3 and sink.pending_rows == 0


def test_time_threshold():
    sink = make_sink([], batch_rows=1000, flush_interval_s=0.0)
    assert not sink.should_flush()  # nothing pending, nothing due
    sink.add("t", {"id": "a", "value": 1})
    assert sink.should_flush()


def test_a_row_missing_a_column_is_refused_at_add():
    sink = make_sink([])
    with pytest.raises(ValueError, match="lacks column 'value'"):
        sink.add("t", {"id": "a"})


class RefusingClient:
    """Refuses, like the server or the driver would for good, every insert that holds a row with a bad value."""

    def __init__(self, log: list, error: Exception, bad: str = "bad") -> None:
        self.log, self.error, self.bad, self.calls = log, error, bad, 0

    def execute(self, statement: str, columns: list, columnar: bool = False) -> None:
        self.calls += 1
        rows = list(zip(*columns, strict=True))
        if any(self.bad in str(value) for row in rows for value in row):
            raise self.error
        self.log.append((statement.split()[2], rows))

    def disconnect(self) -> None:
        pass


def refusing_sink(log: list, error: Exception) -> ClickHouseSink:
    client = RefusingClient(log, error)
    return ClickHouseSink(lambda: client, columns={"first": ("kafka_partition", "kafka_offset", "v"),
                                                   "second": ("kafka_partition", "kafka_offset", "w")},
                          backoff_initial_s=0.001, backoff_max_s=0.002)


def test_a_permanent_error_splits_the_batch_and_returns_only_the_refused_rows():
    from clickhouse_driver.errors import ServerException

    written: list = []
    sink = refusing_sink(written, ServerException("Type mismatch in column v\nStack trace: ...", code=53))
    for offset in range(16):
        sink.add("first", {"kafka_partition": 0, "kafka_offset": offset, "v": "bad" if offset in (3, 11) else "ok"})
        sink.add("second", {"kafka_partition": 0, "kafka_offset": offset, "w": "fine"})
    refused = sink.write(sink.take())
    assert [(r.table, r.row["kafka_offset"]) for r in refused] == [("first", 3), ("first", 11)]
    assert refused[0].message == "ServerException: Code: 53. Type mismatch in column v"
    stored = {(table, row[1]) for table, rows in written for row in rows}
    # the refused records' rows in the later table are not written: one outcome per record
    assert stored == {(t, o) for t in ("first", "second") for o in range(16) if o not in (3, 11)}
    assert sink.stats.rows_refused == 2 and sink.stats.retries == 0


def test_a_driver_encoding_error_is_permanent_too():
    written: list = []
    sink = refusing_sink(written, UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
    sink.add("first", {"kafka_partition": 1, "kafka_offset": 7, "v": "bad"})
    with pytest.raises(RowsRefusedError) as refused:
        sink.flush()
    assert refused.value.refused[0].row == {"kafka_partition": 1, "kafka_offset": 7, "v": "bad"}


@pytest.mark.parametrize(("error", "transient"), [
    (ConnectionRefusedError("down"), True),
    (EOFError(), True),
    (TimeoutError(), True),
    (UnicodeEncodeError("utf-8", "x", 0, 1, "bad"), False),
    (TypeError("unsupported"), False),
])
def test_error_kinds(error, transient):
    assert is_transient(error) is transient


@pytest.mark.parametrize(("code", "transient"), [(252, True), (241, True), (210, True), (60, True),
                                                 (516, True), (497, True), (12345, True),  # not about the rows
                                                 (53, False), (16, False), (6, False), (27, False)])
def test_server_error_codes(code, transient):
    from clickhouse_driver.errors import TypeMismatchError

    assert is_transient(TypeMismatchError("the driver's own check")) is False  # code 53, raised client-side
    from clickhouse_driver.errors import ServerException

    assert is_transient(ServerException("x", code=code)) is transient


def test_stop_interrupts_a_retry_wait_without_acknowledging_anything():
    sink = make_sink([], failures=10**9)
    sink.backoff_initial_s = sink.backoff_max_s = 30.0
    sink.add("t", {"id": "a", "value": 1})
    batch = sink.take()
    threading.Timer(0.2, sink.stop).start()
    started = time.monotonic()
    with pytest.raises(SinkStoppedError):
        sink.write(batch)
    assert time.monotonic() - started < 5


def test_a_table_left_empty_by_earlier_refusals_is_not_split_forever():
    from clickhouse_driver.errors import ServerException

    written: list = []
    sink = refusing_sink(written, ServerException("Type mismatch", code=53))
    sink.add("first", {"kafka_partition": 0, "kafka_offset": 1, "v": "bad"})
    sink.add("second", {"kafka_partition": 0, "kafka_offset": 1, "w": "bad too"})  # dropped: its record was refused
    refused = sink.write(sink.take())
    assert [(r.table, r.row["kafka_offset"]) for r in refused] == [("first", 1)]
    assert written == []
