"""Route decisions: what the assistant should do with one utterance, decided from the model's outputs.

The model says what it heard and how sure it was; the assistant has to act on that while the user is still
there. A routing policy (YAML, :data:`DEFAULT_POLICY_PATH` by default, ``routing.policy_path`` in the settings)
maps one utterance's features to one of :data:`ROUTES`:

- ``fulfil``: do what the intent asks;
- ``clarify``: ask the user to rephrase (the model does not know what was meant: out of distribution, unsure);
- ``confirm``: read back what was heard before acting (the intent is known but a slot may be misheard);
- ``escalate``: hand over to a person (the user is frustrated, or the request is risky).

A policy is a ``default`` route and a list of rules; the first rule whose conditions hold wins::

    default: fulfil
    rules:
      - route: clarify
        description: the model does not know what was meant
        any:                          # or all:
          - {feature: is_ood, op: "==", value: 1}
          - {feature: confidence, op: "<", value: 0.45}
      - route: confirm
        all:
          - {feature: asr_confidence, op: "<", value: 0.7}
          - {slot_types: [person]}    # a slot of one of these types is present
      - route: confirm
        all:                          # the lowest confidence of the slots of these types
          - {feature: slot_confidence, slot_types: [person], op: "<", value: 0.5}

A condition is one of three forms:

- ``{feature: F, op: OP, value: V}``: a number feature (:data:`NUMBER_FEATURES`, or a head's probability
  ``head.<name>.<label>``) compared with ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``; or a text feature
  (:data:`TEXT_FEATURES`) compared with ``==``, ``!=`` (V a string) or ``in``, ``not_in`` (V a list of strings);
- ``{slot_types: [T, ...]}``: the utterance has a slot of one of these types;
- ``{feature: slot_confidence, slot_types: [T, ...], op: OP, value: V}``: the lowest confidence among its slots of
  these types (all slots when ``slot_types`` is left out) compared with V; no such slot makes it false.

**A missing feature makes its condition false, whatever the op** (``!=`` and ``not_in`` too): None, absent, not a
number where a number goes, NaN or infinite, or a probability outside 0..1 (the ``frustration`` column is -1 for a
model without that head). So a policy may name a head the model does not have yet (``head.business_risk.high``,
issue 17): its conditions stay false until a model with that head serves. :meth:`RoutingPolicy.decide` never raises.

Every condition of every rule is evaluated, not only up to the winning rule: :class:`Decision` lists each one that
fired (its feature name and value, in policy order, each name once), so the per-request log shows that the user
was frustrated even when the utterance was out of distribution and went to ``clarify``. The names are feature
names from the policy, ``slot.<type>`` for a present slot, ``slot_confidence.<type>`` for the least sure slot,
and ``<feature>=<value>`` for a text feature (channel, assistant and intent are closed vocabularies, so the names
carry no personal data).

    >>> policy = parse_policy('''
    ... rules:
    ...   - route: escalate
    ...     any: [{feature: frustration, op: ">", value: 0.8}]
    ...   - route: clarify
    ...     any: [{feature: is_ood, op: "==", value: 1}, {feature: confidence, op: "<", value: 0.45}]
    ... ''')
    >>> policy.decide({"is_ood": 1, "confidence": 0.3, "frustration": 0.2})
    Decision(route='clarify', heads=('is_ood', 'confidence'), scores=(1.0, 0.3))
    >>> policy.decide({"is_ood": 0, "confidence": 0.97, "frustration": -1.0}).route  # -1: the model has no head
    'fulfil'
    >>> parse_policy("rules:\\n  - route: clarify\\n    any: [{feature: confidense, op: '<', value: 0.4}]\\n",
    ...              "p.yaml")
    Traceback (most recent call last):
    ...
    streams.routing.PolicyError: p.yaml:3: rule 1 (clarify): condition 1: unknown feature 'confidense'; allowed: ...
"""

from __future__ import annotations

import math
import numbers
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nlumon.records import ROUTES  # the decisions; nlumon keeps them so the monitor can name them too

DEFAULT_POLICY_PATH = Path(__file__).with_name("default_routing.yaml")

