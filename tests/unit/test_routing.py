"""Routing policy: every condition form, first match, missing features, every validation error with its file:line,
the default policy on rows like the ones it was tuned on, and ``nlumon routing check``."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from streams.routing import (
    DEFAULT_POLICY_PATH,
    ROUTES,
    Decision,
    PolicyError,
    load_policy,
    parse_policy,
    route_features,
)
from streams.routing_cli import routing_app

runner = CliRunner()


def _policy(*conditions: str, route: str = "clarify", mode: str = "any", default: str | None = None):
    head = f"default: {default}\n" if default else ""
    body = "".join(f"      - {condition}\n" for condition in conditions)
    return parse_policy(f"{head}rules:\n  - route: {route}\n    {mode}:\n{body}")


def _row(**values):
    """A prediction row of a confident, calm, in-distribution voice utterance, with ``values`` changed."""
    row = {
        "confidence": 0.99, "margin": 0.97, "entropy": 0.05, "energy": -11.0, "ood_score": 420.0, "is_ood": 0,
        "unk_rate": 0.0, "token_count": 8, "asr_confidence": 0.93, "frustration": 0.01, "channel": "voice",
        "assistant": "shopper", "intent": "add_to_cart", "slot_types": ["quantity", "product"],
        "slot_confidences": [0.98, 0.95],
    }
    row.update(values)
    return row


# --- condition forms ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("op", "threshold", "fires_at"),
    [("<", 0.5, {0.4}), ("<=", 0.5, {0.4, 0.5}), (">", 0.5, {0.6}), (">=", 0.5, {0.5, 0.6}),
     ("==", 0.5, {0.5}), ("!=", 0.5, {0.4, 0.6})],
)
def test_each_number_op_fires_exactly_where_it_should(op, threshold, fires_at):
    policy = _policy(f'{{feature: confidence, op: "{op}", value: {threshold}}}')
    for value in (0.4, 0.5, 0.6):
        decision = policy.decide({"confidence": value})
        assert decision.route == ("clarify" if value in fires_at else "fulfil"), (op, value)
        assert decision.heads == (("confidence",) if value in fires_at else ())
        assert decision.scores == ((value,) if value in fires_at else ())


def test_integer_features_and_thresholds_compare_as_numbers():
    policy = _policy('{feature: is_ood, op: "==", value: 1}', '{feature: token_count, op: ">", value: 40}')
    assert policy.decide({"is_ood": 1, "token_count": 3}) == Decision("clarify", ("is_ood",), (1.0,))
    assert policy.decide({"is_ood": 0, "token_count": 41}) == Decision("clarify", ("token_count",), (41.0,))
    assert policy.decide({"is_ood": 0, "token_count": 40}).route == "fulfil"


@pytest.mark.parametrize(
    ("condition", "fires_for", "quiet_for"),
    [
        ('{feature: channel, op: "==", value: voice}', "voice", "text"),
        ('{feature: channel, op: "!=", value: voice}', "text", "voice"),
        ("{feature: intent, op: in, value: [cancel_order, return_item]}", "return_item", "add_to_cart"),
        ("{feature: intent, op: not_in, value: [cancel_order, return_item]}", "add_to_cart", "cancel_order"),
    ],
)
def test_text_conditions_name_the_value_that_fired(condition, fires_for, quiet_for):
    policy = _policy(condition, route="escalate")
    feature = condition.split(",")[0].split(":")[1].strip()
    assert policy.decide({feature: fires_for}) == Decision("escalate", (f"{feature}={fires_for}",), (1.0,))
    assert policy.decide({feature: quiet_for}) == Decision("fulfil", (), ())


def test_slot_presence_fires_on_any_listed_type_and_names_the_one_present():
    policy = _policy("{slot_types: [person, store]}", route="confirm")
    assert policy.decide(_row(slot_types=["date_time", "store"], slot_confidences=[0.9, 0.8])) == Decision(
        "confirm", ("slot.store",), (1.0,))
    assert policy.decide(_row()).route == "fulfil"
    assert policy.decide(_row(slot_types=[], slot_confidences=[])).route == "fulfil"


def test_slot_confidence_takes_the_least_sure_slot_of_the_listed_types_or_of_all_slots():
    of_people = _policy("{feature: slot_confidence, slot_types: [person], op: '<', value: 0.5}", route="confirm")
    row = _row(slot_types=["person", "product", "person"], slot_confidences=[0.7, 0.1, 0.45])
    assert of_people.decide(row) == Decision("confirm", ("slot_confidence.person",), (0.45,))
    assert of_people.decide(_row(slot_types=["product"], slot_confidences=[0.1])).route == "fulfil"  # no person
    assert of_people.decide(_row(slot_types=["person"], slot_confidences=[0.5])).route == "fulfil"

    of_all = _policy("{feature: slot_confidence, op: '<', value: 0.5}", route="confirm")
    assert of_all.decide(row) == Decision("confirm", ("slot_confidence.product",), (0.1,))


def test_head_features_are_compared_like_any_probability():
    policy = _policy("{feature: head.business_risk.high, op: '>', value: 0.7}", route="escalate")
    assert policy.decide({"head.business_risk.high": 0.9}) == Decision("escalate", ("head.business_risk.high",), (0.9,))
    assert policy.decide({"head.business_risk.high": 0.6}).route == "fulfil"


def test_all_needs_every_condition_and_any_needs_one():
    conditions = ("{feature: asr_confidence, op: '<', value: 0.7}", "{slot_types: [person]}")
    needs_all = _policy(*conditions, route="confirm", mode="all")
    needs_any = _policy(*conditions, route="confirm", mode="any")
    low_asr_no_name = _row(asr_confidence=0.5)
    low_asr_name = _row(asr_confidence=0.5, slot_types=["person"], slot_confidences=[0.9])
    assert needs_all.decide(low_asr_no_name).route == "fulfil"
    assert needs_any.decide(low_asr_no_name).route == "confirm"
    assert needs_all.decide(low_asr_name) == Decision("confirm", ("asr_confidence", "slot.person"), (0.5, 1.0))


# --- order and logging ----------------------------------------------------------------------------------------

ORDERED = """\
default: fulfil
rules:
  - route: escalate
    any:
      - {feature: frustration, op: ">", value: 0.8}
  - route: clarify
    any:
      - {feature: is_ood, op: "==", value: 1}
      - {feature: confidence, op: "<", value: 0.5}
  - route: confirm
    all:
      - {feature: confidence, op: "<", value: 0.5}
      - {feature: asr_confidence, op: "<", value: 0.7}
