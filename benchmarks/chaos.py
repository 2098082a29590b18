"""Chaos run: a paced replay with malformed records while workers die and join and both services restart.

On its own Kafka and ClickHouse (ports 26092/26093 and 26000/26123, state in .run/chaos: it restarts them,
so it never touches the demo's or the tests' services), it replays ``--count`` events (``stable`` traffic)
with ``--malformed`` of them malformed (every kind of ``streams.replay.MALFORMED_KINDS``, in turn) into a
topic read by two workers, and during the replay, one fault at a time (each waits until the group recovered
from the one before):

  1. SIGKILL one worker (no flush, no commit, no LeaveGroup: its partitions wait for the session timeout);
  2. start another worker (a rebalance);
  3. restart ClickHouse (stop, ``--outage-s``, start);
  4. restart the Kafka broker (stop, ``--outage-s``, start).

Then it waits until every record is accounted for and prints and saves the accounting: every record the
broker confirmed is either stored (``predictions``, by id, after FINAL) or dead-lettered (``dead_letters``,
by source partition and offset, cross-checked against the dead-letter topic); lost, duplicated after FINAL
and worker crashes (a worker that died other than by our SIGKILL, exited non-zero on SIGTERM, or logged a
crash) must all be 0. Also: recovery after each fault (until stored rows move again, until every partition
that had records waiting moves again, until lag falls), the largest consumer lag, and each worker's RSS over
time (sampled from /proc; flat = within +-10 % of its median after ``--warmup-s``).

    python benchmarks/chaos.py                       # 100,000 events (several minutes on 2 cores)
    python benchmarks/chaos.py --count 3000 --duration 90 --out /tmp/chaos-small.json

Saves benchmarks/results/chaos.json (the command, date, machine and versions first, as every benchmark).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import secrets
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # _meta

from _meta import header, parameters, save  # noqa: E402

from model_runtime.testing import cached_tiny_package  # noqa: E402
from nlumon.schema import connect  # noqa: E402
from nlumon.services import services_down, services_up  # noqa: E402
from nlumon.services.clickhouse import ClickHouseServer  # noqa: E402
from nlumon.services.kafka import KafkaBroker  # noqa: E402
from streams.replay import MALFORMED_KINDS, malformed_record, send_records  # noqa: E402
from streams.scenarios import scenario_events  # noqa: E402
from tests.conftest import make_test_settings  # noqa: E402
from tests.integration.workers import Worker, full_log, isolated, rss_kib, sigterm_and_time  # noqa: E402

FULL_COUNT = 100_000
# Lines that mean a worker crashed (ClickHouse client tracebacks logged at WARNING during a restart do not).
CRASH_SIGNS = ("Partition is not assigned", "We experienced a crash", "Crashed reason", "Agent error")
LOOKBACK_S = 5.0  # a partition whose records waited this long must have moved, or it is stalled
FAULTS = ("sigkill_worker", "add_worker", "restart_clickhouse", "restart_kafka")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=FULL_COUNT, help="events to replay")
    parser.add_argument("--malformed", type=float, default=0.05, help="share of malformed records (every kind)")
    parser.add_argument("--duration", type=float, default=300.0,
                        help="seconds the replay should last (sets the rate unless --rate is given)")
    parser.add_argument("--rate", type=float, default=0.0, help="events per second (0 = count / duration)")
    parser.add_argument("--fault-at", type=float, nargs=4, default=(0.15, 0.3, 0.45, 0.6),
                        metavar=("KILL", "ADD", "CLICKHOUSE", "KAFKA"),
                        help="replay progress (0..1) at which each fault may start (each also waits for the "
                             "recovery from the previous one)")
    parser.add_argument("--outage-s", type=float, default=10.0, help="how long ClickHouse and Kafka stay down")
    parser.add_argument("--recovery-timeout-s", type=float, default=150.0,
                        help="longest wait for a recovery before the next fault goes ahead anyway")
    parser.add_argument("--settle-timeout-s", type=float, default=300.0,
                        help="after the replay: give up waiting when nothing moved for this long")
    parser.add_argument("--quiet-s", type=float, default=30.0,
                        help="after the replay: stop waiting once the lag is 0 and nothing moved for this long")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the run's utterances topic")
    parser.add_argument("--package", type=Path, default=None,
                        help="model package (default: the tiny test package, built once and cached)")
    parser.add_argument("--shutdown-timeout-s", type=float, default=10.0, help="stream.shutdown_timeout_s")
    parser.add_argument("--warmup-s", type=float, default=30.0, help="RSS samples of a worker's first seconds "
                        "are left out of the flatness check")
    parser.add_argument("--rss-interval-s", type=float, default=3.0, help="RSS sampling interval")
    parser.add_argument("--progress-s", type=float, default=5.0, help="seconds between progress lines")
    parser.add_argument("--kafka-port", type=int, default=26092,
                        help="broker port (controller: this + 1); below the ephemeral range (32768-60999), else a "
                             "client reconnecting while the broker is down can get it as its own port")
    parser.add_argument("--clickhouse-port", type=int, default=26000, help="ClickHouse native port")
    parser.add_argument("--clickhouse-http-port", type=int, default=26123, help="ClickHouse HTTP port")
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run" / "chaos", help="services' state and logs")
    parser.add_argument("--keep-services", action="store_true", help="leave the chaos Kafka and ClickHouse running")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "chaos.json")
    return parser.parse_args(argv)


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def now(self) -> float:
        return round(time.monotonic() - self.started, 2)


class Records:
    """The replay's records, generated lazily (a 100,000-event run holds ~160 records of 900 KB), with what each
    one is: ``kinds[i]`` is ``"valid"`` or the malformed kind, ``ids[i]`` its id; ``placed[i]`` (partition,
    offset) once the broker confirmed it, ``errors[i]`` when it refused it."""

    def __init__(self, settings, count: int, malformed: float, seed: int, prefix: str) -> None:
        rng = random.Random(seed)
        self.settings = settings
        self.count = count
        self.prefix = prefix
        self.seed = seed
        self.kinds: list[str] = []
        turn = 0
        for _ in range(count):
            if rng.random() < malformed:
                self.kinds.append(MALFORMED_KINDS[turn % len(MALFORMED_KINDS)])
                turn += 1
            else:
                self.kinds.append("valid")
        self.ids = [f"{prefix}{'bad-' if kind != 'valid' else ''}{i}" for i, kind in enumerate(self.kinds)]
        self.placed: list[tuple[int, int] | None] = [None] * count
        self.errors: dict[int, str] = {}
        self.lock = threading.Lock()

    def __iter__(self):
        for index, event in enumerate(scenario_events("stable", self.count, seed=self.seed, spacing_ms=50.0)):
            kind = self.kinds[index]
            if kind == "valid":
                payload = json.loads(event.value)
                payload["id"] = self.ids[index]
                yield event.key, json.dumps(payload).encode()
            else:
                ts = datetime.fromisoformat(event.truth["ts"])
                yield event.key, malformed_record(index, ts, kind=kind, event_id=self.ids[index],
                                                  max_message_bytes=self.settings.topics.max_message_bytes)

    def on_result(self, index: int, metadata, error) -> None:
        with self.lock:
            if error is None:
                self.placed[index] = (metadata.partition, metadata.offset)
            else:
                self.errors[index] = type(error).__name__


class Replay:
    """``send_records`` of the records in a thread; ``progress`` = records handed to the producer."""

    def __init__(self, settings, records: Records, rate: float) -> None:
        self.records = records
        self.progress = 0
        self.outcome = None
        self.error: BaseException | None = None

        def counted():
            for record in records:
                self.progress += 1
                yield record

        def run() -> None:
            try:
                self.outcome = send_records(settings, counted(), rate=rate, on_result=records.on_result,
                                            flush_timeout_s=300)
            except BaseException as error:  # reported at the end
                self.error = error

        self.thread = threading.Thread(target=run, name="replay", daemon=True)
        self.thread.start()

    def done(self) -> bool:
        return not self.thread.is_alive()


class Samples:
    """What the sampler threads saw, with times relative to the run's start."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: list[tuple[float, int, int]] = []  # (t, stored ids, dead letters)
        self.lag: list[tuple[float, int, dict, dict]] = []  # (t, total lag, committed by partition, end by partition)
        self.rss: dict[str, list[tuple[float, float]]] = {}  # worker -> (t, MiB)
        self.errors: Counter = Counter()

    def last_rows(self) -> tuple[float, int, int] | None:
        with self.lock:
            return self.rows[-1] if self.rows else None

    def last_lag(self) -> tuple[float, int, dict, dict] | None:
        with self.lock:
            return self.lag[-1] if self.lag else None


