"""The nlumon dashboards: Live traffic, Model confidence, Drift & OOD, Alerts & labeling, and the two of
:mod:`dashboards.outcome_boards` (Routes & outcomes, Shadow & experiments).

Every query is executed against a real ClickHouse by ``tests/integration/test_dashboards_sql.py``.

    >>> [board.uid for board in all_dashboards()][:4]
    ['nlumon-live-traffic', 'nlumon-model-confidence', 'nlumon-drift-ood', 'nlumon-alerts-labeling']
    >>> [board.uid for board in all_dashboards()][4:]
    ['nlumon-routes-outcomes', 'nlumon-shadow-experiments']
"""

from __future__ import annotations

from dashboards.model import Annotation, Dashboard, Panel, Query
from dashboards.outcome_boards import routes_outcomes, shadow_experiments
from dashboards.queries import ASSISTANT, MODEL_VERSION, monitor_filter, table, time_series, traffic_filter
from dashboards.sql import bucket_columns, bucket_names, in_variable

CONFIDENCE_EDGES = tuple(round(0.1 * i, 1) for i in range(1, 10))
ENTROPY_EDGES = tuple(round(0.3 * i, 1) for i in range(1, 16))  # ln(#intents) is ~4 at most
TOP_INTENTS = 8

PRED = traffic_filter()
ULOG = traffic_filter(model=False)
BY_ASSISTANT = ("assistant", "toString(assistant)")


def _heatmap(title: str, column: str, edges: tuple[float, ...], description: str) -> Panel:
    sql = (f"SELECT toDateTime(intDiv(toUInt32(ts), $__interval_s) * $__interval_s) AS time, "
           f"{bucket_columns(column, edges)}\nFROM predictions FINAL\nWHERE {PRED}\nGROUP BY time\nORDER BY time")
    return Panel(title, "heatmap", Query(sql, "time_series", ("time", *bucket_names(edges))), description)


def live_traffic() -> Dashboard:
    panels = (
        Panel("Utterances", "stat", table(f"SELECT uniqExact(id) AS utterances FROM utterance_log WHERE {ULOG}",
                                          ("utterances",)), "accepted utterance events in the range"),
        Panel("Dead letters", "stat", table("SELECT count() AS dead_letters FROM dead_letters FINAL "
                                            "WHERE $__timeFilter(ts)", ("dead_letters",)),
              "records that broke the wire contract"),
        Panel("End-to-end latency p95", "stat", table(f"SELECT quantile(0.95)(e2e_ms) AS e2e_p95_ms "
                                                      f"FROM predictions FINAL WHERE {PRED}", ("e2e_p95_ms",)),
              unit="ms"),
        Panel("Model in service", "stat", table(f"SELECT argMax(model_version, ts) AS model_version "
                                                f"FROM predictions WHERE {ULOG}", ("model_version",)),
              "the version that served the latest utterance"),
        Panel("Utterances per second", "timeseries",
              time_series("utterance_log", {"utterances_per_s": "uniqExact(id) / $__interval_s"}, ULOG,
                          label=BY_ASSISTANT), unit="reqps"),
        Panel("Dead-letter rate", "timeseries",
              time_series("dead_letters", {"dead_letters_per_s": "count() / $__interval_s"}, "$__timeFilter(ts)",
                          label=("reason", "reason")), "bad records per second, by reason", unit="reqps"),
        Panel("Micro-batch size", "timeseries",
              time_series("predictions", {"mean_batch": "avg(batch_size)", "max_batch": "max(batch_size)"}, PRED),
              "rows per model call (stream.take)"),
        Panel("Inference latency", "timeseries",
              time_series("predictions", {"inference_p50_ms": "quantile(0.5)(inference_ms)",
                                          "inference_p95_ms": "quantile(0.95)(inference_ms)"}, PRED), unit="ms"),
        Panel("End-to-end latency", "timeseries",
              time_series("predictions", {"e2e_p50_ms": "quantile(0.5)(e2e_ms)",
                                          "e2e_p95_ms": "quantile(0.95)(e2e_ms)"}, PRED),
              "from the event's arrival at the worker to its prediction", unit="ms"),
        Panel("Ingest delay (consumer lag)", "timeseries",
              time_series("utterance_log", {
                  "delay_p50_s": "quantile(0.5)(toInt64(toUInt32(ingested_at)) - toInt64(toUInt32(ts)))",
                  "delay_max_s": "max(toInt64(toUInt32(ingested_at)) - toInt64(toUInt32(ts)))"}, ULOG),
              "event time to storage: grows when the workers fall behind (the exact per-partition lag is the "
              "worker's Prometheus gauge nlumon_consumer_lag)", unit="s"),
        Panel("Traffic by model version", "barchart",
              table(f"SELECT model_version, uniqExact(id) AS utterances FROM predictions WHERE {ULOG} "
                    f"GROUP BY model_version ORDER BY utterances DESC", ("model_version", "utterances"))),
        Panel("Model loads", "table",
              table("SELECT model_version, backend, worker, max(loaded_at) AS last_loaded_at FROM model_versions "
                    "WHERE loaded_at <= $__toTime GROUP BY model_version, backend, worker "
                    "ORDER BY last_loaded_at DESC LIMIT 20", ("model_version", "backend", "worker", "last_loaded_at")),
              "packages the workers loaded (hot reloads included)", width=12, height=8),
    )
    return Dashboard("nlumon-live-traffic", "nlumon · Live traffic",
                     "Throughput, dead letters, batching, latency and the model in service.", panels,
                     (ASSISTANT, MODEL_VERSION))


