"""The report of an experiment at one look: per-arm outcome rates, the sequential test, SRM and guardrails.

**Unit: the session.** Sessions are assigned to arms, so sessions are the independent units: a session counts
once per outcome kind (completed at least once, escalated at least once, ...), whatever the number of its
utterances or events; its satisfaction is the mean of its ratings, and sessions without a rating are left out
of the satisfaction figures. A session's arm is the ``arm`` column the worker wrote on its predictions.

**Which sessions count.** An outcome arrives minutes after the last utterance of a session (the user completes,
abandons or is escalated later). A session is counted once its last prediction is older than
``monitor.outcome_delay_s`` (300 s by default): counting younger ones would put sessions whose outcomes have
not arrived yet beside finished ones and bias every rate down. ``include_all`` (``status --all``) counts them
all, as a preview; such a look is not stored.

**What is read** (ClickHouse 18.16-compatible SQL, ``FINAL`` on the ReplacingMergeTree tables so a re-delivered
row counts once, aggregated per session in SQL and per arm in pandas): per (session, arm) the last prediction
time; per (session, outcome kind) the event count and satisfaction sum and count; per arm the predictions, the
p95 of ``e2e_ms``, the OOD count and the model versions seen; per arm the dead letters; and the earlier looks'
``:diff`` rows, whose smallest p-value and intersected confidence sequence carry over (``Comparison.
combined_with``), so the p-value never goes up and the sequence never widens from one look to the next.

**Guardrails** compare each challenger with the control (:class:`GuardrailLimits`): a latency p95 more than
20 % above the control's, a dead-letter rate (dead letters of the arm / (those + its predictions)) more than 0.5
points above, or an OOD rate more than 2 points above fails; an arm with fewer than 100 predictions is
``pending``. They are plain comparisons of observed figures, not tests: a failure blocks promotion, a person
decides.

**Stored rows** (``experiment_results``, one per (look, arm, metric), every string through
:func:`nlumon.pii.deidentify_row`; the look's ``decision`` and SRM p-value on every row):

- ``metric`` = an outcome (``task_completed``, ``escalated``, ``rephrased``, ``abandoned``, ``converted``) or
  ``satisfaction``: ``value`` the arm's session rate (mean rating), ``low``/``high`` its 95 % Wilson (t)
  interval, ``sessions`` its sessions (rated sessions), ``p_value`` the always-valid p-value against the control
  (NaN on the control);
- ``<metric>:diff`` (challengers only): ``value`` challenger minus control, ``low``/``high`` the confidence
  sequence, ``sessions`` the smaller arm's count, ``p_value`` as above;
- ``guardrail:latency_p95_ms``, ``guardrail:dead_letter_rate``, ``guardrail:ood_rate``: ``value`` the arm's
  figure, ``high`` the limit it must stay under (the guardrail failed when ``value > high``; NaN on the control
  and while pending), ``sessions`` the predictions (plus dead letters) it rests on.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from experiments.definition import Experiment
from experiments.stats import (
    Comparison,
    Decision,
    compare_means,
    compare_proportions,
    decide,
    mean_interval,
    srm_p_value,
    tau_for,
    wilson_interval,
)
from nlumon.pii import deidentify_row
from nlumon.records import OUTCOME_KINDS

log = logging.getLogger(__name__)

METRICS = (*OUTCOME_KINDS, "satisfaction")
GUARDRAILS = ("latency_p95_ms", "dead_letter_rate", "ood_rate")
DIFF = ":diff"
GUARDRAIL = "guardrail:"
EXPERIMENT_COLUMNS = ("name", "status", "arms", "shares", "model_versions", "started_at", "stopped_at",
                      "definition", "updated_at", "row_version")
RESULT_COLUMNS = ("experiment", "ts", "arm", "metric", "sessions", "value", "low", "high", "p_value",
                  "srm_p_value", "decision", "row_version")
# Strings stored as they are: validated names (experiment, arm: letters, digits, _ . -), package versions
# (validated by model_runtime.package), closed vocabularies (status, metric, decision). `definition` is JSON.
EXPERIMENT_KEEP = ("name", "status", "arms", "model_versions")
RESULT_KEEP = ("experiment", "arm", "metric", "decision")
NEVER = datetime(1970, 1, 1)  # stopped_at of a running experiment (DateTime has no NULL here)


@dataclass(frozen=True)
class GuardrailLimits:
    """How much worse than the control a challenger may be before its guardrail fails."""

    latency_p95_ratio: float = 1.20  # p95 of e2e_ms above 1.2 x the control's
    dead_letter_points: float = 0.005  # dead-letter rate above the control's + 0.5 points
    ood_points: float = 0.02  # OOD rate above the control's + 2 points
    min_predictions: int = 100  # fewer predictions in either arm: pending


@dataclass(frozen=True)
class MetricValue:
    """One arm's figure for one metric: value, 95 % interval, and how many sessions it rests on."""

    value: float
    low: float
    high: float
    sessions: int