def sample_rows(settings, records: Records, samples: Samples, clock: Clock, stop: threading.Event) -> None:
    """Stored ids and dead letters of this run, every second (nothing while ClickHouse is down)."""
    client = None
    topic = settings.topics.utterances
    while not stop.is_set():
        try:
            if client is None:
                client = connect(settings.clickhouse)
            stored = client.execute("SELECT uniqExact(id) FROM predictions WHERE id LIKE %(p)s",
                                    {"p": records.prefix + "%"})[0][0]
            dead = client.execute("SELECT uniqExact(kafka_partition, kafka_offset) FROM dead_letters "
                                  "WHERE source_topic = %(t)s", {"t": topic})[0][0]
            with samples.lock:
                samples.rows.append((clock.now(), stored, dead))
        except Exception as error:  # ClickHouse restarting
            samples.errors[f"clickhouse: {type(error).__name__}"] += 1
            if client is not None:
                client.disconnect()
            client = None
        stop.wait(1.0)
    if client is not None:
        client.disconnect()


def sample_lag(settings, samples: Samples, clock: Clock, stop: threading.Event) -> None:
    """The group's committed offsets and the topic's end offsets, every second (nothing while Kafka is down)."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    topic, group = settings.topics.utterances, settings.kafka.consumer_group
    partitions = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]
    admin = consumer = None
    while not stop.is_set():
        try:
            if admin is None:
                admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers, request_timeout_ms=5000,
                                         client_id="nlumon-chaos-lag")
                consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                                         request_timeout_ms=5000, client_id="nlumon-chaos-ends")
            ends = {tp.partition: offset for tp, offset in consumer.end_offsets(partitions, timeout_ms=5000).items()}
            if len(ends) != len(partitions):  # a broker still loading its partitions
                raise RuntimeError("incomplete end offsets")
            offsets = admin.list_group_offsets(group).get(group, {})
            committed = {tp.partition: meta.offset for tp, meta in offsets.items()
                         if tp.topic == topic and meta.offset >= 0}
            lag = sum(end - committed.get(p, 0) for p, end in ends.items())
            with samples.lock:
                samples.lag.append((clock.now(), lag, committed, ends))
        except Exception as error:  # the broker restarting
            samples.errors[f"kafka: {type(error).__name__}"] += 1
            for client in (admin, consumer):
                try:
                    if client is not None:
                        client.close()
                except Exception:
                    pass
            admin = consumer = None
        stop.wait(1.0)
    for client in (admin, consumer):
        if client is not None:
            client.close()


class Fleet:
    """The run's worker processes: which we killed, which died on their own."""

    def __init__(self, settings, log_dir: Path, clock: Clock) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.clock = clock
        self.workers: dict[str, Worker] = {}
        self.started_at: dict[str, float] = {}
        self.killed: set[str] = set()
        self.stopping: set[str] = set()
        self.crashes: list[dict] = []

    def start(self, name: str) -> Worker:
        worker = Worker(self.settings, name, self.log_dir, NLUMON_LOG_FORMAT="json")
        self.workers[name] = worker
        self.started_at[name] = self.clock.now()
        return worker

    def alive(self) -> list[Worker]:
        return [w for w in list(self.workers.values()) if w.alive()]

    def partitions_of(self, name: str) -> list[int] | None:
        """The partitions the worker said it owns after its last rebalance (JSON log line), None before any."""
        found = None
        for line in full_log(self.workers[name]).splitlines():
            if line.startswith("{") and "owns" in line:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if "partitions" in record:
                    found = record["partitions"]
        return found

    def check(self) -> None:
        """Record a worker that exited although nobody killed or stopped it."""
        for name, worker in list(self.workers.items()):
            if name in self.killed or name in self.stopping:
                continue
            if worker.process.poll() is not None and not any(c["worker"] == name for c in self.crashes):
                self.crashes.append({"worker": name, "at_s": self.clock.now(), "exit_code": worker.process.returncode,
                                     "what": "exited on its own", "log_tail": worker.output()[-1500:]})

    def log_crashes(self) -> None:
        for name, worker in list(self.workers.items()):
            lines = [line for line in full_log(worker).splitlines() if any(sign in line for sign in CRASH_SIGNS)]
            if lines:
                self.crashes.append({"worker": name, "what": "crash in the log", "lines": lines[:5],
                                     "count": len(lines)})