"""


def test_first_matching_rule_wins_and_every_condition_that_fired_is_logged_once_in_policy_order():
    policy = parse_policy(ORDERED)
    frustrated_ood = policy.decide({"frustration": 0.9, "is_ood": 1, "confidence": 0.3, "asr_confidence": 0.5})
    assert frustrated_ood == Decision("escalate", ("frustration", "is_ood", "confidence", "asr_confidence"),
                                      (0.9, 1.0, 0.3, 0.5))
    calm_ood = policy.decide({"frustration": 0.1, "is_ood": 1, "confidence": 0.3, "asr_confidence": 0.5})
    assert calm_ood.route == "clarify" and calm_ood.heads == ("is_ood", "confidence", "asr_confidence")
    # A condition of a rule that did not match is still logged: low ASR confidence alone does not confirm.
    assert policy.decide({"confidence": 0.9, "asr_confidence": 0.5}) == Decision("fulfil", ("asr_confidence",),
                                                                                  (0.5,))


def test_default_route_comes_from_the_file_and_is_fulfil_without_one():
    assert _policy("{feature: confidence, op: '<', value: 0.5}").default == "fulfil"
    policy = _policy("{feature: confidence, op: '<', value: 0.5}", route="fulfil", default="confirm")
    assert policy.default == "confirm"
    assert policy.decide({"confidence": 0.9}).route == "confirm"
    assert policy.decide({"confidence": 0.1}).route == "fulfil"
    assert parse_policy("default: escalate\nrules: []\n").decide({}) == Decision("escalate", (), ())


def test_features_used_lists_what_the_conditions_read():
    policy = parse_policy(ORDERED)
    assert policy.features_used() == {"frustration", "is_ood", "confidence", "asr_confidence"}
    slots = _policy("{slot_types: [person]}", "{feature: slot_confidence, op: '<', value: 0.5}",
                    "{feature: intent, op: '==', value: x}", "{feature: head.risk.high, op: '>', value: 0.5}")
    assert slots.features_used() == {"slot_types", "slot_confidences", "intent", "head.risk.high"}


# --- missing features -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value",
    [None, "0.1", b"0.1", [0.1], {"p": 0.1}, math.nan, math.inf, -math.inf, 10**400, -1.0, 1.5],
    ids=["none", "text", "bytes", "list", "dict", "nan", "inf", "-inf", "huge-int", "minus-one", "above-one"],
)
@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
def test_a_missing_or_unusable_probability_never_fires_whatever_the_op(value, op):
    policy = _policy(f'{{feature: frustration, op: "{op}", value: 0.5}}', route="escalate")
    assert policy.decide({"frustration": value}) == Decision("fulfil", (), ())
    assert policy.decide({}) == Decision("fulfil", (), ())


@pytest.mark.parametrize(
    ("features", "fired"),
    [
        ({}, ()),
        ({"channel": None, "intent": 3, "slot_types": None, "slot_confidences": None}, ()),
        ({"channel": b"text", "intent": ["b"], "slot_types": "person", "slot_confidences": 0.1}, ()),
        ({"slot_types": [["person"]], "slot_confidences": [0.1]}, ()),
        ({"slot_types": ["person"], "slot_confidences": ["0.1"]}, ("slot.person",)),
        # the lists do not line up: no confidence is trusted, but the slot is there
        ({"slot_types": ["person"], "slot_confidences": [0.1, 0.2]}, ("slot.person",)),
        ({"channel": "text", "intent": "b", "slot_types": ["person"], "slot_confidences": [0.1]},
         ("channel=text", "intent=b", "slot.person", "slot_confidence.person")),
    ],
)
def test_missing_text_and_slot_features_never_fire_even_for_negated_ops(features, fired):
    policy = _policy("{feature: channel, op: '!=', value: voice}", "{feature: intent, op: not_in, value: [a]}",
                     "{slot_types: [person]}", "{feature: slot_confidence, op: '<', value: 0.9}")
    decision = policy.decide(features)
    assert (decision.route, decision.heads) == ("clarify" if fired else "fulfil", fired)


def test_a_model_without_the_frustration_head_or_a_business_risk_head_is_never_escalated():
    policy = load_policy(DEFAULT_POLICY_PATH)
    no_heads = route_features(_row(frustration=-1.0), {})
    assert "head.business_risk.high" not in no_heads
    assert policy.decide(no_heads) == Decision("fulfil", (), ())


# --- route_features -------------------------------------------------------------------------------------------

def test_route_features_copies_the_row_and_turns_heads_into_probabilities():
    labels = {"frustration": ("calm", "frustrated"), "business_risk": ("low", "medium", "high")}
    features = route_features(
        _row(asr_confidence=None, channel="text"),
        {"frustration": ("frustrated", 0.875), "business_risk": ("high", 0.6), "assistant": ("shopper", 0.9)},
        labels=labels,
    )
    assert features["asr_confidence"] is None and features["channel"] == "text"
    assert features["slot_types"] == ["quantity", "product"]
    assert features["head.frustration.frustrated"] == 0.875 and features["head.frustration.calm"] == 0.125
    assert features["head.business_risk.high"] == 0.6
    assert "head.business_risk.low" not in features  # three labels: only the top one's probability is known
    assert features["head.assistant.shopper"] == 0.9 and "head.assistant.associate" not in features  # no labels


def test_route_features_leaves_absent_columns_missing():
    features = route_features({"confidence": 0.2})
    assert features["confidence"] == 0.2
    assert features["is_ood"] is None and features["slot_types"] is None
    assert not [name for name in features if name.startswith("head.")]


# --- validation errors ----------------------------------------------------------------------------------------

BASE = """\
default: fulfil
rules:
  - route: escalate
    any:
      - {feature: frustration, op: ">", value: 0.8}
  - route: clarify
    description: unsure
    all:
      - feature: confidence
        op: "<"
        value: 0.45
