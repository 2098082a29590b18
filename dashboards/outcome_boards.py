"""The dashboards of what happened after a decision: Routes & outcomes, and Shadow & experiments.

*Routes & outcomes* shows what the assistants did with each utterance (the route mix of the monitor's windows,
the heads that fired) and what the user did next (outcome events joined to the predictions by utterance id),
with conversion per intent against its baseline. *Shadow & experiments* shows whether a challenger is better:
its disagreement with the champion on the same traffic, and the session A/B experiment with its sequential test.

Joins are written for ClickHouse 18.16 as well as current ClickHouse: one ``ANY LEFT JOIN ... USING`` of two
subqueries per SELECT, each subquery with an alias (current ClickHouse requires one), and no aggregate aliased with
the name of a column that the query reads elsewhere (the alias would replace the column there).

    >>> [board.uid for board in (routes_outcomes(), shadow_experiments())]
    ['nlumon-routes-outcomes', 'nlumon-shadow-experiments']
"""

from __future__ import annotations

from dashboards.model import Dashboard, Panel
from dashboards.queries import (
    ASSISTANT,
    EXPERIMENT,
    MODEL_VERSION,
    experiment_filter,
    monitor_filter,
    per_assistant,
    series,
    session_filter,
    table,
    time_series,
    traffic_filter,
)
from dashboards.sql import bucket
from nlumon.records import ROUTES  # the routing policy's decisions

# Outcomes come minutes after their utterance (monitor.outcome_delay_s): those up to an hour after the range's
# end still count for its utterances.
OUTCOME_HORIZON_S = 3600
# The default primary metric of an experiment (experiments.definition.Experiment.primary_metric).
DEFAULT_PRIMARY_METRIC = "task_completed"
SRM_ALARM_P = 0.001  # a sample-ratio mismatch this unlikely means the split, not the models, differs
DEFAULT_ALPHA = 0.05  # experiments.definition.StopRule.alpha

PRED = traffic_filter()
WHOLE = monitor_filter(whole_when_all=True)

# The predictions of the range with what followed each utterance: per utterance id, whether an outcome is known
# and which kinds came (0/1), and its mean satisfaction (NULL when none was given).
UTTERANCE_OUTCOMES = f"""(SELECT id, ts, toString(assistant) AS assistant_name,
 if(route = '', 'none', route) AS decision
 FROM predictions FINAL WHERE {PRED}) AS served
ANY LEFT JOIN
(SELECT utterance_id AS id, toUInt8(count() > 0) AS known, max(kind = 'task_completed') AS completed,
 max(kind = 'converted') AS converted, max(kind = 'escalated') AS escalated, max(kind = 'rephrased') AS rephrased,
 max(kind = 'abandoned') AS abandoned, avg(satisfaction) AS rating
 FROM outcomes FINAL
 WHERE ts >= $__fromTime AND ts <= $__toTime + {OUTCOME_HORIZON_S} AND utterance_id != ''
 GROUP BY utterance_id) AS followed
USING id"""
# Shares among the utterances whose outcome is known.
RATES = {"completion_rate": "avgIf(completed, known = 1)", "conversion_rate": "avgIf(converted, known = 1)",
         "escalation_rate": "avgIf(escalated, known = 1)", "rephrase_rate": "avgIf(rephrased, known = 1)",
         "abandonment_rate": "avgIf(abandoned, known = 1)"}


def _rate_stat(title: str, name: str, description: str) -> Panel:
    return Panel(title, "stat", table(f"SELECT {RATES[name]} AS {name} FROM {UTTERANCE_OUTCOMES}", (name,)),
                 description, unit="percentunit")


def _weighted(column: str, weight: str = "rows") -> str:
    """A rate of the monitor's windows over several rows: weighted by what each was computed on."""
    return f"sum({column} * {weight}) / sum({weight})"


