"""Property tests of the routing policy: ``decide`` never raises and agrees with a plain re-statement of the rule,
whatever the features hold; ``parse_policy`` raises only ``PolicyError`` (with ``source:line:``) on any text."""

from __future__ import annotations

import math
import operator
import re
from fractions import Fraction

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.routing import DEFAULT_POLICY_PATH, NUMBER_FEATURES, ROUTES, TEXT_FEATURES, PolicyError, parse_policy

FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

EVERY_FORM = parse_policy("""\
default: fulfil
rules:
  - route: escalate
    any:
      - {feature: frustration, op: ">", value: 0.8}
      - {feature: head.business_risk.high, op: ">=", value: 0.7}
      - {feature: intent, op: in, value: [cancel_order, complaint]}
  - route: clarify
    any:
      - {feature: is_ood, op: "==", value: 1}
      - {feature: confidence, op: "<", value: 0.45}
      - {feature: entropy, op: ">", value: 2.5}
      - {feature: margin, op: "<=", value: 0.1}
      - {feature: channel, op: "!=", value: voice}
  - route: confirm
    all:
      - {feature: asr_confidence, op: "<", value: 0.7}
      - {slot_types: [person, store]}
      - {feature: slot_confidence, slot_types: [person], op: "<", value: 0.5}
      - {feature: assistant, op: not_in, value: [associate]}
  - route: confirm
    all:
      - {feature: slot_confidence, op: "!=", value: 0.5}
      - {feature: energy, op: "==", value: -3}
""")
KEYS = sorted(EVERY_FORM.features_used() | set(NUMBER_FEATURES) | set(TEXT_FEATURES))

EDGES = st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 0.5, 1.0, 3.0, None, "0.5"])
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.integers(min_value=10**300),
    st.booleans(), st.fractions(), st.floats(width=32, allow_nan=True).map(np.float32),
)
SCALARS = st.one_of(st.none(), NUMBERS, st.text(max_size=8), st.binary(max_size=4), st.decimals(),
                    st.sampled_from(["voice", "text", "person", "associate", "cancel_order"]))
VALUES = st.one_of(EDGES, NUMBERS, SCALARS, st.lists(SCALARS, max_size=4), st.tuples(SCALARS, SCALARS),
                   st.dictionaries(st.text(max_size=3), SCALARS, max_size=2))
FEATURES = st.fixed_dictionaries({}, optional={key: VALUES for key in KEYS})  # each key there or not


@FUZZ
@given(FEATURES)
def test_decide_never_raises_and_logs_each_fired_condition_once_with_a_finite_score(features):
    decision = EVERY_FORM.decide(features)
    assert decision.route in ROUTES
    assert len(decision.heads) == len(decision.scores) == len(set(decision.heads))
    assert all(type(score) is float and math.isfinite(score) for score in decision.scores)
    assert all(isinstance(name, str) for name in decision.heads)


def test_every_feature_with_every_edge_value_fires_only_with_a_finite_score():
    # Hypothesis draws the edges too, but rarely all of them for every key: here each one is tried everywhere.
    edges = [math.nan, math.inf, -math.inf, -1.0, 3.0, 10**400, np.float32("nan"), Fraction(10**400), "0.5", None]
    for key in KEYS:
        for edge in edges:
            for features in ({key: edge}, {key: [edge, edge]}, {"slot_types": ["person"], key: [edge]}):
                decision = EVERY_FORM.decide(features)
                assert all(type(score) is float and math.isfinite(score) for score in decision.scores), features


def _usable(value, probability: bool) -> float | None:
    """The rule as the docs state it: a finite real number (within 0..1 for a probability), else missing."""
    if not isinstance(value, int | float | Fraction | np.floating):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    if not math.isfinite(number) or (probability and not 0.0 <= number <= 1.0):
        return None
    return number


@FUZZ
@given(st.sampled_from(["confidence", "entropy", "energy", "head.risk.high"]),
       st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), st.floats(0.0, 1.0), st.one_of(VALUES, NUMBERS),
       st.booleans())
def test_a_number_condition_fires_exactly_when_a_usable_value_meets_it(feature, op, threshold, value, present):
    condition = {"feature": feature, "op": op, "value": threshold}
    policy = parse_policy(yaml.safe_dump({"rules": [{"route": "clarify", "any": [condition]}]}))
    decision = policy.decide({feature: value} if present else {})
    usable = _usable(value, NUMBER_FEATURES.get(feature, True)) if present else None
    compare = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
               "!=": operator.ne}[op]
    fires = usable is not None and compare(usable, threshold)
    assert decision.route == ("clarify" if fires else "fulfil")
    assert decision.scores == ((usable,) if fires else ())


SOURCE_LINE = re.compile(r"^<fuzz>:\d+: \S")


def _only_policy_errors(text: str) -> None:
    try:
        policy = parse_policy(text, "<fuzz>")
    except PolicyError as error:
        assert SOURCE_LINE.match(str(error)), str(error)
    else:
        assert policy.decide({}).route == policy.default


@FUZZ
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_only_a_policy_error_with_a_line(text):
    _only_policy_errors(text)


DEFAULT_TEXT = DEFAULT_POLICY_PATH.read_text()


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(DEFAULT_TEXT)), st.integers(0, 20),
                          st.text(alphabet=st.sampled_from(list(" -:[]{},'\"\n#!&*|>0.5abx\t")), max_size=6)),
                min_size=1, max_size=4))
def test_edits_of_the_default_policy_parse_or_raise_only_a_policy_error(edits):
    text = DEFAULT_TEXT
    for at, cut, insert in edits:
        at = min(at, len(text))
        text = text[:at] + insert + text[at + cut:]
    _only_policy_errors(text)


WORDS = st.sampled_from(["default", "rules", "route", "description", "any", "all", "feature", "op", "value",
                         "slot_types", *ROUTES, *NUMBER_FEATURES, *TEXT_FEATURES, "slot_confidence",
                         "head.risk.high", "person", "<", ">=", "==", "in", "not_in", "x"])
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
                   WORDS, st.text(max_size=5))
STRUCTURES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(WORDS, st.integers(0, 3), st.none()), inner, max_size=5)),
    max_leaves=25,
)


@FUZZ
@given(STRUCTURES)
def test_any_yaml_structure_parses_or_raises_only_a_policy_error(structure):
    _only_policy_errors(yaml.safe_dump(structure, default_flow_style=None))