"""


def _with(line: int, replacement: str | None) -> str:
    """BASE with its ``line`` (1-based) replaced (None: removed)."""
    lines = BASE.splitlines()
    lines[line - 1:line] = [] if replacement is None else [replacement]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("line", "replacement", "at", "expected"),
    [
        (1, "default: fulfill", 1, "default must be one of fulfil, clarify, confirm, escalate (got 'fulfill')"),
        (2, "ruless:", 2, "unknown field 'ruless'; allowed: default, rules"),
        (6, "  - route: clarfy", 6, "rule 2: route must be one of fulfil, clarify, confirm, escalate (got 'clarfy')"),
        (6, "  - route: [clarify]", 6, "rule 2: route must be one of fulfil, clarify, confirm, escalate (got ['cla"),
        (6, "  - descripton: x", 6, "rule 2: unknown field 'descripton'; allowed: route, description, any, all"),
        (7, "    descripton: unsure", 7, "rule 2 (clarify): unknown field 'descripton'; allowed: route, description"),
        (7, "    description: [a, b]", 7, "rule 2 (clarify): description must be text"),
        (7, "    route: confirm", 7, "rule 2 (clarify): field 'route' given twice (first at line 6)"),
        (8, "    one_of:", 8, "rule 2 (clarify): unknown field 'one_of'"),
        (7, "    any: [{feature: is_ood, op: '==', value: 1}]", 6,
         "rule 2 (clarify): give exactly one of 'any' (one condition must hold) or 'all'"),
        (9, "      - feature: confidense", 9,
         "rule 2 (clarify): condition 1: unknown feature 'confidense'; allowed: confidence, margin, entropy, energy, "
         "ood_score, is_ood, unk_rate, token_count, asr_confidence, frustration, channel, assistant, intent, "
         "slot_confidence, head.<name>.<label>"),
        (9, "      - feature: head.business_risk", 9, "condition 1: unknown feature 'head.business_risk'"),
        (9, "      - feature: 3", 9, "condition 1: unknown feature 3"),
        (9, "      - feature: channel", 10,
         "condition 1: op must be one of ==, !=, in, not_in for a text feature (got '<')"),
        (10, '        op: "=>"', 10,
         "condition 1: op must be one of <, <=, >, >=, ==, != for a number feature (got '=>')"),
        (10, '        opp: "<"', 10, "condition 1: unknown field 'opp'; allowed: feature, op, value, slot_types"),
        (11, '        op: ">"', 11, "condition 1: field 'op' given twice (first at line 10)"),
        (10, None, 9, "condition 1: missing field 'op'"),
        (11, None, 9, "condition 1: missing field 'value'"),
        (11, "        value: high", 11, "condition 1: value must be a finite number for confidence (got 'high')"),
        (11, "        value: .nan", 11, "condition 1: value must be a finite number for confidence (got nan)"),
        (11, "        value: true", 11, "condition 1: value must be a finite number for confidence (got True)"),
        (11, "        value: 1e-3", 11, "value must be a finite number for confidence (got '1e-3'; YAML reads 1e-5 as"),
        (11, "        value: 45", 11, "condition 1: value must be within 0..1: confidence is a probability (got 45)"),
        (11, "        value: !!python/name:os.system", 11,
         "condition 1: cannot read this value: could not determine a constructor"),
        (11, "        slot_types: [person]", 11, "condition 1: slot_types goes with feature slot_confidence or alone"),
        (9, "      - slot_types: person", 9, "condition 1: slot_types must be a non-empty list of slot type names"),
        (9, "      - slot_types: [person]", 10, "condition 1: a slot-presence condition has only slot_types (got op"),
    ],
)
def test_every_bad_field_is_reported_with_the_file_and_line_of_that_field(tmp_path, line, replacement, at, expected):
    path = tmp_path / "policy.yaml"
    path.write_text(_with(line, replacement))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{at}: "), message
    assert expected in message, message


def test_a_text_feature_needs_a_string_or_a_list_of_strings():
    with pytest.raises(PolicyError, match=r"^<policy>:4: rule 1 \(escalate\): condition 1: value must be a string"):
        _policy("{feature: channel, op: '==', value: 3}", route="escalate")
    with pytest.raises(PolicyError, match=r"^<policy>:4: .*value must be a non-empty list of strings for op in"):
        _policy("{feature: intent, op: in, value: cancel_order}", route="escalate")
    with pytest.raises(PolicyError, match=r"^<policy>:4: .*value must be a non-empty list of strings for op not_in"):
        _policy("{feature: intent, op: not_in, value: []}", route="escalate")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", r"^p\.yaml:1: empty policy file"),
        ("# only a comment\n", r"^p\.yaml:1: empty policy file"),
        ("- route: clarify\n", r"^p\.yaml:1: expected a mapping with 'default' and a 'rules' list"),
        ("default: fulfil\n", r"^p\.yaml:1: missing the 'rules' list"),
        ("rules: {route: clarify}\n", r"^p\.yaml:1: 'rules' must be a list"),
        ("rules:\n  - just text\n", r"^p\.yaml:2: rule 1: each rule must be a mapping"),
        ("rules:\n  - any: [{slot_types: [person]}]\n", r"^p\.yaml:2: rule 1: missing field 'route'"),
        ("rules:\n  - route: clarify\n", r"^p\.yaml:2: rule 1 \(clarify\): give exactly one of 'any'"),
        ("rules:\n  - route: clarify\n    any: []\n", r"^p\.yaml:3: rule 1 \(clarify\): 'any' must be a non-empty"),
        ("rules:\n  - route: clarify\n    all: x\n", r"^p\.yaml:3: rule 1 \(clarify\): 'all' must be a non-empty"),
        ("rules:\n  - route: clarify\n    any:\n      - just text\n",
         r"^p\.yaml:4: rule 1 \(clarify\): condition 1: must be a mapping such as \{feature: confidence"),
        ("rules:\n  - route: clarify\n    all: [{slot_types: [person]}, {}]\n",
         r"^p\.yaml:3: rule 1 \(clarify\): condition 2: missing field 'feature' \(or 'slot_types' for a slot-pres"),
        ("rules:\n  - route: clarify\n    any: [a: b: c]\n", r"^p\.yaml:3: not valid YAML: expected ',' or ']'"),
        ("rules: [\n", r"^p\.yaml:2: not valid YAML"),
        ("rules:\n  -\x00\n", r"^p\.yaml:2: not valid YAML: .*special characters are not allowed"),
        ("default: !!python/object:os.system x\nrules: []\n", r"^p\.yaml:1: cannot read this value"),
        ("? [a, b]\n: 1\n", r"^p\.yaml:1: a field name must be text; allowed: default, rules"),
        ("rules: []\nrules: []\n", r"^p\.yaml:2: field 'rules' given twice \(first at line 1\)"),
        ("rules:\n  - route: clarify\n    any: [{feature: intent, op: in, value: &a [*a]}]\n",
         r"^p\.yaml:3: rule 1 \(clarify\): condition 1: cannot read this value: found unconstructable recursive"),
        ("[" * 5000 + "]" * 5000, r"^p\.yaml:1: not valid YAML: nested too deeply"),
    ],
    ids=lambda value: value[:30],
)
def test_wrong_shapes_and_broken_yaml_are_policy_errors_with_a_line(text, expected):
    with pytest.raises(PolicyError, match=expected):
        parse_policy(text, "p.yaml")


def test_an_unreadable_file_is_a_policy_error_naming_it(tmp_path):
    with pytest.raises(PolicyError, match=rf"^{tmp_path / 'absent.yaml'}:1: cannot read policy file"):
        load_policy(tmp_path / "absent.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00rules")
    with pytest.raises(PolicyError, match=rf"^{binary}:1: cannot read policy file"):
        load_policy(binary)


# --- the default policy ---------------------------------------------------------------------------------------

FRUSTRATION_LABELS = {"frustration": ("calm", "frustrated"), "assistant": ("associate", "shopper")}


def _decide_default(row, heads=None):
    heads = heads if heads is not None else {"frustration": ("calm", 0.99), "assistant": ("shopper", 0.97)}
    return load_policy(DEFAULT_POLICY_PATH).decide(route_features(row, heads, labels=FRUSTRATION_LABELS))


def test_default_policy_loads_with_the_documented_order_and_default():
    policy = load_policy(DEFAULT_POLICY_PATH)
    assert policy.default == "fulfil"
    assert [rule.route for rule in policy.rules] == ["escalate", "clarify", "confirm", "confirm"]
    assert set(ROUTES) >= {rule.route for rule in policy.rules}
    assert policy.features_used() == {"frustration", "head.business_risk.high", "is_ood", "confidence",
                                      "asr_confidence", "slot_types", "slot_confidences"}


@pytest.mark.parametrize(
    ("case", "row", "heads", "route", "fired"),
    [
        ("confident and calm", _row(), None, "fulfil", ()),
        ("out of distribution", _row(is_ood=1, ood_score=1400.0), None, "clarify", ("is_ood",)),
        ("unsure of the intent", _row(confidence=0.55), None, "clarify", ("confidence",)),
        ("frustrated and out of distribution: escalate, both logged",
         _row(is_ood=1, frustration=0.93), {"frustration": ("frustrated", 0.93)}, "escalate",
         ("frustration", "is_ood")),
        ("business risk head of a later model", _row(),
         {"frustration": ("calm", 0.99), "business_risk": ("high", 0.85)}, "escalate", ("head.business_risk.high",)),
        ("a name on a poor line", _row(asr_confidence=0.55, slot_types=["person", "date_time"],
                                       slot_confidences=[0.9, 0.95]), None, "confirm",
         ("asr_confidence", "slot.person")),
        ("a name on the text channel", _row(channel="text", asr_confidence=None, slot_types=["person"],
                                            slot_confidences=[0.9]), None, "fulfil", ("slot.person",)),
        ("an unsure name on a good line", _row(slot_types=["person"], slot_confidences=[0.42]), None, "confirm",
         ("slot.person", "slot_confidence.person")),
        ("poor line, no name", _row(asr_confidence=0.5), None, "fulfil", ("asr_confidence",)),
        ("out of distribution on a poor line with a name",
         _row(is_ood=1, asr_confidence=0.5, slot_types=["person"], slot_confidences=[0.9]), None, "clarify",
         ("is_ood", "asr_confidence", "slot.person")),
    ],
    ids=lambda value: value if isinstance(value, str) and " " in value else "",
)
def test_default_policy_routes_sample_rows_as_its_comments_say(case, row, heads, route, fired):
    decision = _decide_default(row, heads)
    assert (decision.route, decision.heads) == (route, fired), case
    assert len(decision.scores) == len(decision.heads)


# --- nlumon routing check -------------------------------------------------------------------------------------

def test_check_prints_the_rules_of_the_configured_policy(monkeypatch):
    monkeypatch.delenv("NLUMON_CONFIG", raising=False)
    monkeypatch.delenv("NLUMON_ROUTING__POLICY_PATH", raising=False)
    result = runner.invoke(routing_app, ["check"])
    assert result.exit_code == 0, result.output
    assert f"{DEFAULT_POLICY_PATH}: valid, 4 rule(s), first match wins, otherwise fulfil" in result.stdout
    assert "escalate if frustration > 0.8 or head.business_risk.high > 0.7" in result.stdout
    assert "clarify if is_ood == 1 or confidence < 0.7" in result.stdout
    assert "conditions on head.business_risk.high stay false" in result.stdout


def test_check_reads_the_path_from_a_settings_file_and_says_when_routing_is_off(tmp_path, monkeypatch):
    monkeypatch.delenv("NLUMON_ROUTING__POLICY_PATH", raising=False)
    policy = tmp_path / "mine.yaml"
    policy.write_text("default: confirm\nrules:\n  - route: clarify\n"
                      "    any: [{feature: is_ood, op: '==', value: 1}]\n")
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[routing]\npolicy_path = "{policy}"\n')
    result = runner.invoke(routing_app, ["check", "--config", str(settings)])
    assert result.exit_code == 0, result.output
    assert f"{policy}: valid, 1 rule(s), first match wins, otherwise confirm" in result.stdout
    assert "1. line 3: clarify if is_ood == 1" in result.stdout

    settings.write_text('[routing]\npolicy_path = ""\n')
    result = runner.invoke(routing_app, ["check", "--config", str(settings)])
    assert (result.exit_code, result.stdout.strip()) == (0, "routing.policy_path is unset: workers publish no "
                                                            "route (route '')")
    result = runner.invoke(routing_app, ["check", "--config", str(tmp_path / "absent.toml")])
    assert result.exit_code == 2 and "cannot read the settings" in result.stderr


def test_check_fails_with_the_file_and_line_of_the_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(_with(11, "        value: 45"))
    result = runner.invoke(routing_app, ["check", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"invalid routing policy: {path}:11: rule 2 (clarify): condition 1: value must")
    assert result.stdout == ""
