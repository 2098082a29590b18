"""Measure the tagger: span F1 on mapped SNIPS, and how well it carries over to store-associate text.

``python -m labeling.snips_tagger.evaluate`` prints one JSON object:

- ``snips``: exact-span precision/recall/F1 per type (``person``, ``time``) on the shipped test split;
- ``store``: token-level precision/recall of the Viterbi tags on store-associate utterances from the retail
  generator (gold ``person`` -> person, ``date_time`` -> time), and of the labeling function's votes;
- ``speed``: utterances tagged per second (features + marginals, one thread).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Sequence

from labeling.snips_tagger.corpus import Sentence, load_split
from labeling.snips_tagger.tagger import CRFModel, load_model

TYPES: tuple[str, ...] = ("person", "time")
STORE_LABEL_OF_SLOT = {"person": "person", "date_time": "time"}


def bio_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Spans ``(type, start, end exclusive)`` of BIO tags; a stray ``I-`` starts a span.

    >>> sorted(bio_spans(["B-person", "I-person", "O", "I-time", "B-time"]))
    [('person', 0, 2), ('time', 3, 4), ('time', 4, 5)]
    """
    spans, current = set(), None
    for index, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        if current and (prefix != "I" or kind != current[0]):
            spans.add((current[0], current[1], index))
            current = None
        if prefix == "B" or (prefix == "I" and current is None):
            current = (kind, index)
    return spans


def _ratio(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 4) if denominator else 0.0


def _scores(true_positives: int, predicted: int, gold: int) -> dict[str, float | int]:
    precision, recall = _ratio(true_positives, predicted), _ratio(true_positives, gold)
    f1 = round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": gold}


def span_scores(gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]) -> dict[str, dict]:
    """Exact-match span precision/recall/F1 per type and micro-averaged over :data:`TYPES`.

    >>> span_scores([["B-person", "I-person", "O"]], [["B-person", "O", "O"]])["person"]["f1"]
    0.0
    """
    counts = {kind: [0, 0, 0] for kind in TYPES}  # true positives, predicted, gold
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        gold_spans, predicted_spans = bio_spans(gold_tags), bio_spans(predicted_tags)
        for kind in TYPES:
            kind_gold = {span for span in gold_spans if span[0] == kind}
            kind_predicted = {span for span in predicted_spans if span[0] == kind}
            counts[kind][0] += len(kind_gold & kind_predicted)
            counts[kind][1] += len(kind_predicted)
            counts[kind][2] += len(kind_gold)
    result = {kind: _scores(*counts[kind]) for kind in TYPES}
    result["micro"] = _scores(*(sum(counts[kind][i] for kind in TYPES) for i in range(3)))
    return result


def token_scores(gold: Iterable[Sequence[str | None]], predicted: Iterable[Sequence[str | None]]) -> dict[str, dict]:
    """Token-level precision/recall per type; labels are entity types or ``None``/``"O"``.

    >>> token_scores([["person", "O"]], [["person", "person"]])["person"]
    {'precision': 0.5, 'recall': 1.0, 'f1': 0.6667, 'support': 1}
    """
    counts = {kind: [0, 0, 0] for kind in TYPES}
    for gold_labels, predicted_labels in zip(gold, predicted, strict=True):
        for gold_label, predicted_label in zip(gold_labels, predicted_labels, strict=True):
            for kind in TYPES:
                counts[kind][0] += gold_label == kind and predicted_label == kind
                counts[kind][1] += predicted_label == kind
                counts[kind][2] += gold_label == kind
    return {kind: _scores(*counts[kind]) for kind in TYPES}


def evaluate_snips(model: CRFModel, sentences: Sequence[Sentence]) -> dict[str, dict]:
    return span_scores([tags for _, tags in sentences], [model.tag(tokens) for tokens, _ in sentences])


def store_associate_sentences(count: int = 500, seed: int = 99) -> list[Sentence]:
    """The first ``count`` store-associate utterances of the retail generator's stream (unseen names).

    The generator's stream does not depend on ``n`` (a longer run extends a shorter one), so this is the
    associate share of ``GeneratorConfig(n=..., seed=seed, unseen_names=True)``; ``n=1500`` holds 303 of them.
    """
    from model_runtime.data.retail import GeneratorConfig, iter_examples

    found: list[Sentence] = []
    for example in iter_examples(GeneratorConfig(n=max(1, 20 * count), seed=seed, unseen_names=True)):
        if len(found) == count:
            break
        if example.assistant == "associate":
            found.append((example.tokens, tuple(STORE_LABEL_OF_SLOT.get(tag[2:], "O") for tag in example.tags)))
    return found


def evaluate_store(model: CRFModel, sentences: Sequence[Sentence]) -> dict[str, dict]:
    """Token precision/recall of the Viterbi tags and of the labeling function's votes."""
    from labeling.annotation.base import Utterance
    from labeling.annotation.lf_snips import SnipsTagger

    gold = [labels for _, labels in sentences]
    viterbi = [[tag.partition("-")[2] or "O" for tag in model.tag(tokens)] for tokens, _ in sentences]
    function = SnipsTagger(model)
    votes = [function.apply(Utterance(tokens)) for tokens, _ in sentences]
    vote_labels = [[vote.label if vote else None for vote in row] for row in votes]
    cast = [vote for row in votes for vote in row if vote is not None]
    o_votes = [(vote.label, label) for row, labels in zip(votes, gold, strict=True)
               for vote, label in zip(row, labels, strict=True) if vote is not None and vote.label == "O"]
    return {
        "utterances": len(sentences),
        "tokens": sum(len(labels) for labels in gold),
        "viterbi": token_scores(gold, viterbi),
        "votes": token_scores(gold, vote_labels),
        "vote_coverage": _ratio(len(cast), sum(len(labels) for labels in gold)),
        "o_vote_precision": _ratio(sum(label == "O" for _, label in o_votes), len(o_votes)),
    }


def tagging_speed(model: CRFModel, sentences: Sequence[Sentence], repeat: int = 1) -> float:
    """Utterances per second through :meth:`CRFModel.label_probabilities` (features and marginals)."""
    started = time.perf_counter()
    for _ in range(repeat):
        for tokens, _ in sentences:
            model.label_probabilities(tokens)
    return round(repeat * len(sentences) / (time.perf_counter() - started), 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labeling.snips_tagger.evaluate",
                                     description="Span F1 on SNIPS test, transfer to store-associate text, speed.")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--split", default="test", choices=("dev", "test"), help="SNIPS split (default: %(default)s)")
    parser.add_argument("--store-utterances", type=int, default=500, help="store-associate utterances (%(default)s)")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    snips = load_split(args.split)
    store = store_associate_sentences(args.store_utterances)
    report = {
        "model_sha256": model.manifest["sha256"],
        "model_bytes": model.manifest.get("size_bytes"),
        "snips": {"split": args.split, **evaluate_snips(model, snips)},
        "store": evaluate_store(model, store),
        "utterances_per_second": tagging_speed(model, snips),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
