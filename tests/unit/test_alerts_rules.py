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
