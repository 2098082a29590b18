"""Run real stream workers (``nlumon worker`` child processes) against the test services."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaConsumer

from nlumon.schema import connect
from nlumon.services.kafka import ensure_topics
from nlumon.settings import Settings
from streams.demo import start_worker_process


def isolated(settings: Settings, unique: str, **groups: dict) -> Settings:
    """``settings`` with this test's own topics and consumer group (created on the broker)."""
    topics = settings.topics.model_copy(update={
        "utterances": f"utt-{unique}", "predictions": f"pred-{unique}", "dead_letter": f"dlq-{unique}",
        "labeling_queue": f"label-{unique}", "outcomes": f"out-{unique}", **groups.pop("topics", {}),
    })
    kafka = settings.kafka.model_copy(update={"consumer_group": f"g-{unique}"})
    update = {"topics": topics, "kafka": kafka}
    for name, values in groups.items():
        update[name] = getattr(settings, name).model_copy(update=values)
    isolated_settings = settings.model_copy(update=update)
    ensure_topics(isolated_settings)
    return isolated_settings


class Worker:
    """One ``nlumon worker`` process; its output goes to ``log``."""

    def __init__(self, settings: Settings, name: str, log_dir: Path, **env: str) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        verbose = bool(env.pop("VERBOSE", ""))
        self.process = start_worker_process(settings, self.log, name, verbose=verbose, extra_env=env)

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye (a crash)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, workers: tuple[Worker, ...] = ()) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        for worker in workers:
            assert worker.alive(), f"worker {worker.name} died:\n{worker.output()}"
        time.sleep(0.5)
    logs = "\n".join(f"--- {w.name}:\n{w.output()}" for w in workers)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{logs}")


def stored_ids(settings: Settings, ids: list[str], table: str = "predictions") -> dict[str, int]:
    """id -> number of rows after FINAL, for the given ids (0 = missing)."""
    client = connect(settings.clickhouse)
    try:
        rows = client.execute(
            f"SELECT id, count() FROM {table} FINAL WHERE id IN %(ids)s GROUP BY id", {"ids": tuple(ids)})
    finally:
        client.disconnect()
    counts = dict.fromkeys(ids, 0)
    counts.update(dict(rows))
    return counts


def topic_messages(settings: Settings, topic: str, timeout_ms: int = 5000) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=timeout_ms)
    try:
        return list(consumer)
    finally:
        consumer.close()


# -- helpers for scaling, shutdown and chaos runs (additive: the helpers above are unchanged) -------------------

# Lines in a worker's log that mean the worker (or one of its services) crashed, rather than merely logged a
# retry: aiokafka's assertion from a timer reading a revoked partition, an uncaught traceback, Faust's
# "Crashed" state, and an agent that stopped because of an error.
CRASH_SIGNS = (
    "Partition is not assigned",
    "Traceback (most recent call last)",
    "Crashed reason",
    "We experienced a crash",
    "Agent error",
)


def crash_lines(text: str, signs: tuple[str, ...] = CRASH_SIGNS) -> list[str]:
    """The lines of a worker's log that show a crash (empty when none)."""
    return [line for line in text.splitlines() if any(sign in line for sign in signs)]


def full_log(worker: Worker) -> str:
    return worker.log.read_text(errors="replace") if worker.log.exists() else ""


def sigterm_and_time(worker: Worker, wait_s: float) -> float | None:
    """SIGTERM ``worker`` and wait up to ``wait_s``: seconds it took to exit, or None if it is still running
    (then it is left running: the caller decides whether to SIGKILL)."""
    started = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    try:
        worker.process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - started


def owned_partitions(worker: Worker) -> int | None:
    """How many partitions of ``utterances`` the worker said it owns after its last rebalance (None: not yet).

    Reads the ``worker X owns N partition(s) of T`` line that ``streams.agents`` logs on every assignment
    (text or JSON logs)."""
    found = re.findall(r"owns (\d+) partition\(s\)", full_log(worker))
    return int(found[-1]) if found else None