#: Number features of a prediction row (``streams.features.PREDICTION_COLUMNS``) and whether each is a
#: probability (0..1; a value outside that range counts as missing).
NUMBER_FEATURES: dict[str, bool] = {
    "confidence": True,  # calibrated probability of the predicted intent
    "margin": True,  # its probability minus the runner-up's
    "entropy": False,  # of the intent distribution, nats
    "energy": False,  # -T * logsumexp(logits / T)
    "ood_score": False,  # Mahalanobis distance of the embedding to the training intents
    "is_ood": True,  # 1 when ood_score is above the package's threshold, else 0
    "unk_rate": True,  # share of [UNK] wordpieces
    "token_count": False,  # wordpieces
    "asr_confidence": True,  # the speech recogniser's confidence; None on the text channel
    "frustration": True,  # probability the speaker is frustrated; -1 when the model has no such head
}
TEXT_FEATURES = ("channel", "assistant", "intent")
SLOT_CONFIDENCE = "slot_confidence"
SLOT_COLUMNS = ("slot_types", "slot_confidences")
_HEAD = re.compile(r"^head\.([^.\s]+)\.(\S+)$")
_ROW_FEATURES = (*NUMBER_FEATURES, *TEXT_FEATURES, *SLOT_COLUMNS)
_SEQUENCES = (list, tuple)
_isfinite = math.isfinite  # bound once: _number runs for every condition of every row

NUMBER_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}
TEXT_OPS = ("==", "!=", "in", "not_in")
_TOP_FIELDS = ("default", "rules")
_RULE_FIELDS = ("route", "description", "any", "all")
_CONDITION_FIELDS = ("feature", "op", "value", "slot_types")

# A compiled condition: the (name, score) it fired with, or None.
Check = Callable[[Mapping[str, Any]], tuple[str, float] | None]


class PolicyError(ValueError):
    """A policy file is invalid; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class Decision:
    """The route of one utterance, and every condition that fired, in policy order, each name once.

    ``heads`` are the names (see the module docstring), ``scores`` the values they fired with: the feature's value
    for a number condition, 1.0 for a text or slot-presence condition."""

    route: str
    heads: tuple[str, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True)
class Condition:
    """One validated condition (see the module docstring for its three forms) and its compiled check."""

    feature: str  # "" for a slot-presence condition
    op: str
    value: Any
    slot_types: tuple[str, ...]
    line: int
    check: Check

    def describe(self) -> str:
        """The condition as one line of text, e.g. ``confidence < 0.45`` or ``slot in [person]``."""
        if not self.feature:
            return f"slot in [{', '.join(self.slot_types)}]"
        name = f"{self.feature}[{', '.join(self.slot_types)}]" if self.slot_types else self.feature
        return f"{name} {self.op} {self.value}"


@dataclass(frozen=True)
class Rule:
    """One rule: ``route`` when ``all`` (or ``any``, per ``mode``) of its conditions hold."""

    route: str
    mode: str  # "all" or "any"
    conditions: tuple[Condition, ...]
    description: str
    line: int

    def describe(self) -> str:
        joined = f" {'and' if self.mode == 'all' else 'or'} ".join(c.describe() for c in self.conditions)
        return f"{self.route} if {joined}"


class RoutingPolicy:
    """A validated policy: rules tried in order, ``default`` when none matches. Build with :func:`parse_policy`."""

    def __init__(self, rules: Sequence[Rule], default: str = "fulfil", source: str = "<policy>") -> None:
        self.rules = tuple(rules)
        self.default = default
        self.source = source
        # One flat tuple per rule, so decide() does no attribute look-ups per row.
        self._compiled = tuple((rule.route, rule.mode == "all", tuple(c.check for c in rule.conditions))
                               for rule in self.rules)

    def decide(self, features: Mapping[str, Any]) -> Decision:
        """The route for one utterance's ``features`` (:func:`route_features`); never raises.

        Every condition is evaluated so that the decision lists all that fired, not only the winner's."""
        fired: dict[str, float] = {}
        route = None
        for rule_route, needs_all, checks in self._compiled:
            hits = 0
            for check in checks:
                hit = check(features)
                if hit is not None:
                    hits += 1
                    fired.setdefault(hit[0], hit[1])
            if route is None and (hits == len(checks) if needs_all else hits > 0):
                route = rule_route
        return Decision(route or self.default, tuple(fired), tuple(fired.values()))

    def features_used(self) -> frozenset[str]:
        """The feature names the conditions read (``slot_types``/``slot_confidences`` for slot conditions)."""
        used: set[str] = set()
        for rule in self.rules:
            for condition in rule.conditions:
                if not condition.feature:  # slot presence
                    used.add("slot_types")
                elif condition.feature == SLOT_CONFIDENCE:
                    used.update(SLOT_COLUMNS)
                else:
                    used.add(condition.feature)
        return frozenset(used)

    def __repr__(self) -> str:
        return f"RoutingPolicy({self.source!r}, {len(self.rules)} rules, default={self.default!r})"