def run_fault(fault: dict, fleet: Fleet, settings, args, clock: Clock, echo) -> None:
    """Inflict one fault; fills in ``fault`` (started_s, ended_s, ...)."""
    name = fault["fault"]
    fault["started_s"] = clock.now()
    try:
        inflict(name, fault, fleet, settings, args, clock)
    except Exception as error:  # reported; the run goes on
        fault["error"] = repr(error)
    echo(f"[{clock.now():7.1f}s] fault {name} done" + (f" ({fault['worker']})" if "worker" in fault else "")
         + (f": {fault['error']}" if "error" in fault else ""))
    fault["ended_s"] = clock.now()


def inflict(name: str, fault: dict, fleet: Fleet, settings, args, clock: Clock) -> None:
    if name == "sigkill_worker":
        victim = max((w for w in fleet.alive()), key=lambda w: len(fleet.partitions_of(w.name) or []))
        fault["worker"] = victim.name
        fault["partitions"] = fleet.partitions_of(victim.name)
        fleet.killed.add(victim.name)
        victim.kill()
    elif name == "add_worker":
        worker = fleet.start(f"w{len(fleet.workers) + 1}")
        fault["worker"] = worker.name
    elif name in ("restart_clickhouse", "restart_kafka"):
        service = ClickHouseServer(settings) if name == "restart_clickhouse" else KafkaBroker(settings)
        service.stop()
        fault["stopped_s"] = clock.now()
        time.sleep(args.outage_s)
        for attempt in range(1, 4):  # a failed start is reported, and retried so that the run can finish
            try:
                service.start()
                break
            except Exception as error:
                fault.setdefault("start_errors", []).append(repr(error)[:300])
                if attempt == 3:
                    raise
                time.sleep(5)