def model_confidence() -> Dashboard:
    top_intents = (f"(SELECT intent FROM predictions FINAL WHERE {PRED} GROUP BY intent "
                   f"ORDER BY count() DESC LIMIT {TOP_INTENTS})")
    panels = (
        _heatmap("Confidence distribution", "confidence", CONFIDENCE_EDGES,
                 "utterances per bucket of top-intent probability"),
        _heatmap("Entropy distribution", "entropy", ENTROPY_EDGES, "utterances per bucket of intent entropy (nats)"),
        Panel("Intent mix", "timeseries",
              time_series("predictions", {"utterances": "count()"}, PRED,
                          label=("intent_group", f"if(intent IN {top_intents}, intent, 'other')")),
              f"top {TOP_INTENTS} intents of the range, the rest as 'other'", style={"stack": True}),
        Panel("Slot-type mix", "timeseries",
              time_series("predictions", {"slots": "count()"}, PRED, label=("slot_type", "slot_type"),
                          array_join="slot_types AS slot_type"), style={"stack": True}),
        Panel("Unknown-token rate", "timeseries",
              time_series("predictions", {"unk_rate": "avg(unk_rate)"}, PRED, label=BY_ASSISTANT),
              "share of word pieces the tokenizer did not know", unit="percentunit"),
        Panel("ASR confidence (voice)", "timeseries",
              time_series("predictions", {"asr_mean": "avg(asr_confidence)",
                                          "asr_p10": "quantile(0.1)(asr_confidence)"},
                          f"{PRED} AND channel = 'voice' AND isNotNull(asr_confidence)"), unit="percentunit"),
        Panel("Mean confidence and margin", "timeseries",
              time_series("predictions", {"confidence": "avg(confidence)", "margin": "avg(margin)"}, PRED),
              unit="percentunit", width=24),
    )
    return Dashboard("nlumon-model-confidence", "nlumon · Model confidence",
                     "How sure the model is, and what it is asked.", panels, (ASSISTANT, MODEL_VERSION))