def route_features(
    row: Mapping[str, Any],
    heads: Mapping[str, tuple[str, float]] | None = None,
    *,
    labels: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The features a policy reads, from one prediction row and the model's extra heads.

    ``row`` has the keys of ``streams.features.PREDICTION_COLUMNS`` (absent ones are missing features);
    ``heads`` is ``UtterancePrediction.heads`` (name -> top label and its probability), each becoming
    ``head.<name>.<label>``. Only the top label's probability is known, unless ``labels`` gives the head's labels
    (``{h.name: h.labels for h in package.config.heads}``) and there are two: the other one then gets ``1 - p``.

    >>> features = route_features({"confidence": 0.9, "channel": "voice"}, {"frustration": ("calm", 0.75)},
    ...                           labels={"frustration": ("calm", "frustrated")})
    >>> features["confidence"], features["asr_confidence"], features["head.frustration.frustrated"]
    (0.9, None, 0.25)
    """
    features = {name: row.get(name) for name in _ROW_FEATURES}
    for name, (label, probability) in (heads or {}).items():
        features[f"head.{name}.{label}"] = probability
        known = (labels or {}).get(name, ())
        if len(known) == 2 and label in known and _number(probability) is not None:
            other = known[1] if known[0] == label else known[0]
            features[f"head.{name}.{other}"] = 1.0 - float(probability)
    return features


def load_policy(path: str | Path = DEFAULT_POLICY_PATH) -> RoutingPolicy:
    """Read and validate a policy file; raises :class:`PolicyError` naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise PolicyError(f"{path}:1: cannot read policy file: {reason}") from None
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<policy>") -> RoutingPolicy:
    """Validate policy YAML ``text``; ``source`` names it in error messages. Raises only :class:`PolicyError`."""
    root = _compose(text, source)
    if root is None:
        raise PolicyError(f"{source}:1: empty policy file (expected a mapping with a 'rules' list)")
    if not isinstance(root, yaml.MappingNode):
        raise PolicyError(f"{source}:{_line(root)}: expected a mapping with 'default' and a 'rules' list")

    def fail(line: int, message: str) -> PolicyError:
        return PolicyError(f"{source}:{line}: {message}")

    fields = _fields(root, _TOP_FIELDS, fail)
    default = "fulfil"
    if "default" in fields:
        key_line, node = fields["default"]
        default = _value(node, key_line, fail)
        if default not in ROUTES:
            raise PolicyError(f"{source}:{key_line}: default must be one of {', '.join(ROUTES)} (got {default!r})")
    if "rules" not in fields:
        raise PolicyError(f"{source}:{_line(root)}: missing the 'rules' list")
    key_line, rules_node = fields["rules"]
    if not isinstance(rules_node, yaml.SequenceNode):
        raise PolicyError(f"{source}:{key_line}: 'rules' must be a list")
    rules = [_rule(node, index, source) for index, node in enumerate(rules_node.value, start=1)]
    return RoutingPolicy(rules, default, source)


def _compose(text: str, source: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise PolicyError(f"{source}:{_error_line(error, text)}: not valid YAML: "
                          f"{getattr(error, 'problem', None) or error}") from None
    except RecursionError:
        raise PolicyError(f"{source}:1: not valid YAML: nested too deeply") from None


def _error_line(error: yaml.YAMLError, text: str) -> int:
    mark = getattr(error, "problem_mark", None)
    if mark is not None:
        return mark.line + 1
    position = getattr(error, "position", None)  # a ReaderError (a character YAML does not allow)
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else 1


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _fields(node: yaml.MappingNode, allowed: Sequence[str],
            fail: Callable[[int, str], PolicyError]) -> dict[str, tuple[int, yaml.Node]]:
    """The mapping's fields as name -> (line of the key, value node); unknown or repeated names are errors."""
    fields: dict[str, tuple[int, yaml.Node]] = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        if name not in allowed:
            what = f"unknown field {name!r}" if name is not None else "a field name must be text"
            raise fail(_line(key), f"{what}; allowed: {', '.join(allowed)}")
        if name in fields:
            raise fail(_line(key), f"field '{name}' given twice (first at line {fields[name][0]})")
        fields[name] = (_line(key), value)
    return fields


def _value(node: yaml.Node, line: int, fail: Callable[[int, str], PolicyError]) -> Any:
    """The Python value of a field's node, as yaml.safe_load would give it; ``line`` is the field's."""
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except (yaml.YAMLError, RecursionError, TypeError) as error:  # an unknown tag, an unhashable key, ...
        raise fail(line, f"cannot read this value: {str(error).splitlines()[0]}") from None


def _rule(node: yaml.Node, index: int, source: str) -> Rule:
    line = _line(node)
    if not isinstance(node, yaml.MappingNode):
        raise PolicyError(f"{source}:{line}: rule {index}: each rule must be a mapping")
    route_node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == "route"), None)
    route = route_node.value if isinstance(route_node, yaml.ScalarNode) else None
    label = f"rule {index} ({route})" if route in ROUTES else f"rule {index}"

    def fail(at: int, message: str) -> PolicyError:
        return PolicyError(f"{source}:{at}: {label}: {message}")

    fields = _fields(node, _RULE_FIELDS, fail)
    if "route" not in fields:
        raise fail(line, "missing field 'route'")
    if route not in ROUTES:
        shown = route if route is not None else _value(fields["route"][1], fields["route"][0], fail)
        raise fail(fields["route"][0], f"route must be one of {', '.join(ROUTES)} (got {shown!r})")
    modes = [mode for mode in ("any", "all") if mode in fields]
    if len(modes) != 1:
        raise fail(line, "give exactly one of 'any' (one condition must hold) or 'all' (every condition must)")
    key_line, conditions_node = fields[modes[0]]
    if not isinstance(conditions_node, yaml.SequenceNode) or not conditions_node.value:
        raise fail(key_line, f"'{modes[0]}' must be a non-empty list of conditions")
    conditions = tuple(_condition(item, number, fail) for number, item in enumerate(conditions_node.value, start=1))
    description = _value(fields["description"][1], fields["description"][0], fail) if "description" in fields else ""
    if not isinstance(description, str):
        raise fail(fields["description"][0], "description must be text")
    return Rule(route, modes[0], conditions, description, line)


