"""Rule files: defaults load, and every kind of bad rule names the file and the line of the problem."""

from __future__ import annotations

import pytest

from alerts.rules import DEFAULT_RULES_PATH, Rule, RuleError, load_rules, parse_duration

GOOD = """\
rules:
  - name: ood-rate-high
    metric: ood_rate
    condition: ">"
    threshold: 0.15
    receivers: [oncall]
"""


def _write(tmp_path, text):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_default_rules_load_and_cover_the_metrics_the_monitor_emits():
    rules = load_rules(DEFAULT_RULES_PATH)
    metrics = {rule.metric for rule in rules}
    assert {"drift.confidence", "ood_rate", "accuracy_estimate", "dlq_rate", "throughput_drop", "latency_p95_ms",
            "consumer_lag", "ood_cluster_growth"} <= metrics
    assert all(rule.receivers for rule in rules), "a default rule without receivers would alert nobody"


def test_defaults_apply_when_optional_fields_are_left_out(tmp_path):
    (rule,) = load_rules(_write(tmp_path, GOOD))
    assert rule == Rule("ood-rate-high", "ood_rate", ">", 0.15, 1, "per_assistant", "warning", 1800.0, ("oncall",))


@pytest.mark.parametrize(
    ("field_line", "expected"),
    [
        ('    condition: "=>"', "condition must be one of"),
        ("    threshold: high", "threshold must be a number"),
        ("    cooldown: soon", "cooldown not a duration"),
        ("    severity: urgent", "severity must be one of"),
        ("    scope: per_user", "scope must be one of"),
        ("    for_windows: 0", "for_windows must be an integer >= 1"),
        ("    threshhold: 0.2", "unknown field(s) threshhold"),
        ("    receivers: oncall", "receivers must be a list"),
    ],
)
def test_a_bad_field_is_reported_with_file_and_line_of_that_field(tmp_path, field_line, expected):
    # GOOD is lines 1-6; the second rule starts on line 7 and its bad field is always on line 10, so
    # reporting the first rule's line or the second rule's first line would both fail.
    field = field_line.split(":")[0].strip()
    others = [f"    {k}: {v}" for k, v in (("condition", '">"'), ("threshold", "0.1")) if k != field]
    second = ["  - name: second", "    metric: ood_rate", others[0], field_line, *others[1:]]
    path = _write(tmp_path, GOOD + "\n".join(second) + "\n")
    with pytest.raises(RuleError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:10: rule 'second': "), message
    assert expected in message


def test_missing_field_points_at_the_rule_and_duplicate_names_at_the_second(tmp_path):
    path = _write(tmp_path, GOOD + "  - name: incomplete\n    metric: ood_rate\n")
    with pytest.raises(RuleError, match=rf"^{path}:7: rule 'incomplete': missing field 'condition'"):
        load_rules(path)
    path = _write(tmp_path, GOOD + GOOD.split("\n", 1)[1])
    with pytest.raises(RuleError, match=rf"^{path}:7: rule 'ood-rate-high': duplicate name \(first at line 2\)"):
        load_rules(path)


def test_broken_yaml_and_wrong_shapes_are_rule_errors_with_a_line(tmp_path):
    with pytest.raises(RuleError, match=r":3: not valid YAML: mapping values are not allowed here"):
        load_rules(_write(tmp_path, "rules:\n  - name: x\n    metric: a: b\n"))
    with pytest.raises(RuleError, match=r":1: missing the 'rules' list"):
        load_rules(_write(tmp_path, "alerts: []\n"))
    with pytest.raises(RuleError, match=r":2: each rule must be a mapping"):
        load_rules(_write(tmp_path, "rules:\n  - just a string\n"))
    with pytest.raises(RuleError, match="cannot read rule file"):
        load_rules(tmp_path / "missing.yaml")


def test_durations_and_conditions():
    assert parse_duration("1h") == 3600 and parse_duration("1.5m") == 90 and parse_duration("2d") == 172800
    with pytest.raises(ValueError):
        parse_duration("-5m")
    below = Rule("low", "accuracy_estimate", "<", 0.8)
    assert below.breached(0.79) and not below.breached(0.8)
    assert not Rule("r", "m", ">=", 1.0).breached(float("nan"))
    assert below.worse(0.7, 0.75) == 0.7 and Rule("r", "m", ">", 1).worse(2, 3) == 3


# --- kind: low_conversion ("high traffic, low conversion", monitor/conversion.py) -------------------------------

CONVERSION = """\
rules:
  - name: low-conv
    kind: low_conversion
    margin: 0.15
    receivers: [ml-team]
"""


def test_default_rules_hold_a_low_conversion_rule_for_the_top_intents():
    rules = load_rules(DEFAULT_RULES_PATH)
    (rule,) = [rule for rule in rules if rule.kind == "low_conversion"]
    assert rule.name == "high-traffic-low-conversion" and rule.receivers
    assert (rule.metric, rule.condition, rule.threshold) == ("conversion_drop", ">=", 0.15)
    assert (rule.top_n, rule.min_traffic, rule.min_baseline_traffic, rule.for_windows) == (10, 50, 500, 3)
    assert all(other.kind == "threshold" for other in rules if other is not rule)  # the others are unchanged


def test_a_low_conversion_rule_gets_its_metric_condition_and_defaults(tmp_path):
    (rule,) = load_rules(_write(tmp_path, CONVERSION))
    assert rule == Rule("low-conv", "conversion_drop", ">=", 0.15, receivers=("ml-team",), kind="low_conversion",
                        top_n=10, min_traffic=50, min_baseline_traffic=500)
    (rule,) = load_rules(_write(tmp_path, CONVERSION + "    top_n: 3\n    min_traffic: 80\n"
                                "    min_baseline_traffic: 0\n    metric: conversion_drop\n"))
    assert (rule.top_n, rule.min_traffic, rule.min_baseline_traffic) == (3, 80, 0)


@pytest.mark.parametrize(
    ("field_line", "expected"),
    [
        ("    margin: 1.5", "margin must be a number between 0 and 1"),
        ("    margin: high", "margin must be a number between 0 and 1"),
        ("    top_n: 0", "top_n must be an integer >= 1"),
        ("    top_n: 2.5", "top_n must be an integer >= 1"),
        ("    min_traffic: -1", "min_traffic must be an integer >= 1"),
        ("    min_baseline_traffic: lots", "min_baseline_traffic must be an integer >= 0"),
        ("    metric: ood_rate", "metric must be conversion_drop for kind low_conversion"),
        ('    condition: "<"', "field(s) condition not used by kind low_conversion (margin is its threshold)"),
        ("    threshold: 0.2", "field(s) threshold not used by kind low_conversion"),
        ("    top_k: 5", "unknown field(s) top_k"),
    ],
)
def test_a_bad_low_conversion_field_is_reported_with_file_and_line(tmp_path, field_line, expected):
    # CONVERSION is lines 1-5; the second rule starts on line 6 and its bad field is on line 9.
    second = ["  - name: second", "    kind: low_conversion", "    receivers: [oncall]", field_line]
    if not field_line.startswith("    margin"):
        second.append("    margin: 0.2")
    path = _write(tmp_path, CONVERSION + "\n".join(second) + "\n")
    with pytest.raises(RuleError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:9: rule 'second': "), message
    assert expected in message


def test_kind_is_checked_and_each_kind_refuses_the_other_kinds_fields(tmp_path):
    path = _write(tmp_path, GOOD + "    kind: alarm\n")
    with pytest.raises(RuleError, match=rf"^{path}:7: rule 'ood-rate-high': kind must be one of threshold, low_conv"):
        load_rules(path)
    path = _write(tmp_path, GOOD + "    top_n: 5\n")
    with pytest.raises(RuleError, match=rf"^{path}:7: .*field\(s\) top_n not used by kind threshold \(they are for"):
        load_rules(path)
    path = _write(tmp_path, CONVERSION.replace("    margin: 0.15\n", ""))
    with pytest.raises(RuleError, match=rf"^{path}:2: rule 'low-conv': missing field 'margin'"):
        load_rules(path)
    (rule,) = load_rules(_write(tmp_path, GOOD + "    kind: threshold\n"))
    assert rule.kind == "threshold" and rule.metric == "ood_rate"
