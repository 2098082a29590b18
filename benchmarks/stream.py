"""Stream pipeline throughput and latency, against the bare model and a naive baseline, in one run.

Measures, on real Kafka and ClickHouse (started if needed, on the test ports):
  1. bare model: utterances/s of ``runtime.predict`` alone at the serving batch size;
  2. pipeline: sustained utterances/s from `utterances` to durable ClickHouse rows through one
     `nlumon worker` (a backlog is produced first, then the worker drains it);
  3. latency at 50 % of the pipeline's rate: p50/p95 from producer send to the route decision arriving on the
     `predictions` topic (what an assistant acts on; a consumer with a 10 ms fetch wait), and from send to the
     row being visible in ClickHouse (polled every 50 ms, so those figures carry up to ~50 ms of resolution);
  4. naive baseline: one inference and one single-row insert per message, same model;
  and the worker's peak RSS. The bare model, the worker and the naive baseline load the model the same way
  (``--backend``, sub-batches, threads). ``bare_over_naive`` is the ceiling of ``pipeline_over_naive``: a
  pipeline that cost nothing around the model. Saves benchmarks/results/stream.json.

    python benchmarks/stream.py --package models/quick --count 6000
    python benchmarks/stream.py --package models/quick --backend onnx-int8 --out benchmarks/results/stream_int8.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # _meta

from nlumon.schema import connect  # noqa: E402
from nlumon.services import services_up  # noqa: E402
from streams.model_service import limit_blas_threads  # noqa: E402
from streams.replay import produce  # noqa: E402
from streams.scenarios import scenario_events  # noqa: E402
from tests.conftest import make_test_settings  # noqa: E402
from tests.integration.workers import Worker, isolated  # noqa: E402

POLL_S = 0.25


def count_rows(settings, prefix: str) -> int:
    client = connect(settings.clickhouse)
    try:
        return client.execute("SELECT uniqExact(id) FROM predictions WHERE id LIKE %(p)s", {"p": prefix + "%"})[0][0]
    finally:
        client.disconnect()


def bare_model(settings, texts: list[str], batch: int) -> tuple[float, int]:
    """Utterances/s of ``Runtime.predict`` alone, loaded as the worker loads it (same backend, threads,
    sub-batches), and the sub-batch it ran with."""
    from streams.model_service import ModelService

    runtime = ModelService(settings.model).load(Path(settings.model.package_path)).runtime
    sub_batch = runtime.sub_batch
    runtime.predict(texts[:batch])  # warm-up
    started = time.perf_counter()
    for first in range(0, len(texts), batch):
        runtime.predict(texts[first:first + batch])
    elapsed = time.perf_counter() - started
    runtime.close()
    return len(texts) / elapsed, sub_batch


def events(prefix: str, count: int, seed: int) -> list:
    return list(scenario_events("stable", count, seed=seed))


def retag(event_list: list, prefix: str) -> list[tuple[bytes, bytes, str]]:
    """(key, value, id) with ids that start with ``prefix`` (so the benchmark counts only its own rows)."""
    out = []
    for event in event_list:
        payload = json.loads(event.value)
        payload["id"] = f"{prefix}{payload['id']}"
        out.append((event.key, json.dumps(payload).encode(), payload["id"]))
    return out


def pipeline_rate(settings, records, prefix: str, log_dir: Path) -> tuple[float, int]:
    produce(settings, ((k, v) for k, v, _ in records))
    worker = Worker(settings, "bench", log_dir)
    try:
        while count_rows(settings, prefix) == 0:
            assert worker.alive(), worker.output()
            time.sleep(0.05)
        first_seen, first_count = time.perf_counter(), count_rows(settings, prefix)
        while (done := count_rows(settings, prefix)) < len(records):
            assert worker.alive(), worker.output()
            time.sleep(POLL_S)  # each count is a ClickHouse query on the same 2 cores: poll gently
        elapsed = time.perf_counter() - first_seen
        peak_rss_kb = int(next(line.split()[1] for line in open(f"/proc/{worker.process.pid}/status")
                               if line.startswith("VmHWM")))
        return (done - first_count) / elapsed, peak_rss_kb
    finally:
        worker.stop()


def latency_at(settings, records, rate: float, log_dir: Path) -> tuple[list[float], list[float]]:
    """Milliseconds from send to decision (``predictions`` topic) and from send to ClickHouse row, sorted."""
    sent_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    decided_at: dict[str, float] = {}
    worker = Worker(settings, "bench-latency", log_dir)
    time.sleep(12)  # model loaded and partitions assigned before the clock starts
    listening, stop = threading.Event(), threading.Event()

    def listen() -> None:
        """Read the decisions as an assistant would: from the end of ``predictions``, polling often."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False,
                                 fetch_max_wait_ms=10, fetch_min_bytes=1)
        partitions = [TopicPartition(settings.topics.predictions, p)
                      for p in consumer.partitions_for_topic(settings.topics.predictions) or {0}]
        consumer.assign(partitions)
        consumer.seek_to_end(*partitions)
        for partition in partitions:
            consumer.position(partition)  # resolve the end now, before anything is sent
        listening.set()
        while not stop.is_set():
            for batch in consumer.poll(timeout_ms=50).values():
                now = time.perf_counter()
                for message in batch:
                    event_id = json.loads(message.value).get("id")
                    if event_id in sent_at:
                        decided_at.setdefault(event_id, now)
        consumer.close()

    listener = threading.Thread(target=listen)
    listener.start()
    listening.wait(30)

    def send() -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=0)
        started = time.perf_counter()
        for index, (key, value, event_id) in enumerate(records):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent_at[event_id] = time.perf_counter()
            producer.send(settings.topics.utterances, key=key, value=value)
        producer.flush()
        producer.close()

    sender = threading.Thread(target=send)
    sender.start()
    client = connect(settings.clickhouse)
    try:
        deadline = time.monotonic() + len(records) / rate + 60
        while len(seen_at) < len(records) and time.monotonic() < deadline:
            pending = tuple(i for i in list(sent_at) if i not in seen_at)[:5000]
            if pending:
                for (event_id,) in client.execute("SELECT id FROM predictions WHERE id IN %(ids)s", {"ids": pending}):
                    seen_at.setdefault(event_id, time.perf_counter())
            time.sleep(0.05)
    finally:
        client.disconnect()
        sender.join()
        stop.set()
        listener.join()
        worker.stop()
    return (sorted((decided_at[i] - sent_at[i]) * 1000 for i in decided_at),
            sorted((seen_at[i] - sent_at[i]) * 1000 for i in seen_at))


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p95 of sorted ``values``."""
    return statistics.median(values), values[int(0.95 * (len(values) - 1))]


def naive_rate(settings, records, limit_s: float = 30.0) -> float:
    """One message at a time: consume, predict alone, insert one row, commit."""
    from kafka import KafkaConsumer

    from streams.model_service import ModelService
    from streams.pipeline import BatchPipeline, RawRecord

    model = ModelService(settings.model).start()
    pipeline = BatchPipeline(settings)
    produce(settings, ((k, v) for k, v, _ in records))
    consumer = KafkaConsumer(settings.topics.utterances, bootstrap_servers=settings.kafka.bootstrap_servers,
                             group_id=f"naive-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=10000)
    client = connect(settings.clickhouse)
    done, started = 0, time.perf_counter()
    try:
        for message in consumer:
            result = pipeline.process([RawRecord(message.value, message.key, message.partition, message.offset,
                                                 message.topic, message.timestamp / 1000)], model)
            for row in result.rows.get("predictions", []):
                client.execute(f"INSERT INTO predictions ({', '.join(row)}) VALUES", [tuple(row.values())])
            consumer.commit()
            done += 1
            if time.perf_counter() - started > limit_s or done >= len(records):
                break
    finally:
        elapsed = time.perf_counter() - started
        consumer.close()
        client.disconnect()
        model.runtime.close()
    return done / elapsed


def cost_breakdown(settings, records, batch: int) -> dict[str, float]:
    """Milliseconds per utterance of each in-process stage of the worker, on the same records, one stage after
    the other: the model alone, the whole ``BatchPipeline.process`` (validation, model, features, PII), the JSON
    of the ``predictions`` messages, and the ClickHouse sink (every table the worker writes, real server)."""
    from streams.agents import SINK_COLUMNS, _json_row
    from streams.model_service import ModelService
    from streams.pipeline import BatchPipeline, RawRecord
    from streams.sink import ClickHouseSink

    model = ModelService(settings.model).start()
    pipeline = BatchPipeline(settings)
    raw = [RawRecord(value, key, 0, index, settings.topics.utterances) for index, (key, value, _) in enumerate(records)]
    chunks = [raw[i : i + batch] for i in range(0, len(raw), batch)]
    texts = [[json.loads(r.value)["text"] for r in chunk] for chunk in chunks]
    n = len(raw)
    costs = {}
    started = time.perf_counter()
    for chunk in texts:
        model.runtime.predict(chunk)
    costs["model_predict"] = (time.perf_counter() - started) * 1000 / n
    started = time.perf_counter()
    results = [pipeline.process(chunk, model) for chunk in chunks]
    costs["pipeline_process"] = (time.perf_counter() - started) * 1000 / n
    started = time.perf_counter()
    for result in results:
        for row in result.rows.get("predictions", []):
            _json_row(row)
    costs["predictions_json"] = (time.perf_counter() - started) * 1000 / n
    sink = ClickHouseSink(lambda: connect(settings.clickhouse), columns=SINK_COLUMNS,
                          batch_rows=settings.stream.sink_batch_rows)
    started = time.perf_counter()
    for result in results:
        for table, rows in result.rows.items():
            for row in rows:
                sink.add(table, row)
        if sink.should_flush():
            sink.flush()
    sink.close()
    costs["clickhouse_sink"] = (time.perf_counter() - started) * 1000 / n
    model.runtime.close()
    return {name: round(value, 3) for name, value in costs.items()}


def machine() -> dict:
    from _meta import cpu_model

    cpu = cpu_model()
    import clickhouse_driver
    import faust
    import onnxruntime

    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "faust": faust.__version__, "onnxruntime": onnxruntime.__version__,
            "clickhouse_driver": clickhouse_driver.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", type=Path, default=ROOT / "models" / "quick", help="model package to serve")
    parser.add_argument("--count", type=int, default=6000, help="events in the backlog for the sustained rate")
    parser.add_argument("--batch", type=int, default=64, help="serving micro-batch size")
    parser.add_argument("--backend", default="onnx-cpu", help="model.backend of the worker, the bare model and the "
                        "naive baseline (onnx-cpu or onnx-int8 here)")
    parser.add_argument("--sink-flush-s", type=float, default=0.2,
                        help="worker's ClickHouse flush interval (stream.sink_flush_s, 1.0 by default in settings; "
                             "0.2 here keeps the latency figures low)")
    parser.add_argument("--max-wait-s", type=float, default=0.2,
                        help="longest wait to fill a micro-batch (stream.max_wait_s; the decision latency's floor)")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="length of the latency run")
    parser.add_argument("--breakdown-only", action="store_true",
                        help="only the in-process cost per stage (no worker, no latency run, no naive baseline)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stream.json")
    args = parser.parse_args()

    base = make_test_settings(stream={"max_batch": args.batch, "metrics_port": 0, "sink_flush_s": args.sink_flush_s,
                                      "max_wait_s": args.max_wait_s})
    services_up(base)
    run = uuid.uuid4().hex[:8]
    log_dir = ROOT / ".run" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)

    def settings_for(name: str):
        return isolated(base, f"{name}-{run}", model={"package_path": args.package.resolve(), "backend": args.backend})

    limit_blas_threads(base.model.blas_threads)  # the in-process parts (bare, cost, naive) run as the worker does
    texts = [json.loads(e.value)["text"] for e in events("bare", 2000, 1)]
    bare, sub_batch = bare_model(settings_for("bare"), texts, args.batch)
    print(f"bare model        {bare:8.1f} utt/s (batch {args.batch}, {args.backend})")
    breakdown = cost_breakdown(settings_for("cost"), retag(events("cost", 3000, 5), f"c{run}-"), args.batch)
    print("in-process cost per utterance: " + ", ".join(f"{k} {v:.3f} ms" for k, v in breakdown.items()))
    if args.breakdown_only:
        return
    backlog = retag(events("rate", args.count, 2), f"r{run}-")
    rate, rss_kb = pipeline_rate(settings_for("rate"), backlog, f"r{run}-", log_dir)
    print(f"pipeline          {rate:8.1f} utt/s  ({rate / bare:.0%} of the bare model), "
          f"worker peak RSS {rss_kb / 1024:.0f} MiB")
    half = rate / 2
    latency_records = retag(events("lat", int(half * args.latency_seconds), 3), f"l{run}-")
    decisions, latencies = latency_at(settings_for("lat"), latency_records, half, log_dir)
    d50, d95 = percentiles(decisions)
    p50, p95 = percentiles(latencies)
    print(f"decision @ {half:.0f}/s  p50 {d50:.0f} ms  p95 {d95:.0f} ms  (send -> predictions topic; "
          f"{len(decisions)} of {len(latency_records)} seen)")
    print(f"latency @ {half:.0f}/s   p50 {p50:.0f} ms  p95 {p95:.0f} ms  (send -> ClickHouse row; "
          f"{len(latencies)} of {len(latency_records)} seen)")
    naive = naive_rate(settings_for("naive"), retag(events("naive", 3000, 4), f"n{run}-"))
    print(f"naive baseline    {naive:8.1f} utt/s  (pipeline is {rate / naive:.1f}x; "
          f"the bare model is {bare / naive:.1f}x: no pipeline around this model can beat that)")

    result = {
        "command": " ".join(sys.argv), "date": datetime.now(UTC).isoformat(), "machine": machine(),
        "package": str(args.package), "backend": args.backend, "batch": args.batch,
        "sub_batch": sub_batch,
        "sink_flush_s": args.sink_flush_s,
        "bare_model_utt_per_s": round(bare, 1),
        "cost_per_utterance_ms": breakdown,
        "pipeline_utt_per_s": round(rate, 1),
        "pipeline_fraction_of_bare": round(rate / bare, 3),
        "latency_rate_utt_per_s": round(half, 1),
        "decision_p50_ms": round(d50, 1), "decision_p95_ms": round(d95, 1), "decision_samples": len(decisions),
        "latency_p50_ms": round(p50, 1), "latency_p95_ms": round(p95, 1), "latency_samples": len(latencies),
        "naive_utt_per_s": round(naive, 1),
        "pipeline_over_naive": round(rate / naive, 2),
        "bare_over_naive": round(bare / naive, 2),
        "worker_peak_rss_mib": round(rss_kb / 1024, 1),
        "max_wait_s": args.max_wait_s,
        "targets": {"pipeline_over_naive": 10, "pipeline_fraction_of_bare": 0.90, "decision_p95_ms": 300},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