def recovery(fault: dict, samples: Samples, until: float | None = None) -> dict:
    """Recovery figures of one fault from the samples (None where it did not happen before ``until``)."""
    ended = fault["ended_s"]
    with samples.lock:
        rows = [r for r in samples.rows if until is None or r[0] <= until]
        lags = [s for s in samples.lag if until is None or s[0] <= until]
    out: dict = {}
    before = [r for r in rows if r[0] <= ended]
    base = (before[-1][1] + before[-1][2]) if before else 0
    moved = next((r[0] for r in rows if r[0] > ended and r[1] + r[2] > base), None)
    out["rows_moving_after_s"] = None if moved is None else round(moved - ended, 1)
    lag_before = [s for s in lags if s[0] <= ended]
    reference = lag_before[-1] if lag_before else None
    after = [s for s in lags if s[0] > ended]
    if reference is None and after:
        reference = after[0]
    if reference is not None:
        moving_at, waiting = partitions_moving(reference, after)
        out["partitions_waiting"] = len(waiting)
        out["all_partitions_moving_after_s"] = None if moving_at is None else round(moving_at - ended, 1)
    series = [s[1] for s in after]
    falling = next((after[i][0] for i in range(1, len(series)) if series[i] < series[i - 1]), None)
    out["lag_falling_after_s"] = None if falling is None else round(falling - ended, 1)
    out["lag_peak_after"] = max(series) if series else None
    return out


def partitions_moving(reference: tuple, after: list, lookback_s: float = LOOKBACK_S) -> tuple[float | None, set]:
    """When every partition that had records waiting (end offset past the group's committed offset at the
    fault's end, as seen at least ``lookback_s`` earlier) has moved on: a partition of a killed worker stays
    put until the group takes it over. Returns (time or None, the partitions that were waiting)."""
    _, _, committed0, _ = reference
    waiting: set = set()
    for k, (t, _, committed, _) in enumerate(after):
        earlier = [s for s in after[:k] if s[0] <= t - lookback_s]
        if not earlier:
            continue
        ends_then = earlier[-1][3]
        waiting = {p for p, end in ends_then.items() if end > committed0.get(p, 0)}
        if waiting and all(committed.get(p, 0) > committed0.get(p, 0) for p in waiting):
            return t, waiting
    return None, waiting


def recovered(fault: dict, samples: Samples, fleet: Fleet, now: float) -> bool:
    """Whether the group is back to normal after ``fault``: rows move again, and every partition with records
    waiting moved (or, ``LOOKBACK_S`` later, none had any waiting); an added worker owns partitions."""
    if fault.get("ended_s") is None:
        return False
    if fault["fault"] == "add_worker":
        name = fault.get("worker")
        if name in fleet.workers and fleet.workers[name].alive() and not fleet.partitions_of(name):
            return False
    figures = recovery(fault, samples)
    if figures["rows_moving_after_s"] is None:
        return False
    if figures.get("all_partitions_moving_after_s") is not None:
        return True
    return now - fault["ended_s"] > LOOKBACK_S + 2 and figures.get("partitions_waiting", 1) == 0