def drift_ood() -> Dashboard:
    windows = monitor_filter()
    not_embedding = "feature NOT LIKE 'embedding%'"
    panels = (
        Panel("Drift score / threshold per feature", "timeseries",
              time_series("drift_results", {"score_over_threshold": "max(if(threshold > 0, score / threshold, 0))"},
                          f"{windows} AND {not_embedding}", label=("feature", "feature"), time_expr="window_start"),
              "each feature's test statistic over its inferred threshold: above 1 is drift", style={"threshold": 1.0}),
        Panel("Embedding drift", "timeseries",
              time_series("drift_results", {"score": "max(score)", "threshold": "max(threshold)"},
                          f"{windows} AND feature LIKE 'embedding%'", time_expr="window_start"),
              "MMD on the embedding sketch against its threshold"),
        Panel("OOD rate", "timeseries",
              time_series("predictions", {"ood_rate": "avg(is_ood)"}, PRED, label=BY_ASSISTANT),
              "share of utterances the model flagged out of distribution", unit="percentunit"),
        Panel("Estimated accuracy", "timeseries",
              time_series("monitor_windows", {"accuracy": "avg(accuracy_estimate)", "accuracy_low": "avg(accuracy_low)",
                                              "accuracy_high": "avg(accuracy_high)"},
                          f"{monitor_filter(whole_when_all=True)} AND status = 'scored'", time_expr="window_start"),
              "label-free estimate with its interval (whole traffic unless an assistant is chosen; scored "
              "windows only)",
              unit="percentunit", style={"band": ("accuracy_low", "accuracy_high")}),
        Panel("Drifted features", "table",
              table(f"""SELECT feature, method, assistant, argMax(score, window_start) AS last_score,
 argMax(threshold, window_start) AS last_threshold, sum(drifted) AS drifted_windows, count() AS windows,
 max(window_start) AS last_window
FROM drift_results FINAL WHERE {windows}
GROUP BY feature, method, assistant ORDER BY drifted_windows DESC, last_score DESC LIMIT 50""",
                    ("feature", "method", "assistant", "last_score", "last_threshold", "drifted_windows", "windows",
                     "last_window"))),
        Panel("Emerging OOD clusters", "table",
              table(f"""SELECT cluster_id, argMax(assistant, window_start) AS seen_in, max(size) AS max_size,
 argMax(growth, window_start) AS last_growth, min(first_seen) AS since,
 arrayStringConcat(argMax(examples, window_start), ' | ') AS latest_examples
FROM ood_clusters FINAL WHERE {windows}
GROUP BY cluster_id ORDER BY max_size DESC LIMIT 20""",
                    ("cluster_id", "seen_in", "max_size", "last_growth", "since", "latest_examples")),
              "groups of OOD / low-confidence utterances that grow, with examples"),
        Panel("Unseen slot values", "timeseries",
              time_series("slot_value_windows", {"unseen_share": "max(unseen_rate)",
                                                 "training_share": "max(reference_rate)"},
                          f"{monitor_filter(whole_when_all=True)} AND status = 'scored' AND slot_type != ''"
                          " AND isFinite(unseen_rate)", label=("slot_type", "slot_type"), time_expr="window_start"),
              "share of each slot type's values never seen in training, next to the same share on the package's "
              "dev split (placeholders of scrubbed personal data are left out)", unit="percentunit"),
        Panel("New slot values (in 3+ sessions)", "table",
              table(f"""SELECT slot_type, value, count() AS windows, min(window_start) AS first_window,
 max(window_start) AS last_window
FROM slot_value_windows FINAL ARRAY JOIN new_values AS value
WHERE {monitor_filter(whole_when_all=True)} AND status = 'scored' AND value NOT LIKE '<%>'
GROUP BY slot_type, value ORDER BY windows DESC LIMIT 50""",
                    ("slot_type", "value", "windows", "first_window", "last_window")),
              "candidates for the name dictionary (nlumon labeling names list / accept / reject)"),
        Panel("Evidently reports per window", "table",
              table(f"""SELECT window_start, assistant, rows, drifted,
 arrayStringConcat(drifted_features, ', ') AS drifted_features, report_path
FROM monitor_windows FINAL WHERE {windows} AND report_path != ''
ORDER BY window_start DESC LIMIT 50""",
                    ("window_start", "assistant", "rows", "drifted", "drifted_features", "report_path")),
              "the monitor's HTML report of each window", style={"link_column": "report_path"}),
    )
    return Dashboard("nlumon-drift-ood", "nlumon · Drift & OOD",
                     "Per-feature and embedding drift, OOD rate, estimated accuracy, emerging clusters.", panels,
                     (ASSISTANT, MODEL_VERSION))