def routes_outcomes() -> Dashboard:
    route_share = {route: f"sumIf(rows, route = '{route}') / sum(rows)" for route in ROUTES}
    conversion_where = f"{WHOLE} AND subject_kind = 'intent'"
    panels = (
        _rate_stat("Task completion", "completion_rate", "utterances whose task was completed, of those whose "
                   "outcome is known"),
        _rate_stat("Conversion", "conversion_rate", "utterances followed by a purchase, of those whose outcome is "
                   "known"),
        _rate_stat("Escalation", "escalation_rate", "utterances handed to a person, of those whose outcome is known"),
        Panel("Mean satisfaction", "stat",
              table(f"SELECT avg(rating) AS mean_satisfaction FROM {UTTERANCE_OUTCOMES}", ("mean_satisfaction",)),
              "the users' 1-5 ratings"),
        Panel("Route mix", "timeseries",
              time_series("route_windows", route_share, WHOLE, time_expr="window_start"),
              "share of each window's utterances that have a route decision, per route (whole traffic unless an "
              "assistant is chosen)",
              unit="percentunit", style={"stack": True}),
        Panel("Clarify, confirm and escalate per assistant", "timeseries",
              time_series("route_windows", {route: route_share[route] for route in ROUTES[1:]},
                          f"{monitor_filter()} AND {per_assistant()}", label=("assistant", "assistant"),
                          time_expr="window_start"),
              "the routes that did not fulfil at once, per window", unit="percentunit"),
        Panel("Outcome rates", "timeseries",
              series(f"SELECT {bucket('ts')} AS time, avg(known) AS with_outcome, "
                     + ", ".join(f"{expression} AS {name}" for name, expression in RATES.items())
                     + f"\nFROM {UTTERANCE_OUTCOMES}\nGROUP BY time\nORDER BY time",
                     ("time", "with_outcome", *RATES)),
              "utterances by their time, outcomes joined by utterance id; with_outcome is the share whose outcome "
              "is known (the last minutes of a range wait for theirs)", unit="percentunit"),
        Panel("Mean satisfaction per assistant", "timeseries",
              series(f"SELECT {bucket('ts')} AS time, assistant_name AS assistant, avg(rating) AS mean_satisfaction"
                     f"\nFROM {UTTERANCE_OUTCOMES}\nWHERE isNotNull(rating)\nGROUP BY time, assistant\nORDER BY time",
                     ("time", "assistant", "mean_satisfaction")),
              "1-5 ratings, by the time of the rated utterance"),
        Panel("Outcome events", "timeseries",
              time_series("outcomes", {"events_per_s": "count() / $__interval_s"},
                          f"$__timeFilter(ts) AND {session_filter(OUTCOME_HORIZON_S)}", label=("kind", "kind")),
              "outcome events per second by kind, session-level ones (no utterance id) included", unit="reqps"),
        Panel("Route heads that fired", "barchart",
              table(f"SELECT head, count() AS utterances FROM predictions FINAL ARRAY JOIN route_heads AS head "
                    f"WHERE {PRED} GROUP BY head ORDER BY utterances DESC LIMIT 15", ("head", "utterances")),
              "the routing policy's conditions that held, whatever route won"),
        Panel("Conversion against baseline", "timeseries",
              time_series("conversion_windows", {"conversion": "sum(converted) / sum(traffic)",
                                                 "baseline": _weighted("baseline_rate", "traffic")},
                          conversion_where, time_expr="window_start"),
              "conversion of each window's intents, and what the same intent mix converted at over the baseline "
              "days (monitor.conversion_baseline_days)", unit="percentunit", width=24),
        Panel("Outcomes by route", "table",
              table(f"""SELECT decision AS route, count() AS utterances, avg(known) AS with_outcome,
 {RATES['completion_rate']} AS completion_rate, {RATES['rephrase_rate']} AS rephrase_rate,
 {RATES['escalation_rate']} AS escalation_rate, {RATES['abandonment_rate']} AS abandonment_rate,
 {RATES['conversion_rate']} AS conversion_rate, avg(rating) AS mean_satisfaction
FROM {UTTERANCE_OUTCOMES}
GROUP BY route ORDER BY utterances DESC""",
                    ("route", "utterances", "with_outcome", "completion_rate", "rephrase_rate", "escalation_rate",
                     "abandonment_rate", "conversion_rate", "mean_satisfaction")),
              "what users did after each route decision ('none': no routing policy)", height=6),
        Panel("Conversion of the top intents", "table",
              table(f"""SELECT subject AS intent, sum(traffic) AS utterances, sum(converted) AS conversions,
 conversions / utterances AS conversion_rate, sum(baseline_rate * traffic) / utterances AS baseline,
 conversion_rate - baseline AS against_baseline
FROM conversion_windows FINAL WHERE {conversion_where}
GROUP BY intent ORDER BY utterances DESC LIMIT 15""",
                    ("intent", "utterances", "conversions", "conversion_rate", "baseline", "against_baseline")),
              "the intents with the most traffic in the range, their conversion and its baseline"),
        Panel("Below baseline", "table",
              table(f"""SELECT subject_kind, subject, sum(traffic) AS utterances, sum(converted) AS conversions,
 conversions / utterances AS conversion_rate, sum(baseline_rate * traffic) / utterances AS baseline,
 round(sum(baseline_rate * traffic) - conversions, 1) AS missed_conversions,
 countIf(rate < baseline_rate) AS windows_below, count() AS windows, max(window_start) AS last_window
FROM conversion_windows FINAL WHERE {WHOLE}
GROUP BY subject_kind, subject HAVING conversion_rate < baseline
ORDER BY missed_conversions DESC LIMIT 25""",
                    ("subject_kind", "subject", "utterances", "conversions", "conversion_rate", "baseline",
                     "missed_conversions", "windows_below", "windows", "last_window")),
              "intents and OOD clusters that converted less than their baseline, most missed conversions first "
              "(the conversion alert rule fires on these)"),
    )
    return Dashboard("nlumon-routes-outcomes", "nlumon · Routes & outcomes",
                     "What the assistants did with each utterance, and what the users did next.", panels,
                     (ASSISTANT, MODEL_VERSION))