@dataclass(frozen=True)
class GuardrailCheck:
    arm: str
    name: str
    value: float
    control: float
    limit: float
    status: str  # pass | fail | pending
    count: int  # predictions (+ dead letters for the dead-letter rate) it rests on


@dataclass(frozen=True)
class ArmSummary:
    name: str
    share: float
    package_path: str
    sessions: int
    pending_sessions: int
    predictions: int
    model_versions: tuple[str, ...]
    metrics: dict[str, MetricValue]


@dataclass(frozen=True)
class ExperimentReport:
    """Everything one look found; :meth:`to_dict` is the JSON of ``status --json`` and the conclusion."""

    experiment: Experiment
    looked_at: datetime
    arms: list[ArmSummary]
    comparisons: dict[str, dict[str, Comparison]]  # challenger arm -> metric -> vs control
    srm_p_value: float
    guardrails: list[GuardrailCheck]
    decision: Decision
    counted: str  # which sessions count: "mature" or "all"
    outcome_delay_s: int
    crossover_sessions: int = 0  # seen in more than one arm: left out
    misassigned_sessions: int = 0  # arm differs from Experiment.arm_of (assignment or logging bug)
    taus: dict[str, float] = field(default_factory=dict)

    @property
    def guardrails_failed(self) -> list[GuardrailCheck]:
        return [check for check in self.guardrails if check.status == "fail"]

    def to_dict(self) -> dict[str, Any]:
        exp = self.experiment
        return _finite({
            "experiment": exp.name, "status": exp.status, "primary_metric": exp.primary_metric,
            "started_at": exp.started_at.isoformat(),
            "stopped_at": exp.stopped_at.isoformat() if exp.stopped_at else None, "stop_reason": exp.stop_reason,
            "stop_rule": exp.stop.model_dump(), "looked_at": self.looked_at.isoformat(),
            "counted": self.counted, "outcome_delay_s": self.outcome_delay_s,
            "decision": asdict(self.decision),
            "srm": {"p_value": self.srm_p_value, "shares": {arm.name: arm.share for arm in self.arms},
                    "sessions": {arm.name: arm.sessions for arm in self.arms}},
            "arms": [{**asdict(arm), "metrics": {k: asdict(v) for k, v in arm.metrics.items()}} for arm in self.arms],
            "comparisons": {arm: {metric: asdict(c) for metric, c in by_metric.items()}
                            for arm, by_metric in self.comparisons.items()},
            "taus": self.taus,
            "guardrails": [asdict(check) for check in self.guardrails],
            "crossover_sessions": self.crossover_sessions, "misassigned_sessions": self.misassigned_sessions,
        })


def _finite(value: Any) -> Any:
    """NaN and infinities as None, so the JSON is standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


# -- reading ClickHouse ---------------------------------------------------------------------------------------
def read_sessions(client: Any, name: str) -> pd.DataFrame:
    """One row per (session, arm) of the experiment: the last prediction's time and the prediction count."""
    rows = client.execute(
        "SELECT session_id, arm, max(ts), count() FROM predictions FINAL WHERE experiment = %(name)s "
        "GROUP BY session_id, arm", {"name": name})
    return pd.DataFrame(rows, columns=["session_id", "arm", "last_ts", "predictions"])