def alerts_labeling() -> Dashboard:
    alerts_where = "$__timeFilter(ts)"
    queue_where = f"$__timeFilter(flagged_at) AND {in_variable('assistant', 'assistant')}"
    annotation = Annotation("Alerts", table(
        f"SELECT ts AS time, window_end AS timeEnd, concat(rule, ': ', summary) AS text, "
        f"concat(severity, ',', state) AS tags FROM alert_events FINAL WHERE {alerts_where} ORDER BY time",
        ("time", "timeEnd", "text", "tags")))
    panels = (
        Panel("Alert events", "timeseries",
              time_series("alert_events", {"events": "count()"}, alerts_where, label=("severity", "severity")),
              "firing, repeat and resolved events by severity"),
        Panel("Webhook outbox", "barchart",
              table("SELECT state, count() AS webhooks FROM alert_deliveries FINAL WHERE $__timeFilter(updated_at) "
                    "GROUP BY state ORDER BY webhooks DESC", ("state", "webhooks")),
              "delivery state of each (webhook, receiver)"),
        Panel("Labeling queue by reason", "timeseries",
              time_series("labeling_queue", {"items": "count()"}, queue_where, label=("reason", "reason"),
                          time_column="flagged_at", array_join="reasons AS reason"),
              "flagged samples per reason (one sample may have several)", style={"stack": True}),
        Panel("Queue size by reason", "barchart",
              table(f"SELECT reason, count() AS items FROM labeling_queue FINAL ARRAY JOIN reasons AS reason "
                    f"WHERE {queue_where} GROUP BY reason ORDER BY items DESC", ("reason", "items"))),
        Panel("Alerts", "table",
              table(f"""SELECT ts, rule, severity, state, assistant, metric, value, threshold, summary
FROM alert_events FINAL WHERE {alerts_where} ORDER BY ts DESC LIMIT 100""",
                    ("ts", "rule", "severity", "state", "assistant", "metric", "value", "threshold", "summary"))),
        Panel("Outbox by receiver", "table",
              table("""SELECT receiver, state, count() AS webhooks, max(attempts) AS max_attempts,
 argMax(last_error, updated_at) AS latest_error, max(updated_at) AS last_update
FROM alert_deliveries FINAL WHERE $__timeFilter(updated_at)
GROUP BY receiver, state ORDER BY receiver, state""",
                    ("receiver", "state", "webhooks", "max_attempts", "latest_error", "last_update")), height=6),
        Panel("Top flagged utterances", "table",
              table(f"""SELECT flagged_at, assistant, text_scrubbed, intent,
 arrayStringConcat(reasons, ', ') AS reasons, priority
FROM labeling_queue FINAL WHERE {queue_where} ORDER BY priority DESC, flagged_at DESC LIMIT 25""",
                    ("flagged_at", "assistant", "text_scrubbed", "intent", "reasons", "priority"))),
    )
    return Dashboard("nlumon-alerts-labeling", "nlumon · Alerts & labeling",
                     "Alert events (also as annotations), webhook outbox, labeling queue.", panels, (ASSISTANT,),
                     (annotation,))


def all_dashboards() -> list[Dashboard]:
    return [live_traffic(), model_confidence(), drift_ood(), alerts_labeling(), routes_outcomes(), shadow_experiments()]