def _condition(node: yaml.Node, number: int, rule_fail: Callable[[int, str], PolicyError]) -> Condition:
    def fail(at: int, message: str) -> PolicyError:
        return rule_fail(at, f"condition {number}: {message}")

    if not isinstance(node, yaml.MappingNode):
        raise fail(_line(node), "must be a mapping such as {feature: confidence, op: '<', value: 0.45} "
                                "or {slot_types: [person]}")
    fields = _fields(node, _CONDITION_FIELDS, fail)
    values = {name: _value(value, key_line, fail) for name, (key_line, value) in fields.items()}
    lines = {name: key_line for name, (key_line, _) in fields.items()}
    slot_types = ()
    if "slot_types" in values:
        slot_types = values["slot_types"]
        if not (isinstance(slot_types, list) and slot_types
                and all(isinstance(t, str) and t.strip() for t in slot_types)):
            raise fail(lines["slot_types"], "slot_types must be a non-empty list of slot type names")
        slot_types = tuple(slot_types)
    if "feature" not in values:
        if not slot_types:
            raise fail(_line(node), "missing field 'feature' (or 'slot_types' for a slot-presence condition)")
        extra = sorted(set(values) - {"slot_types"})
        if extra:
            raise fail(lines[extra[0]], f"a slot-presence condition has only slot_types (got {', '.join(extra)})")
        return Condition("", "", None, slot_types, _line(node), _slot_present(frozenset(slot_types)))
    feature = values["feature"]
    if not isinstance(feature, str) or not _known_feature(feature):
        raise fail(lines["feature"], f"unknown feature {feature!r}; allowed: {', '.join(_allowed_features())}")
    if slot_types and feature != SLOT_CONFIDENCE:
        raise fail(lines["slot_types"], f"slot_types goes with feature {SLOT_CONFIDENCE} or alone, not {feature}")
    for required in ("op", "value"):
        if required not in values:
            raise fail(_line(node), f"missing field '{required}'")
    op, value = values["op"], values["value"]
    if feature in TEXT_FEATURES:
        return _text_condition(feature, op, value, _line(node), lines, fail)
    return _number_condition(feature, op, value, slot_types, _line(node), lines, fail)


def _known_feature(name: str) -> bool:
    return name in NUMBER_FEATURES or name in TEXT_FEATURES or name == SLOT_CONFIDENCE or bool(_HEAD.match(name))


def _allowed_features() -> list[str]:
    return [*NUMBER_FEATURES, *TEXT_FEATURES, SLOT_CONFIDENCE, "head.<name>.<label>"]


