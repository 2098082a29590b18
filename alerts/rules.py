"""Alert rules: a YAML file, validated where it enters, with errors that name the file and line.

A rule file is a mapping with a ``rules`` list::

    rules:
      - name: ood-rate-high
        metric: ood_rate
        condition: ">"
        threshold: 0.15
        for_windows: 2
        scope: per_assistant
        severity: warning
        cooldown: 30m
        receivers: [oncall]

    >>> rules = parse_rules('rules:\\n  - {name: r, metric: ood_rate, condition: ">", threshold: 0.1}\\n')
    >>> rules[0].breached(0.2), rules[0].cooldown_s, rules[0].scope
    (True, 1800.0, 'per_assistant')
    >>> parse_rules('rules:\\n  - {name: r, metric: ood_rate, condition: "=>", threshold: 0.1}\\n', "x.yaml")
    Traceback (most recent call last):
    ...
    alerts.rules.RuleError: x.yaml:2: rule 'r': condition must be one of >, >=, <, <= (got '=>')

A rule has a ``kind``: ``threshold`` (the default, the form above) or ``low_conversion`` — "high traffic,
low conversion": it watches the metric ``conversion_drop`` (baseline conversion rate minus the window's, per
subject: an intent or ``ood``; see ``monitor/conversion.py``), only for the ``top_n`` subjects with the most
traffic in the window that have at least ``min_traffic`` utterances in it and ``min_baseline_traffic`` in
the baseline, and fires when the drop is at least ``margin`` (absolute, in rate points). Each subject is
its own alert group. It has no ``condition`` or ``threshold`` (``margin`` is its threshold)::

    rules:
      - name: high-traffic-low-conversion
        kind: low_conversion
        top_n: 10
        min_traffic: 50
        min_baseline_traffic: 500
        margin: 0.15
        for_windows: 3
        receivers: [ml-team]

    >>> rule = parse_rules('rules:\\n  - {name: c, kind: low_conversion, margin: 0.15, top_n: 5}\\n')[0]
    >>> rule.metric, rule.condition, rule.threshold, rule.top_n, rule.min_traffic
    ('conversion_drop', '>=', 0.15, 5, 50)
    >>> bad = 'rules:\\n  - {name: c, kind: low_conversion, margin: 0.15, threshold: 0.2}\\n'
    >>> parse_rules(bad, "x.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    alerts.rules.RuleError: x.yaml:2: rule 'c': field(s) threshold not used by kind low_conversion (margin is ...
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alerts.events import MetricPoint

CONDITIONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
SCOPES = ("per_assistant", "global")
SEVERITIES = ("info", "warning", "critical")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_METRIC = re.compile(r"^[a-z][a-z0-9_.]*$")
THRESHOLD, LOW_CONVERSION = "threshold", "low_conversion"
KINDS = (THRESHOLD, LOW_CONVERSION)
CONVERSION_DROP = "conversion_drop"  # the metric of low_conversion rules (monitor/conversion.py emits it)
_COMMON_FIELDS = {"name", "kind", "for_windows", "scope", "severity", "cooldown", "receivers", "description"}
_FIELDS = {
    THRESHOLD: _COMMON_FIELDS | {"metric", "condition", "threshold"},
    LOW_CONVERSION: _COMMON_FIELDS | {"metric", "margin", "top_n", "min_traffic", "min_baseline_traffic"},
}
DEFAULT_RULES_PATH = Path(__file__).with_name("default_rules.yaml")


class RuleError(ValueError):
    """A rule file is invalid; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class Rule:
    """One alert rule; see the module docstring for the YAML form."""

    name: str
    metric: str
    condition: str
    threshold: float
    for_windows: int = 1
    scope: str = "per_assistant"
    severity: str = "warning"
    cooldown_s: float = 1800.0
    receivers: tuple[str, ...] = ()
    description: str = ""
    kind: str = THRESHOLD
    top_n: int = 10  # the fields below apply to kind low_conversion only
    min_traffic: int = 50
    min_baseline_traffic: int = 500

    def breached(self, value: float) -> bool:
        """Whether ``value`` meets the rule's condition (NaN never does)."""
        return CONDITIONS[self.condition](value, self.threshold)

    def admits(self, point: MetricPoint) -> bool:
        """Whether this rule judges ``point`` at all: a threshold rule every point of its metric; a
        low_conversion rule a subject's point whose evidence says it is among the ``top_n`` subjects by
        traffic (``rank``, 1 = most) with at least ``min_traffic`` utterances (``traffic``) and
        ``min_baseline_traffic`` in its baseline (``baseline_traffic``)."""
        if self.kind != LOW_CONVERSION:
            return True
        evidence = point.evidence
        rank, traffic, baseline = (evidence.get(key) for key in ("rank", "traffic", "baseline_traffic"))
        if point.subject is None or not all(_is_number(v) for v in (rank, traffic, baseline)):
            return False
        return 1 <= rank <= self.top_n and traffic >= self.min_traffic and baseline >= self.min_baseline_traffic

    def worse(self, a: float, b: float) -> float:
        """The value of the two that is further into the alerting side (the one a burst reports)."""
        return max(a, b) if self.condition in (">", ">=") else min(a, b)


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration such as ``"30m"``, ``"90s"``, ``"1h"``, ``"1d"`` or a bare number of seconds.

    >>> parse_duration("30m"), parse_duration("250ms"), parse_duration(5)
    (1800.0, 0.25, 5.0)
    """
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"a duration cannot be negative: {text!r}")
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"not a duration like 30s, 5m, 1h, 1d: {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def load_rules(path: str | Path = DEFAULT_RULES_PATH) -> list[Rule]:
    """Read and validate a rule file; raises :class:`RuleError` naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RuleError(f"{path}: cannot read rule file: {error.strerror or error}") from None
    return parse_rules(text, str(path))