def read_outcomes(client: Any, name: str) -> pd.DataFrame:
    """One row per (session, kind) of the experiment's sessions: events, satisfaction sum and count."""
    rows = client.execute(
        "SELECT session_id, kind, count(), sum(satisfaction), count(satisfaction) FROM outcomes FINAL "
        "WHERE session_id IN (SELECT session_id FROM predictions WHERE experiment = %(name)s) "
        "GROUP BY session_id, kind", {"name": name})
    frame = pd.DataFrame(rows, columns=["session_id", "kind", "events", "satisfaction_sum", "satisfaction_count"])
    frame["satisfaction_sum"] = pd.to_numeric(frame["satisfaction_sum"]).fillna(0.0)
    return frame


def read_arm_facts(client: Any, name: str) -> pd.DataFrame:
    """Per arm: predictions, p95 of e2e_ms, OOD predictions, the model versions seen, and dead letters."""
    predictions = client.execute(
        "SELECT arm, count(), quantileExact(0.95)(e2e_ms), sum(is_ood), groupUniqArray(model_version) "
        "FROM predictions FINAL WHERE experiment = %(name)s GROUP BY arm", {"name": name})
    letters = dict(client.execute(
        "SELECT arm, count() FROM dead_letters FINAL WHERE experiment = %(name)s GROUP BY arm", {"name": name}))
    frame = pd.DataFrame(predictions, columns=["arm", "predictions", "latency_p95_ms", "ood", "model_versions"])
    frame["dead_letters"] = [int(letters.pop(arm, 0)) for arm in frame["arm"]]
    extra = pd.DataFrame([{"arm": arm, "predictions": 0, "latency_p95_ms": float("nan"), "ood": 0,
                           "model_versions": [], "dead_letters": int(count)} for arm, count in letters.items()])
    return pd.concat([frame, extra], ignore_index=True) if len(extra) else frame


def read_previous_looks(client: Any, experiment: Experiment) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(arm, metric) -> (smallest p-value, largest low, smallest high) over the stored looks since the start
    whose smaller arm had ``min_sessions``: what :meth:`Comparison.combined_with` carries over."""
    rows = client.execute(
        "SELECT arm, metric, sessions, p_value, low, high FROM experiment_results FINAL "
        "WHERE experiment = %(name)s AND ts >= %(since)s AND metric IN %(metrics)s",
        {"name": experiment.name, "since": naive_utc(experiment.started_at),
         "metrics": tuple(f"{metric}{DIFF}" for metric in METRICS)})
    return previous_looks(pd.DataFrame(rows, columns=["arm", "metric", "sessions", "p_value", "low", "high"]),
                          experiment.stop.min_sessions)


def previous_looks(rows: pd.DataFrame, min_sessions: int) -> dict[tuple[str, str], tuple[float, float, float]]:
    """The carry-over of :func:`read_previous_looks` from its rows (``metric`` with the ``:diff`` suffix)."""
    rows = rows[(rows["sessions"] >= min_sessions) & np.isfinite(rows["p_value"].astype(float))]
    out = {}
    for (arm, metric), group in rows.groupby(["arm", "metric"]):
        out[(arm, metric.removesuffix(DIFF))] = (float(group["p_value"].min()), float(group["low"].max()),
                                                 float(group["high"].min()))
    return out


# -- aggregation (pure) ---------------------------------------------------------------------------------------
def session_frame(sessions: pd.DataFrame, outcomes: pd.DataFrame, *, now: datetime, delay_s: int
                  ) -> tuple[pd.DataFrame, int]:
    """One row per session: its arm, whether it is mature (last prediction at least ``delay_s`` before
    ``now``), a 0/1 column per outcome kind and its mean ``satisfaction`` (NaN without a rating); and the
    number of sessions seen in more than one arm, which are left out."""
    arms_per_session = sessions.groupby("session_id")["arm"].nunique()
    crossover = set(arms_per_session.index[arms_per_session > 1])
    frame = (sessions[~sessions["session_id"].isin(crossover)]
             .groupby("session_id", as_index=False).agg(arm=("arm", "first"), last_ts=("last_ts", "max")))
    frame["mature"] = pd.to_datetime(frame["last_ts"]) <= pd.Timestamp(naive_utc(now) - timedelta(seconds=delay_s))
    happened = outcomes[outcomes["events"] > 0]
    for kind in OUTCOME_KINDS:
        frame[kind] = frame["session_id"].isin(happened.loc[happened["kind"] == kind, "session_id"]).astype(int)
    ratings = outcomes.groupby("session_id")[["satisfaction_sum", "satisfaction_count"]].sum()
    mean = ratings["satisfaction_sum"] / ratings["satisfaction_count"].where(ratings["satisfaction_count"] > 0)
    frame["satisfaction"] = frame["session_id"].map(mean).astype(float)
    return frame, len(crossover)


def arm_metrics(frame: pd.DataFrame) -> dict[str, MetricValue]:
    """Each metric of one arm's sessions: rates with Wilson intervals, satisfaction with a t interval."""
    n = len(frame)
    out = {}
    for kind in OUTCOME_KINDS:
        successes = int(frame[kind].sum()) if n else 0
        low, high = wilson_interval(successes, n)
        out[kind] = MetricValue(successes / n if n else float("nan"), float(low), float(high), n)
    rated = frame["satisfaction"].dropna() if n else pd.Series(dtype=float)
    mean, variance = (float(rated.mean()), float(rated.var(ddof=1))) if len(rated) > 1 else (float("nan"),) * 2
    low, high = mean_interval(mean, variance, len(rated))
    out["satisfaction"] = MetricValue(float(rated.mean()) if len(rated) else float("nan"), float(low), float(high),
                                      len(rated))
    return out