def rss_kib(pid: int) -> int | None:
    """Resident set size of a process (``/proc/<pid>/status`` VmRSS), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def end_offsets(settings: Settings, topic: str | None = None) -> dict[int, int]:
    """partition -> end offset (next offset to be written) of ``topic`` (default: utterances)."""
    from kafka import TopicPartition

    topic = topic or settings.topics.utterances
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in sorted(partitions)])
    finally:
        consumer.close()
    return {tp.partition: offset for tp, offset in ends.items()}


def committed_offsets(settings: Settings, topic: str | None = None) -> dict[int, int]:
    """partition -> offset the workers' consumer group committed on ``topic`` (partitions never committed are
    missing)."""
    from kafka import KafkaAdminClient

    topic = topic or settings.topics.utterances
    group = settings.kafka.consumer_group
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers, client_id="nlumon-test-lag")
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def group_lag(settings: Settings) -> dict[int, int]:
    """partition -> records of ``utterances`` the consumer group has not committed yet (end - committed)."""
    ends = end_offsets(settings)
    committed = committed_offsets(settings)
    return {partition: end - committed.get(partition, 0) for partition, end in ends.items()}


def stored_summary(settings: Settings, ids: list[str], table: str = "predictions") -> dict[str, int]:
    """``rows`` (count() FINAL), ``distinct`` (uniqExact(id) FINAL) and ``raw_rows`` (before FINAL) for ``ids``."""
    client = connect(settings.clickhouse)
    try:
        params = {"ids": tuple(ids)}
        rows, distinct = client.execute(
            f"SELECT count(), uniqExact(id) FROM {table} FINAL WHERE id IN %(ids)s", params)[0]
        raw_rows = client.execute(f"SELECT count() FROM {table} WHERE id IN %(ids)s", params)[0][0]
    finally:
        client.disconnect()
    return {"rows": rows, "distinct": distinct, "raw_rows": raw_rows}


class BackgroundReplay:
    """``streams.replay.send_records`` in a thread, paced at ``rate``/s.

    ``progress`` counts records handed to the producer so far; ``outcome`` is the replay's
    :class:`~streams.replay.ReplayOutcome` once ``join`` returned. With ``hold_last=N`` the last N records wait
    until ``release()``: whatever the test does before releasing happens in the middle of the replay.
    """

    def __init__(self, settings: Settings, records: list[tuple[bytes | None, bytes | None]], rate: float,
                 on_result: Callable | None = None, hold_last: int = 0) -> None:
        import threading

        from streams.replay import send_records

        self.total = len(records)
        self.progress = 0
        self.outcome = None
        self.error: BaseException | None = None
        self.released = threading.Event()
        if not hold_last:
            self.released.set()
        hold_from = self.total - hold_last

        def counted():
            for index, record in enumerate(records):
                if index == hold_from:
                    self.released.wait()
                self.progress += 1
                yield record

        def run() -> None:
            try:
                self.outcome = send_records(settings, counted(), rate=rate, on_result=on_result)
            except BaseException as error:  # surfaced by join()
                self.error = error

        self.thread = threading.Thread(target=run, name="background-replay", daemon=True)
        self.thread.start()

    def release(self) -> None:
        self.released.set()

    def running(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout_s: float = 300):
        self.release()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"the replay did not finish within {timeout_s} s"
        if self.error is not None:
            raise self.error
        return self.outcome


def unique_events(settings: Settings, scenario: str, count: int, seed: int, **options) -> list:
    """A scenario's events with ids unique to this test's topics (the topic's suffix is in the seed)."""
    from streams.scenarios import scenario_events

    suffix = settings.topics.utterances.rsplit("-", 1)[1]
    seed += int(suffix, 16) * 100 if all(c in "0123456789abcdef" for c in suffix) else abs(hash(suffix)) * 100
    return list(scenario_events(scenario, count, seed=seed, ood_texts=lambda: ["what is the meaning of life"],
                                **options))


def free_port() -> int:
    """A TCP port nothing listens on right now (for a worker's metrics, or a ClickHouse that is not there)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def worker_metric(port: int, name: str) -> float:
    """Sum of a metric's samples on a worker's /metrics page (-1 while the page does not answer)."""
    import urllib.request

    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


class BlackholeServer:
    """A TCP listener that accepts connections and never answers: a ClickHouse whose every call blocks."""

    def __init__(self) -> None:
        import socket
        import threading

        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.connections: list = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)
        self.thread.start()

    def _accept(self) -> None:

        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)  # held open, never read, never answered

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        for connection in self.connections:
            connection.close()
        self.listener.close()