def parse_rules(text: str, source: str = "<rules>") -> list[Rule]:
    """Validate rule YAML ``text``; ``source`` names it in error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise RuleError(f"{source}{line}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if root is None:
        raise RuleError(f"{source}:1: empty rule file (expected a mapping with a 'rules' list)")
    rules_node = _rules_sequence(root, source)
    rules: list[Rule] = []
    first_line: dict[str, int] = {}
    for item in rules_node.value:
        line = item.start_mark.line + 1
        rule = _rule_from_node(item, source)
        if rule.name in first_line:
            first = first_line[rule.name]
            raise RuleError(f"{source}:{line}: rule '{rule.name}': duplicate name (first at line {first})")
        first_line[rule.name] = line
        rules.append(rule)
    return rules


def _rules_sequence(root: yaml.Node, source: str) -> yaml.SequenceNode:
    if not isinstance(root, yaml.MappingNode):
        raise RuleError(f"{source}:{root.start_mark.line + 1}: expected a mapping with a 'rules' list")
    for key, value in root.value:
        if key.value == "rules":
            if not isinstance(value, yaml.SequenceNode):
                raise RuleError(f"{source}:{value.start_mark.line + 1}: 'rules' must be a list")
            return value
    raise RuleError(f"{source}:{root.start_mark.line + 1}: missing the 'rules' list")


def _rule_from_node(node: yaml.Node, source: str) -> Rule:
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.MappingNode):
        raise RuleError(f"{source}:{line}: each rule must be a mapping")
    data: dict[str, Any] = yaml.SafeLoader("").construct_mapping(node, deep=True)
    key_lines = {key.value: key.start_mark.line + 1 for key, _ in node.value}
    label = f"rule '{data['name']}'" if isinstance(data.get("name"), str) else "rule"

    def fail(field: str | None, message: str) -> RuleError:
        at = key_lines.get(field, line) if field else line
        return RuleError(f"{source}:{at}: {label}: {message}")

    kind = _check(data, "kind", fail, lambda v: v in KINDS, f"must be one of {', '.join(KINDS)}", default=THRESHOLD)
    allowed = _FIELDS[kind]
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        other = set(unknown) <= _FIELDS[LOW_CONVERSION if kind == THRESHOLD else THRESHOLD]
        why = (f"field(s) {', '.join(unknown)} not used by kind {kind}"
               + (" (margin is its threshold)" if kind == LOW_CONVERSION else " (they are for kind low_conversion)")
               if other else f"unknown field(s) {', '.join(unknown)}")
        raise fail(unknown[0], f"{why}; allowed: {', '.join(sorted(allowed))}")
    required = ("name", "metric", "condition", "threshold") if kind == THRESHOLD else ("name", "margin")
    for field in required:
        if field not in data:
            raise fail(None, f"missing field '{field}'")
    common = {
        "name": _check(data, "name", fail, lambda v: isinstance(v, str) and v.strip() != "",
                       "must be a non-empty string"),
        "for_windows": _check(data, "for_windows", fail, lambda v: type(v) is int and v >= 1,
                              "must be an integer >= 1", default=1),
        "scope": _check(data, "scope", fail, lambda v: v in SCOPES, f"must be one of {', '.join(SCOPES)}",
                        default="per_assistant"),
        "severity": _check(data, "severity", fail, lambda v: v in SEVERITIES,
                           f"must be one of {', '.join(SEVERITIES)}", default="warning"),
        "cooldown_s": _duration(data, fail),
        "receivers": tuple(_check(data, "receivers", fail, _is_name_list, "must be a list of receiver names",
                                  default=[])),
        "description": str(data.get("description", "")),
    }
    if kind == LOW_CONVERSION:
        return _low_conversion_rule(data, fail, common)
    return Rule(
        metric=_check(data, "metric", fail, lambda v: isinstance(v, str) and bool(_METRIC.match(v)),
                      "must be a metric name such as ood_rate or drift.confidence"),
        condition=_check(data, "condition", fail, lambda v: v in CONDITIONS,
                         f"must be one of {', '.join(CONDITIONS)} (got {data.get('condition')!r})"),
        threshold=float(_check(data, "threshold", fail, _is_number, "must be a number")),
        **common,
    )


def _low_conversion_rule(data: dict, fail: Callable, common: dict[str, Any]) -> Rule:
    """A ``kind: low_conversion`` rule: metric ``conversion_drop``, condition ``>=``, threshold ``margin``."""
    _check(data, "metric", fail, lambda v: v == CONVERSION_DROP, f"must be {CONVERSION_DROP} for kind low_conversion")
    margin = _check(data, "margin", fail, lambda v: _is_number(v) and 0 < v < 1,
                    "must be a number between 0 and 1 (a drop in conversion rate, absolute)")
    return Rule(
        metric=CONVERSION_DROP, condition=">=", threshold=float(margin), kind=LOW_CONVERSION,
        top_n=_check(data, "top_n", fail, _is_count(1), "must be an integer >= 1", default=Rule.top_n),
        min_traffic=_check(data, "min_traffic", fail, _is_count(1), "must be an integer >= 1",
                           default=Rule.min_traffic),
        min_baseline_traffic=_check(data, "min_baseline_traffic", fail, _is_count(0), "must be an integer >= 0",
                                    default=Rule.min_baseline_traffic),
        **common,
    )


def _is_count(minimum: int) -> Callable[[Any], bool]:
    return lambda value: type(value) is int and value >= minimum


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _is_name_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)


def _check(data: dict, field: str, fail: Callable, valid: Callable[[Any], bool], message: str, default: Any = None):
    if field not in data:
        return default
    if not valid(data[field]):
        raise fail(field, f"{field} {message}")
    return data[field]


def _duration(data: dict, fail: Callable) -> float:
    try:
        return parse_duration(data.get("cooldown", "30m"))
    except ValueError as error:
        raise fail("cooldown", f"cooldown {error}") from None