def compare_arms(control: pd.DataFrame, challenger: pd.DataFrame, taus: Mapping[str, float], alpha: float
                 ) -> dict[str, Comparison]:
    """Challenger against control, per metric (the mSPRT of :mod:`experiments.stats`)."""
    out = {}
    for kind in OUTCOME_KINDS:
        out[kind] = compare_proportions(int(control[kind].sum()), len(control), int(challenger[kind].sum()),
                                        len(challenger), tau=taus[kind], alpha=alpha)
    a, b = control["satisfaction"].dropna(), challenger["satisfaction"].dropna()
    out["satisfaction"] = compare_means(a.mean() if len(a) else 0.0, a.var(ddof=1) if len(a) > 1 else 0.0, len(a),
                                        b.mean() if len(b) else 0.0, b.var(ddof=1) if len(b) > 1 else 0.0, len(b),
                                        tau=taus["satisfaction"], alpha=alpha)
    return out


def guardrail_checks(facts: pd.DataFrame, control: str, challengers: Sequence[str],
                     limits: GuardrailLimits = GuardrailLimits()) -> list[GuardrailCheck]:
    """Every arm's guardrail figures; each challenger's judged against the control's with ``limits``."""
    by_arm = {row["arm"]: row for row in facts.to_dict("records")}
    figures = {arm: _guardrail_figures(by_arm.get(arm)) for arm in (control, *challengers)}
    checks = []
    base = figures[control]
    for name in GUARDRAILS:
        value, count = base[name]
        checks.append(GuardrailCheck(control, name, value, value, float("nan"), "", count))
    for arm in challengers:
        for name in GUARDRAILS:
            value, count = figures[arm][name]
            control_value, _count = base[name]
            limit = {"latency_p95_ms": control_value * limits.latency_p95_ratio,
                     "dead_letter_rate": control_value + limits.dead_letter_points,
                     "ood_rate": control_value + limits.ood_points}[name]
            if min(figures[arm]["predictions"], base["predictions"]) < limits.min_predictions or not (
                    math.isfinite(value) and math.isfinite(limit)):
                status = "pending"
            else:
                status = "fail" if value > limit else "pass"
            checks.append(GuardrailCheck(arm, name, value, control_value, limit, status, count))
    return checks


def _guardrail_figures(row: Mapping[str, Any] | None) -> dict[str, Any]:
    predictions = int(row["predictions"]) if row else 0
    letters = int(row["dead_letters"]) if row else 0
    nan = float("nan")
    return {
        "predictions": predictions,
        "latency_p95_ms": (float(row["latency_p95_ms"]) if predictions else nan, predictions),
        "dead_letter_rate": (letters / (letters + predictions) if letters + predictions else nan,
                             letters + predictions),
        "ood_rate": (int(row["ood"]) / predictions if predictions else nan, predictions),
    }