def _number_condition(feature: str, op: Any, value: Any, slot_types: tuple[str, ...], line: int,
                      lines: dict[str, int], fail: Callable[[int, str], PolicyError]) -> Condition:
    if op not in NUMBER_OPS:
        raise fail(lines["op"], f"op must be one of {', '.join(NUMBER_OPS)} for a number feature (got {op!r})")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        hint = "; YAML reads 1e-5 as text, write 1.0e-5" if isinstance(value, str) and _looks_numeric(value) else ""
        raise fail(lines["value"], f"value must be a finite number for {feature} (got {value!r}{hint})")
    probability = NUMBER_FEATURES.get(feature, True)  # heads and slot confidences are probabilities
    if probability and not 0.0 <= value <= 1.0:
        raise fail(lines["value"], f"value must be within 0..1: {feature} is a probability (got {value!r})")
    compare = NUMBER_OPS[op]
    if feature == SLOT_CONFIDENCE:
        check = _slot_confidence(frozenset(slot_types) or None, compare, float(value))
    else:
        check = _number_check(feature, compare, float(value), probability)
    return Condition(feature, op, value, slot_types, line, check)


def _looks_numeric(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _text_condition(feature: str, op: Any, value: Any, line: int, lines: dict[str, int],
                    fail: Callable[[int, str], PolicyError]) -> Condition:
    if op not in TEXT_OPS:
        raise fail(lines["op"], f"op must be one of {', '.join(TEXT_OPS)} for a text feature (got {op!r})")
    if op in ("in", "not_in"):
        if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
            raise fail(lines["value"], f"value must be a non-empty list of strings for op {op} (got {value!r})")
        wanted = frozenset(value)
        inside = op == "in"
        check = _text_check(feature, lambda text: (text in wanted) == inside)
        value = tuple(value)
    else:
        if not isinstance(value, str):
            raise fail(lines["value"], f"value must be a string for {feature} {op} (got {value!r})")
        equal = op == "=="
        check = _text_check(feature, lambda text: (text == value) == equal)
    return Condition(feature, op, value, (), line, check)


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, text, NaN, infinite, too large for a float).

    The common cases (None, a float) are tested first: this runs for every condition of every row."""
    if value is None:
        return None
    kind = value.__class__
    if kind is not float:
        if kind is not int and not isinstance(value, numbers.Real):
            return None
        try:
            value = float(value)
        except (OverflowError, TypeError, ValueError):
            return None
    return value if _isfinite(value) else None


def _number_check(feature: str, compare: Callable[[float, float], bool], threshold: float,
                  probability: bool) -> Check:
    def check(features: Mapping[str, Any]) -> tuple[str, float] | None:
        value = _number(features.get(feature))
        if value is None or (probability and not 0.0 <= value <= 1.0):
            return None
        return (feature, value) if compare(value, threshold) else None

    return check


def _text_check(feature: str, holds: Callable[[str], bool]) -> Check:
    def check(features: Mapping[str, Any]) -> tuple[str, float] | None:
        text = features.get(feature)
        return (f"{feature}={text}", 1.0) if isinstance(text, str) and holds(text) else None

    return check


def _slot_present(wanted: frozenset[str]) -> Check:
    def check(features: Mapping[str, Any]) -> tuple[str, float] | None:
        types = features.get("slot_types")
        if isinstance(types, _SEQUENCES):
            for slot_type in types:
                if isinstance(slot_type, str) and slot_type in wanted:
                    return (f"slot.{slot_type}", 1.0)
        return None

    return check


def _slot_confidence(wanted: frozenset[str] | None, compare: Callable[[float, float], bool],
                     threshold: float) -> Check:
    def check(features: Mapping[str, Any]) -> tuple[str, float] | None:
        types, confidences = features.get("slot_types"), features.get("slot_confidences")
        if not (isinstance(types, _SEQUENCES) and isinstance(confidences, _SEQUENCES)
                and len(types) == len(confidences)):
            return None
        least, least_type = 2.0, ""
        for slot_type, raw in zip(types, confidences, strict=True):
            if isinstance(slot_type, str) and (wanted is None or slot_type in wanted):
                confidence = _number(raw)
                if confidence is not None and 0.0 <= confidence < least:
                    least, least_type = confidence, slot_type
        return (f"{SLOT_CONFIDENCE}.{least_type}", least) if least <= 1.0 and compare(least, threshold) else None

    return check