def rss_summary(samples: Samples, fleet: Fleet, warmup_s: float) -> dict:
    out = {}
    for name, series in samples.rss.items():
        steady = [mib for t, mib in series if t - fleet.started_at[name] >= warmup_s]
        entry = {"samples": [[t, round(mib, 1)] for t, mib in series], "started_s": fleet.started_at[name]}
        if len(steady) >= 3:
            median = statistics.median(steady)
            half = steady[len(steady) // 2:]
            entry.update(median_mib=round(median, 1), min_mib=round(min(steady), 1), max_mib=round(max(steady), 1),
                         flat=all(abs(m - median) <= 0.1 * median for m in steady), steady_samples=len(steady),
                         second_half_growth_mib=round(half[-1] - half[0], 1))
        else:
            entry.update(flat=None, steady_samples=len(steady), note="too few samples after warm-up")
        out[name] = entry
    return out


def account(settings, records: Records, sent: int, since) -> dict:
    """Every confirmed record: stored (by id, after FINAL) or dead-lettered (by its source partition and offset,
    in the ``dead_letters`` table and/or on the run's dead-letter topic), or lost."""
    client = connect(settings.clickhouse)
    topic = settings.topics.utterances
    prefix = {"p": records.prefix + "%"}
    try:
        stored_counts = dict(client.execute(
            "SELECT id, count() FROM predictions FINAL WHERE id LIKE %(p)s GROUP BY id", prefix))
        rows_final, distinct = client.execute(
            "SELECT count(), uniqExact(id) FROM predictions FINAL WHERE id LIKE %(p)s", prefix)[0]
        rows_raw = client.execute("SELECT count() FROM predictions WHERE id LIKE %(p)s", prefix)[0][0]
        letters = client.execute(
            "SELECT kafka_partition, kafka_offset, count(), any(reason) FROM dead_letters FINAL "
            "WHERE source_topic = %(t)s GROUP BY kafka_partition, kafka_offset", {"t": topic})
        # rows of this run whose source_topic is not the topic's name (e.g. rewritten on the way): they cannot be
        # matched to their record, so they are counted apart
        strays = client.execute(
            "SELECT source_topic, count() FROM dead_letters WHERE ts >= %(since)s AND source_topic != %(t)s "
            "GROUP BY source_topic", {"t": topic, "since": since})
    finally:
        client.disconnect()
    table = {(p, o): (n, reason) for p, o, n, reason in letters}
    on_topic = dead_letter_topic(settings)
    topic_offsets = on_topic.pop("offsets")
    confirmed = [i for i, placed in enumerate(records.placed) if placed is not None]
    placed_set = {records.placed[i] for i in confirmed}
    stored = dead_lettered = lost = both = 0
    only_table = only_topic = 0
    lost_examples: list[dict] = []
    malformed_stored: Counter = Counter()
    valid_dead: Counter = Counter()
    malformed_dead: Counter = Counter()
    for i in confirmed:
        kind, placed = records.kinds[i], records.placed[i]
        is_stored = stored_counts.get(records.ids[i], 0) > 0
        in_table, in_topic = placed in table, placed in topic_offsets
        is_dead = in_table or in_topic
        if is_stored and is_dead:
            both += 1
        if is_stored:
            stored += 1
            if kind != "valid":
                malformed_stored[kind] += 1
        elif is_dead:
            dead_lettered += 1
            only_table += in_table and not in_topic
            only_topic += in_topic and not in_table
            if kind == "valid":
                reason = (table[placed][1] if in_table else topic_offsets[placed]).split(":")[0][:60]
                valid_dead[reason] += 1
            else:
                malformed_dead[kind] += 1
        else:
            lost += 1
            if len(lost_examples) < 10:
                lost_examples.append({"index": i, "kind": kind, "id": records.ids[i], "partition": placed[0],
                                      "offset": placed[1]})
    sent_ids = {records.ids[i] for i in confirmed}
    return {
        "sent": sent,
        "confirmed": len(confirmed),
        "send_failed": len(records.errors),
        "send_errors": dict(Counter(records.errors.values())),
        "send_failed_kinds": dict(Counter(records.kinds[i] for i in records.errors)),
        "stored": stored,
        "dead_lettered": dead_lettered,
        "lost": lost,
        "stored_and_dead_lettered": both,
        "balanced": len(confirmed) == stored + dead_lettered and lost == 0 and both == 0,
        "duplicates_after_final": rows_final - distinct,
        "rows_before_final": rows_raw,
        "redelivered_rows_merged_by_final": rows_raw - rows_final,
        "stored_not_confirmed": len(set(stored_counts) - sent_ids),
        "dead_letters_table": {
            "source_offsets": len(table),
            "rows_duplicated_after_final": sum(n - 1 for n, _ in table.values()),
            "not_confirmed": len(set(table) - placed_set),
            "missing_but_on_topic": only_topic,
            "rows_with_another_source_topic": dict(strays),
        },
        "dead_letter_topic": {**on_topic, "missing_but_in_table": only_table,
                              "not_confirmed": len(set(topic_offsets) - placed_set)},
        "malformed": {
            "confirmed": sum(1 for i in confirmed if records.kinds[i] != "valid"),
            "dead_lettered_by_kind": dict(sorted(malformed_dead.items())),
            "stored_as_valid_by_kind": dict(sorted(malformed_stored.items())),
            "kinds_sent": len({k for k in records.kinds if k != "valid"}),
        },
        "valid_dead_lettered_by_reason": dict(valid_dead),
        "lost_examples": lost_examples,
    }


def dead_letter_topic(settings) -> dict:
    """The run's dead-letter topic: messages, the source (partition, offset) -> reason they name, and how many
    name another source topic than the run's."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(settings.topics.dead_letter, bootstrap_servers=settings.kafka.bootstrap_servers,
                             group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=8000,
                             max_partition_fetch_bytes=4 * settings.topics.max_message_bytes,
                             fetch_max_bytes=8 * settings.topics.max_message_bytes)
    messages = undecodable = other_source = 0
    offsets: dict[tuple[int, int], str] = {}
    try:
        for message in consumer:
            messages += 1
            try:
                letter = json.loads(message.value)
                offsets[(letter["partition"], letter["offset"])] = str(letter.get("reason", ""))
                other_source += letter.get("source_topic") != settings.topics.utterances
            except (ValueError, TypeError, KeyError, AttributeError):
                undecodable += 1
    finally:
        consumer.close()
    return {"messages": messages, "distinct_source_offsets": len(offsets), "undecodable": undecodable,
            "naming_another_source_topic": other_source, "offsets": offsets}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for noisy in ("clickhouse_driver", "kafka"):  # their retries during the restarts are expected: not on stdout
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    rate = args.rate or max(1.0, args.count / args.duration)
    seed = args.seed if args.seed is not None else int(time.time())
    run = uuid.uuid4().hex[:8]
    clock = Clock()
    run_started = datetime.now(UTC).replace(tzinfo=None, microsecond=0)

    def echo(line: str) -> None:
        print(line, flush=True)

    package = args.package.resolve() if args.package else cached_tiny_package()
    base = make_test_settings(
        kafka={"bootstrap_servers": f"127.0.0.1:{args.kafka_port}", "controller_port": args.kafka_port + 1},
        clickhouse={"port": args.clickhouse_port, "http_port": args.clickhouse_http_port, "database": "nlumon_chaos"},
        services={"run_dir": args.run_dir},
        stream={"metrics_port": 0, "sink_flush_s": 0.5, "max_wait_s": 0.2,
                "shutdown_timeout_s": args.shutdown_timeout_s,
                "pii_hash_key": secrets.token_hex(16)},  # generated traffic; a key of its own all the same
        model={"package_path": package},
    )
    echo(f"chaos run {run}: {args.count} events at {rate:.0f}/s, {args.malformed:.0%} malformed, seed {seed}; "
         f"services on kafka {base.kafka.bootstrap_servers}, clickhouse :{base.clickhouse.port} ({args.run_dir})")
    outcome = services_up(base)
    echo(f"[{clock.now():7.1f}s] services: kafka {outcome['kafka']}, clickhouse {outcome['clickhouse']}")
    settings = isolated(base, run, topics={"partitions": args.partitions})
    log_dir = args.run_dir / "logs" / f"chaos-{run}"
    log_dir.mkdir(parents=True, exist_ok=True)
    records = Records(settings, args.count, args.malformed, seed, prefix=f"chaos{run}-")
    samples = Samples()
    fleet = Fleet(settings, log_dir, clock)
    stop = threading.Event()
    faults: list[dict] = []
    replay: Replay | None = None
    result: dict = {}
    try:
        for name in ("w1", "w2"):
            fleet.start(name)
        deadline = time.monotonic() + 180
        while not all(fleet.partitions_of(n) for n in ("w1", "w2")):
            fleet.check()
            if fleet.crashes or time.monotonic() > deadline:
                raise RuntimeError(f"the first two workers did not get partitions: {fleet.crashes}")
            time.sleep(0.5)
        echo(f"[{clock.now():7.1f}s] two workers own partitions: "
             + ", ".join(f"{n} {fleet.partitions_of(n)}" for n in ("w1", "w2")))
        samplers = [threading.Thread(target=sample_rows, args=(settings, records, samples, clock, stop), daemon=True),
                    threading.Thread(target=sample_lag, args=(settings, samples, clock, stop), daemon=True)]
        for thread in samplers:
            thread.start()
        replay_started = clock.now()
        replay = Replay(settings, records, rate)
        pending = list(zip(FAULTS, args.fault_at, strict=True))
        last_progress = last_rss = -1e9
        last_change, last_total = time.monotonic(), -1
        replay_done_at = None
        fault_thread: threading.Thread | None = None
        while True:
            fleet.check()
            now = clock.now()
            if now - last_rss >= args.rss_interval_s:
                last_rss = now
                for worker in fleet.alive():
                    kib = rss_kib(worker.process.pid)
                    if kib is not None:
                        samples.rss.setdefault(worker.name, []).append((now, kib / 1024))
            if now - last_progress >= args.progress_s:
                last_progress = now
                rows, lag = samples.last_rows(), samples.last_lag()
                mem = " ".join(f"{w.name}:{samples.rss.get(w.name, [(0, 0)])[-1][1]:.0f}MiB" for w in fleet.alive())
                confirmed = sum(1 for p in records.placed if p is not None)
                echo(f"[{now:7.1f}s] sent {replay.progress}/{args.count} confirmed {confirmed} failed "
                     f"{len(records.errors)} | stored {rows[1] if rows else '?'} dead {rows[2] if rows else '?'} | "
                     f"lag {lag[1] if lag else '?'} | workers {mem} | crashes {len(fleet.crashes)}")
            busy = fault_thread is not None and fault_thread.is_alive()
            if pending and not busy and replay.progress >= pending[0][1] * args.count:
                if not faults or recovered(faults[-1], samples, fleet, clock.now()) or \
                        clock.now() - faults[-1]["ended_s"] > args.recovery_timeout_s:
                    name, _ = pending.pop(0)
                    during = not replay.done()
                    echo(f"[{clock.now():7.1f}s] fault {name} at {replay.progress}/{args.count} sent"
                         + ("" if during else " (AFTER the replay ended: the previous recovery took long)"))
                    fault = {"fault": name, "during_replay": during, "sent_before": replay.progress}
                    faults.append(fault)
                    fault_thread = threading.Thread(target=run_fault, args=(fault, fleet, settings, args, clock, echo),
                                                    name="fault", daemon=True)
                    fault_thread.start()
            if replay.done() and replay_done_at is None:
                replay_done_at = clock.now()
                echo(f"[{replay_done_at:7.1f}s] replay finished: "
                     f"{replay.outcome.summary() if replay.outcome else replay.error}")
            rows = samples.last_rows()
            total = (rows[1] + rows[2]) if rows else -1
            if total != last_total:
                last_total, last_change = total, time.monotonic()
            if replay_done_at is not None and not pending and not (fault_thread and fault_thread.is_alive()):
                confirmed = sum(1 for p in records.placed if p is not None)
                lag = samples.last_lag()
                if total >= confirmed and lag is not None and lag[1] == 0:
                    break
                if lag is not None and lag[1] == 0 and time.monotonic() - last_change > args.quiet_s:
                    echo(f"[{clock.now():7.1f}s] every record committed and nothing moved for {args.quiet_s:.0f} s: "
                         "accounting as is")
                    break
                if time.monotonic() - last_change > args.settle_timeout_s:
                    echo(f"[{clock.now():7.1f}s] nothing moved for {args.settle_timeout_s:.0f} s: accounting as is")
                    break
                if not fleet.alive():
                    echo(f"[{clock.now():7.1f}s] no worker left alive: accounting as is")
                    break
            time.sleep(0.5)
        settled_at = clock.now()
        time.sleep(3)  # a last commit and a last sample
        stop.set()
        for thread in samplers:
            thread.join(15)
        accounting = account(settings, records, replay.outcome.sent if replay.outcome else replay.progress,
                             run_started)
        shutdowns = {}
        for worker in fleet.alive():
            fleet.stopping.add(worker.name)
            took = sigterm_and_time(worker, args.shutdown_timeout_s + 10)
            if took is None:
                worker.kill()
            shutdowns[worker.name] = {"stopped_in_s": None if took is None else round(took, 1),
                                      "exit_code": worker.process.returncode}
            if took is None or worker.process.returncode != 0:
                fleet.crashes.append({"worker": worker.name, "what": "bad stop on SIGTERM", **shutdowns[worker.name]})
        fleet.log_crashes()
        for index, fault in enumerate(faults):
            if fault.get("ended_s") is None:
                continue
            until = faults[index + 1]["started_s"] if index + 1 < len(faults) else None
            fault.update(recovery(fault, samples, until))
        with samples.lock:
            lag_values = [(t, lag) for t, lag, _, _ in samples.lag]
        rss = rss_summary(samples, fleet, args.warmup_s)
        flat = [entry["flat"] for entry in rss.values() if entry["flat"] is not None]
        result = {
            **header(argv if argv is not None else sys.argv[1:],
                     ["faust-streaming", "aiokafka", "kafka-python", "clickhouse-driver", "onnxruntime"]),
            "services": {"kafka": "3.9.1 (nlumon/services/kafka-pom.xml)",
                         "clickhouse": ClickHouseServer(settings).version()},
            "parameters": {**parameters(args), "rate": rate, "seed": seed, "package": str(package)},
            "small_run": args.count < FULL_COUNT,
            "note": (f"small development run ({args.count} events); the full run is {FULL_COUNT} events"
                     if args.count < FULL_COUNT else "full run"),
            "run": run,
            "replay": {"started_s": replay_started, "finished_s": replay_done_at,
                       "outcome": replay.outcome.summary() if replay.outcome else repr(replay.error)},
            "settled_s": settled_at,
            "accounting": accounting,
            "worker_crashes": len(fleet.crashes),
            "crashes": fleet.crashes,
            "killed_by_us": sorted(fleet.killed),
            "shutdowns": shutdowns,
            "faults": faults,
            "largest_lag": max((lag for _, lag in lag_values), default=None),
            "lag_samples": [[t, lag] for t, lag in lag_values[:: max(1, len(lag_values) // 200)]],
            "sampling_errors": dict(samples.errors),
            "rss": rss,
            "rss_flat_within_10pct": all(flat) if flat else None,
            "verdict": {
                "sent_equals_stored_plus_dead_lettered": accounting["balanced"],
                "lost": accounting["lost"],
                "duplicates_after_final": accounting["duplicates_after_final"],
                "worker_crashes": len(fleet.crashes),
            },
        }
    finally:
        stop.set()
        for worker in fleet.workers.values():
            if worker.alive():
                worker.kill()
        if not args.keep_services:
            services_down(base)
    print_summary(result, echo)
    save(result, args.out)
    verdict = result["verdict"]
    ok = (verdict["sent_equals_stored_plus_dead_lettered"] and verdict["lost"] == 0
          and verdict["duplicates_after_final"] == 0 and verdict["worker_crashes"] == 0)
    return 0 if ok else 1


def print_summary(result: dict, echo) -> None:
    a = result["accounting"]
    echo("")
    echo(f"accounting ({result['note']}):")
    echo(f"  sent {a['sent']}, confirmed by the broker {a['confirmed']}, refused {a['send_failed']} {a['send_errors']}")
    echo(f"  stored {a['stored']} + dead-lettered {a['dead_lettered']} = {a['stored'] + a['dead_lettered']} "
         f"(confirmed {a['confirmed']}): {'balanced' if a['balanced'] else 'NOT balanced'}")
    echo(f"  lost {a['lost']}, duplicates after FINAL {a['duplicates_after_final']} "
         f"(rows before FINAL {a['rows_before_final']}: "
         f"{a['redelivered_rows_merged_by_final']} redelivered rows merged)")
    echo(f"  malformed: {a['malformed']['confirmed']} confirmed of {a['malformed']['kinds_sent']} kinds; "
         f"stored as valid: {a['malformed']['stored_as_valid_by_kind'] or 'none'}")
    echo(f"  dead_letters table: {a['dead_letters_table']}")
    echo(f"  dead-letter topic: {a['dead_letter_topic']}")
    echo(f"worker crashes: {result['worker_crashes']} (killed by us: {', '.join(result['killed_by_us']) or 'none'})")
    for crash in result["crashes"]:
        echo(f"  {crash['worker']}: {crash['what']} {crash.get('lines', crash.get('exit_code', ''))}")
    echo("faults (seconds after the fault ended):")
    for fault in result["faults"]:
        echo(f"  {fault['fault']:20} at {fault['started_s']:6.1f}s"
             f"  rows moving after {fault.get('rows_moving_after_s')}"
             f"  all waiting partitions moving after {fault.get('all_partitions_moving_after_s')}"
             f"  lag falling after {fault.get('lag_falling_after_s')}  lag peak {fault.get('lag_peak_after')}")
    echo(f"largest lag: {result['largest_lag']}")
    for name, entry in result["rss"].items():
        echo(f"  RSS {name}: median {entry.get('median_mib')} MiB, {entry.get('min_mib')}..{entry.get('max_mib')} "
             f"after warm-up, flat: {entry['flat']}, growth over the second half "
             f"{entry.get('second_half_growth_mib')} MiB ({entry['steady_samples']} samples)")
    echo(f"RSS flat within +-10 % after warm-up: {result['rss_flat_within_10pct']}")


if __name__ == "__main__":
    sys.exit(main())