def summarise(
    experiment: Experiment, sessions: pd.DataFrame, outcomes: pd.DataFrame, facts: pd.DataFrame,
    previous: Mapping[tuple[str, str], tuple[float, float, float]] | None = None, *, now: datetime,
    outcome_delay_s: int, include_all: bool = False, final: bool = False,
    limits: GuardrailLimits = GuardrailLimits(),
) -> ExperimentReport:
    """The report from the frames the ``read_*`` functions return (pure: the unit tests feed it frames).

    ``now`` without a time zone is taken as UTC.
    """
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    frame, crossover = session_frame(sessions, outcomes, now=now, delay_s=outcome_delay_s)
    assigned = [experiment.arm_of(session) for session in frame["session_id"]]
    misassigned = int((frame["arm"] != pd.Series(assigned, index=frame.index, dtype=object)).sum())
    if misassigned:
        log.warning("%d sessions of %s are stored under another arm than the assignment gives", misassigned,
                    experiment.name)
    counted = frame if include_all else frame[frame["mature"]]
    per_arm = {arm.name: counted[counted["arm"] == arm.name] for arm in experiment.arms}
    control, challengers = experiment.control.name, [arm.name for arm in experiment.arms[1:]]
    taus = {metric: tau_for(metric, experiment.stop.effect if metric == experiment.primary_metric else None)
            for metric in METRICS}
    alpha = experiment.stop.alpha / len(challengers)
    comparisons = {}
    for arm in challengers:
        comparisons[arm] = compare_arms(per_arm[control], per_arm[arm], taus, alpha)
        for metric, comparison in comparisons[arm].items():
            if min(comparison.n_control, comparison.n_challenger) < experiment.stop.min_sessions:
                continue  # the normal approximation is not trusted yet: nothing to carry over from or to
            if previous and (arm, metric) in previous:
                comparisons[arm][metric] = comparison.combined_with(*previous[(arm, metric)])
    counts = {arm: len(rows) for arm, rows in per_arm.items()}
    srm = srm_p_value(list(counts.values()), [arm.share for arm in experiment.arms])
    decision = decide({arm: comparisons[arm][experiment.primary_metric] for arm in challengers}, counts, srm,
                      experiment.stop, started_at=experiment.started_at, now=now, metric=experiment.primary_metric,
                      final=final)
    facts_by_arm = {row["arm"]: row for row in facts.to_dict("records")}
    arms = []
    for arm in experiment.arms:
        row = facts_by_arm.get(arm.name, {})
        waiting = frame[(frame["arm"] == arm.name) & ~frame["mature"]]
        arms.append(ArmSummary(arm.name, arm.share, str(arm.package_path), counts[arm.name],
                               0 if include_all else len(waiting), int(row.get("predictions", 0)),
                               tuple(sorted(row.get("model_versions", ()))), arm_metrics(per_arm[arm.name])))
    return ExperimentReport(experiment, now, arms, comparisons, srm,
                            guardrail_checks(facts, control, challengers, limits), decision,
                            "all" if include_all else "mature", outcome_delay_s, crossover, misassigned, taus)


def build_report(client: Any, experiment: Experiment, *, outcome_delay_s: int, now: datetime | None = None,
                 include_all: bool = False, final: bool = False) -> ExperimentReport:
    """Read the experiment's rows from ClickHouse and summarise them (one look)."""
    now = now or datetime.now(UTC)
    return summarise(experiment, read_sessions(client, experiment.name), read_outcomes(client, experiment.name),
                     read_arm_facts(client, experiment.name), read_previous_looks(client, experiment), now=now,
                     outcome_delay_s=outcome_delay_s, include_all=include_all, final=final)