# -- shadow and experiments -------------------------------------------------------------------------
EXPERIMENTS_WHERE = f"$__timeFilter(ts) AND {experiment_filter()}"
# (experiment, metric) of each experiment's primary metric, read from its definition (the JSON of
# experiments.definition.Experiment).
PRIMARY = (f"(SELECT name, if(metric_name = '', '{DEFAULT_PRIMARY_METRIC}', metric_name) FROM (SELECT name, "
           f"extract(argMax(definition, row_version), '\"primary_metric\": *\"([^\"]+)\"') AS metric_name "
           f"FROM experiments GROUP BY name))")
# (experiment, arm) of each experiment's control: its first arm.
CONTROL = "(SELECT name, argMax(arms, row_version)[1] FROM experiments GROUP BY name)"
ARM_LABEL = ("experiment_arm", "concat(experiment, ' · ', arm)")


def shadow_experiments() -> Dashboard:
    shadow_whole = f"{WHOLE} AND intent = ''"
    disagreement = {"intent_rate": _weighted("intent_disagreement"), "slot_rate": _weighted("slot_disagreement"),
                    "route_rate": _weighted("route_disagreement")}
    panels = (
        Panel("Challenger in shadow", "stat",
              table(f"SELECT argMax(shadow_version, window_start) AS challenger FROM shadow_windows FINAL "
                    f"WHERE {shadow_whole}", ("challenger",)),
              "the package scored beside the champion in the latest window"),
        Panel("Intent disagreement", "stat",
              table(f"SELECT {disagreement['intent_rate']} AS intent_rate FROM shadow_windows FINAL "
                    f"WHERE {shadow_whole}", ("intent_rate",)),
              "share of shadowed utterances where the challenger chose another intent", unit="percentunit"),
        Panel("Experiment decision", "stat",
              table(f"SELECT argMax(decision, ts) AS last_decision FROM experiment_results FINAL "
                    f"WHERE {EXPERIMENTS_WHERE}", ("last_decision",)),
              "the sequential test's decision at the latest look"),
        Panel("SRM p-value", "stat",
              table(f"SELECT if(count() > 0, argMax(srm_p_value, ts), NULL) AS srm_p FROM experiment_results FINAL "
                    f"WHERE {EXPERIMENTS_WHERE}", ("srm_p",)),
              f"sample-ratio mismatch at the latest look: below {SRM_ALARM_P} the split is broken"),
        Panel("Shadow disagreement", "timeseries",
              time_series("shadow_windows", disagreement, shadow_whole, time_expr="window_start"),
              "share of each window's shadowed utterances where the challenger's intent, slots or route differ "
              "from the champion's", unit="percentunit"),
        Panel("Challenger inference latency", "timeseries",
              time_series("shadow_predictions", {"challenger_p50_ms": "quantile(0.5)(inference_ms)",
                                                 "challenger_p95_ms": "quantile(0.95)(inference_ms)"},
                          traffic_filter(model=False)),
              "what shadowing costs per batch (the champion's is on Live traffic)", unit="ms"),
        Panel("Intents the challenger disagrees on", "table",
              table(f"""SELECT intent, sum(rows) AS utterances,
 round(sum(intent_disagreement * rows)) AS intent_disagreements, {disagreement['intent_rate']} AS intent_rate,
 {disagreement['slot_rate']} AS slot_rate, {disagreement['route_rate']} AS route_rate,
 argMax(shadow_version, window_start) AS challenger
FROM shadow_windows FINAL WHERE {WHOLE} AND intent != ''
GROUP BY intent ORDER BY intent_disagreements DESC, utterances DESC LIMIT 20""",
                    ("intent", "utterances", "intent_disagreements", "intent_rate", "slot_rate", "route_rate",
                     "challenger")),
              "the champion's intents, most disagreements first: where the challenger would change the answers"),
        Panel("Latest disagreements", "table",
              table(f"""SELECT ts, assistant_name AS assistant, champion_intent, challenger_intent,
 challenger_confidence, champion_route, challenger_route, slots_agree, text_scrubbed
FROM (SELECT id, ts, toString(assistant) AS assistant_name, champion_intent, intent AS challenger_intent,
 confidence AS challenger_confidence, champion_route, route AS challenger_route, slots_agree
 FROM shadow_predictions FINAL
 WHERE {traffic_filter(model=False)} AND (intent_agrees = 0 OR slots_agree = 0 OR route_agrees = 0)) AS shadowed
ANY LEFT JOIN (SELECT id, text_scrubbed FROM predictions FINAL WHERE {traffic_filter(model=False)}) AS served
USING id
ORDER BY ts DESC LIMIT 50""",
                    ("ts", "assistant", "champion_intent", "challenger_intent", "challenger_confidence",
                     "champion_route", "challenger_route", "slots_agree", "text_scrubbed")),
              "utterances the two models answered differently (also queued for labeling as champion_challenger)"),
        Panel("Experiments and arms", "table",
              table(f"""SELECT experiment, last_status AS status, arm, share, model_version, primary_metric,
 started AS started_at, stopped AS stopped_at
FROM (SELECT name AS experiment, argMax(status, row_version) AS last_status,
 argMax(arms, row_version) AS arm_names, argMax(shares, row_version) AS arm_shares,
 argMax(model_versions, row_version) AS arm_versions, argMax(started_at, row_version) AS started,
 argMax(stopped_at, row_version) AS stopped,
 extract(argMax(definition, row_version), '"primary_metric": *"([^"]+)"') AS primary_metric
 FROM experiments GROUP BY name)
ARRAY JOIN arm_names AS arm, arm_shares AS share, arm_versions AS model_version
WHERE {experiment_filter()}
ORDER BY started DESC, experiment, arm""",
                    ("experiment", "status", "arm", "share", "model_version", "primary_metric", "started_at",
                     "stopped_at")),
              "the experiments running or stopped in the range, one row per arm (the first arm is the control)",
              height=6),
        Panel("Primary metric per arm", "timeseries",
              time_series("experiment_results", {"estimate": "argMax(value, ts)", "lower": "argMax(low, ts)",
                                                 "upper": "argMax(high, ts)"},
                          f"{EXPERIMENTS_WHERE} AND (experiment, metric) IN {PRIMARY}", label=ARM_LABEL),
              "each arm's estimate of the experiment's primary metric at each look, with its interval"),
        Panel("Always-valid p-value", "timeseries",
              time_series("experiment_results", {"always_valid_p": "min(p_value)"},
                          f"{EXPERIMENTS_WHERE} AND (experiment, arm) NOT IN {CONTROL} AND isFinite(p_value)"
                          " AND position(metric, ':') = 0",  # per metric, not its ':diff' twin or a guardrail
                          label=("comparison", "concat(experiment, ' · ', arm, ' · ', metric)")),
              "each arm against the control, per metric: valid however often it is looked at; the test decides "
              f"when it falls below the experiment's alpha (line: the default {DEFAULT_ALPHA})",
              style={"threshold": DEFAULT_ALPHA}),
        Panel("Sessions per arm", "timeseries",
              time_series("experiment_results", {"arm_sessions": "max(sessions)"},
                          f"{EXPERIMENTS_WHERE} AND (experiment, metric) IN {PRIMARY}", label=ARM_LABEL),
              "sessions assigned to each arm by the latest look"),
        Panel("Sample-ratio mismatch", "timeseries",
              time_series("experiment_results", {"srm_p": "min(srm_p_value)"}, EXPERIMENTS_WHERE,
                          label=("experiment", "experiment")),
              f"p-value of the sessions per arm against the configured split; below {SRM_ALARM_P} the assignment "
              "or the logging is broken, and no other number of the experiment can be trusted",
              style={"threshold": SRM_ALARM_P}),
        Panel("Per-arm results at the latest look", "table",
              table(f"""SELECT experiment, arm, metric, argMax(sessions, ts) AS arm_sessions,
 argMax(value, ts) AS estimate, argMax(low, ts) AS lower, argMax(high, ts) AS upper,
 argMax(p_value, ts) AS always_valid_p, argMax(decision, ts) AS last_decision, max(ts) AS looked_at
FROM experiment_results FINAL WHERE {EXPERIMENTS_WHERE}
GROUP BY experiment, arm, metric ORDER BY experiment, metric, arm""",
                    ("experiment", "arm", "metric", "arm_sessions", "estimate", "lower", "upper", "always_valid_p",
                     "last_decision", "looked_at")),
              "every metric of every arm with its interval and its always-valid p-value against the control"),
        Panel("Guardrails per arm", "table",
              table(f"""SELECT experiment, arm, sessions, utterances, e2e_p95_ms, ood_rate, escalate_rate,
 letters AS dead_letters, letters / (utterances + letters) AS dead_letter_rate
FROM (SELECT experiment, arm, uniqExact(session_id) AS sessions, count() AS utterances,
 quantile(0.95)(e2e_ms) AS e2e_p95_ms, avg(is_ood) AS ood_rate, avg(route = 'escalate') AS escalate_rate
 FROM predictions FINAL WHERE {traffic_filter(model=False)} AND experiment != '' AND {experiment_filter()}
 GROUP BY experiment, arm) AS served
ANY LEFT JOIN (SELECT experiment, arm, count() AS letters FROM dead_letters FINAL
 WHERE $__timeFilter(ts) AND experiment != '' GROUP BY experiment, arm) AS refused USING (experiment, arm)
ORDER BY experiment, arm""",
                    ("experiment", "arm", "sessions", "utterances", "e2e_p95_ms", "ood_rate", "escalate_rate",
                     "dead_letters", "dead_letter_rate")),
              "live traffic of each arm as the workers recorded it: latency, OOD and escalation rates, dead letters "
              "(an arm must not win by breaking these)", height=6),
    )
    return Dashboard("nlumon-shadow-experiments", "nlumon · Shadow & experiments",
                     "Is the challenger better? Its disagreement with the champion in shadow, and the session A/B "
                     "experiment with its sequential test.", panels, (ASSISTANT, EXPERIMENT))