# -- writing ClickHouse ---------------------------------------------------------------------------------------
def naive_utc(moment: datetime) -> datetime:
    """``moment`` as naive UTC whole seconds: how ClickHouse DateTime values travel in this project."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def result_rows(report: ExperimentReport) -> list[dict[str, Any]]:
    """The look as ``experiment_results`` rows (layout in the module docstring), de-identified."""
    ts, version = naive_utc(report.looked_at), time.time_ns() // 1000
    common = {"experiment": report.experiment.name, "ts": ts, "srm_p_value": report.srm_p_value,
              "row_version": version}
    outcome = report.decision.outcome
    nan = float("nan")
    rows = []
    for arm in report.arms:
        for metric, figure in arm.metrics.items():
            p_value = report.comparisons[arm.name][metric].p_value if arm.name in report.comparisons else nan
            rows.append({"arm": arm.name, "metric": metric, "sessions": figure.sessions, "value": figure.value,
                         "low": figure.low, "high": figure.high, "p_value": p_value, "decision": outcome})
    for arm, by_metric in report.comparisons.items():
        for metric, c in by_metric.items():
            rows.append({"arm": arm, "metric": f"{metric}{DIFF}", "sessions": min(c.n_control, c.n_challenger),
                         "value": c.estimate, "low": c.low, "high": c.high, "p_value": c.p_value, "decision": outcome})
    for check in report.guardrails:  # failed: value > high; pending (and the control): high is NaN
        limit = check.limit if check.status in ("pass", "fail") else nan
        rows.append({"arm": check.arm, "metric": f"{GUARDRAIL}{check.name}", "sessions": check.count,
                     "value": check.value, "low": nan, "high": limit, "p_value": nan, "decision": outcome})
    return [deidentify_row({**common, **row}, keep=RESULT_KEEP) for row in rows]


def experiment_row(experiment: Experiment, model_versions: Sequence[str], *, now: datetime | None = None
                   ) -> dict[str, Any]:
    """The ``experiments`` row of ``experiment`` (latest row per name wins), de-identified."""
    return deidentify_row({
        "name": experiment.name, "status": experiment.status, "arms": [arm.name for arm in experiment.arms],
        "shares": [arm.share for arm in experiment.arms], "model_versions": list(model_versions),
        "started_at": naive_utc(experiment.started_at),
        "stopped_at": naive_utc(experiment.stopped_at) if experiment.stopped_at else NEVER,
        "definition": experiment.model_dump_json(), "updated_at": naive_utc(now or datetime.now(UTC)),
        "row_version": time.time_ns() // 1000,
    }, keep=EXPERIMENT_KEEP, json_columns=("definition",))


def insert(client: Any, table: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert ``rows`` (one value per column) into ``table``; returns the number of rows."""
    if rows:
        client.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES",
                       [tuple(row[name] for name in columns) for row in rows])
    return len(rows)


def store_look(client: Any, report: ExperimentReport) -> int:
    """Write the look to ``experiment_results``; returns the rows written."""
    return insert(client, "experiment_results", RESULT_COLUMNS, result_rows(report))


def store_experiment(client: Any, experiment: Experiment, model_versions: Sequence[str]) -> None:
    insert(client, "experiments", EXPERIMENT_COLUMNS, [experiment_row(experiment, model_versions)])


def stored_experiment(client: Any, name: str) -> tuple[Experiment, list[str]] | None:
    """The latest stored definition of ``name`` and its model versions, or None when it was never started."""
    rows = client.execute("SELECT definition, model_versions FROM experiments FINAL WHERE name = %(name)s "
                          "ORDER BY row_version DESC LIMIT 1", {"name": name})
    if not rows:
        return None
    return Experiment.model_validate(json.loads(rows[0][0])), list(rows[0][1])


# -- presenting -----------------------------------------------------------------------------------------------
def _figure(value: float, digits: int = 3) -> str:
    return "-" if not math.isfinite(value) else f"{value:.{digits}f}"


def _interval(figure: MetricValue) -> str:
    return f"{_figure(figure.value)} [{_figure(figure.low)}, {_figure(figure.high)}]"


def _difference(c: Comparison) -> str:
    return f"{c.estimate:+.3f} [{c.low:+.3f}, {c.high:+.3f}]"


def summary_lines(report: ExperimentReport) -> list[str]:
    exp = report.experiment
    days = (report.looked_at - exp.started_at).total_seconds() / 86400
    srm = "not enough sessions yet" if not math.isfinite(report.srm_p_value) else (
        f"p = {report.srm_p_value:.3g} " + ("MISMATCH" if report.decision.outcome == "invalid_srm" else "ok"))
    counted = ("all (a preview: outcomes of the newest sessions may be missing)" if report.counted == "all" else
               f"those idle for {report.outcome_delay_s} s (outcomes arrived)")
    lines = [
        f"experiment {exp.name}: {exp.status}, started {exp.started_at:%Y-%m-%d %H:%M} UTC ({days:.1f} days); "
        f"primary metric {exp.primary_metric}, alpha {exp.stop.alpha:g}, min {exp.stop.min_sessions} sessions per arm",
        f"sessions counted: {counted}; sample ratio {srm}",
    ]
    if report.crossover_sessions or report.misassigned_sessions:
        lines.append(f"WARNING: {report.crossover_sessions} sessions in more than one arm (left out), "
                     f"{report.misassigned_sessions} stored under another arm than assigned")
    return lines


def format_table(report: ExperimentReport) -> str:
    """The look as plain-text tables for a terminal (``nlumon experiment status``)."""
    names = [arm.name for arm in report.arms]
    challengers = list(report.comparisons)
    lines = [*summary_lines(report), ""]
    lines.append(f"{'arm':<14}{'share':>7}{'sessions':>10}{'waiting':>9}{'predictions':>13}  versions seen")
    for arm in report.arms:
        lines.append(f"{arm.name:<14}{arm.share:>7.2f}{arm.sessions:>10}{arm.pending_sessions:>9}"
                     f"{arm.predictions:>13}  {', '.join(arm.model_versions) or '-'}")
    lines.append("")
    header = f"{'metric':<16}" + "".join(f"{name:>24}" for name in names)
    header += "".join(f"{'diff ' + arm + ' (CS)':>30}{'p':>8}" for arm in challengers)
    lines.append(header)
    for metric in METRICS:
        row = f"{metric:<16}" + "".join(f"{_interval(arm.metrics[metric]):>24}" for arm in report.arms)
        for arm in challengers:
            c = report.comparisons[arm][metric]
            row += f"{_difference(c):>30}{c.p_value:>8.3g}"
        lines.append(row)
    lines += ["", f"{'guardrail':<18}{'arm':<14}{'value':>12}{'control':>12}{'limit':>12}  status"]
    for check in report.guardrails:
        if check.arm in challengers:
            lines.append(f"{check.name:<18}{check.arm:<14}{_figure(check.value, 4):>12}"
                         f"{_figure(check.control, 4):>12}{_figure(check.limit, 4):>12}  {check.status}")
    lines += ["", f"decision: {report.decision.outcome} - {report.decision.reason}"]
    if report.guardrails_failed:
        lines.append("guardrails failed: " + ", ".join(f"{c.arm} {c.name}" for c in report.guardrails_failed))
    return "\n".join(lines)


def markdown(report: ExperimentReport) -> str:
    """The conclusion report as Markdown (``conclude`` writes it beside the JSON)."""
    exp = report.experiment
    names = [arm.name for arm in report.arms]
    lines = [f"# Experiment {exp.name}", "", *[f"- {line}" for line in summary_lines(report)],
             f"- decision: **{report.decision.outcome}** - {report.decision.reason}", "",
             "| arm | share | package | versions seen | sessions | waiting |",
             "| --- | ---: | --- | --- | ---: | ---: |"]
    for arm in report.arms:
        lines.append(f"| {arm.name} | {arm.share:.2f} | `{arm.package_path}` | {', '.join(arm.model_versions) or '-'} "
                     f"| {arm.sessions} | {arm.pending_sessions} |")
    lines += ["", "| metric | " + " | ".join(names) + " | " +
              " | ".join(f"{arm} - {names[0]} (confidence sequence) | p" for arm in report.comparisons) + " |",
              "| --- |" + " ---: |" * (len(names) + 2 * len(report.comparisons))]
    for metric in METRICS:
        cells = [_interval(arm.metrics[metric]) for arm in report.arms]
        for arm in report.comparisons:
            c = report.comparisons[arm][metric]
            cells += [_difference(c), f"{c.p_value:.3g}"]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    lines += ["", "| guardrail | arm | value | control | limit | status |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for check in report.guardrails:
        if check.arm != names[0]:
            lines.append(f"| {check.name} | {check.arm} | {_figure(check.value, 4)} | {_figure(check.control, 4)} "
                         f"| {_figure(check.limit, 4)} | {check.status} |")
    lines += ["", "Rates are per session (a session counts once per outcome kind) with 95 % Wilson intervals; "
              "satisfaction is the mean session rating with a t interval. The difference's interval is the "
              f"always-valid confidence sequence at alpha {exp.stop.alpha:g} and p the always-valid p-value of "
              "the mSPRT (docs/experiments.md).", ""]
    return "\n".join(lines)
