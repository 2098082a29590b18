"""How hard is the generated retail corpus? Naive baselines on clean, noisy and unseen test sets.

Baselines (no neural model): intent by TF-IDF word/char n-grams + logistic regression; slots by
the most frequent training tag of each token (a memoriser, repaired to valid BIO). If the
memoriser already scored ~100 % the corpus would be too easy; the unseen-product and noisy test
sets show what a memoriser loses. Metrics come from model_runtime.metrics.

Usage: nice -n 10 python benchmarks/retail_corpus.py [--train-size 8000] [--test-size 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from model_runtime.data.bio import bio_spans
from model_runtime.data.retail import GeneratorConfig, generate
from model_runtime.metrics import evaluate

RESULT = Path(__file__).resolve().parent / "results" / "retail_corpus.json"


def memoriser(train):
    counts: dict[str, Counter] = defaultdict(Counter)
    for example in train:
        for token, tag in zip(example.tokens, example.tags, strict=True):
            counts[token][tag[2:] if tag != "O" else "O"] += 1
    best = {token: c.most_common(1)[0][0] for token, c in counts.items()}

    def predict(tokens):
        kinds = [best.get(token, "O") for token in tokens]
        # consecutive tokens of one type form one span: B- then I-
        return [k if k == "O" else ("I-" if i and kinds[i - 1] == k else "B-") + k for i, k in enumerate(kinds)]

    return predict


def intent_model(train):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = make_union(TfidfVectorizer(ngram_range=(1, 2)), TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)))
    model = make_pipeline(features, LogisticRegression(max_iter=2000, C=10.0))
    model.fit([e.text for e in train], [e.intent for e in train])
    return model


def corpus_stats(examples) -> dict:
    names = defaultdict(set)
    for example in examples:
        for kind, start, _end in bio_spans(example.tags):
            if kind in {"brand", "person"}:
                names[example.tokens[start]].add(kind)
    return {
        "examples": len(examples),
        "distinct_texts_share": len({e.text for e in examples}) / len(examples),
        "names_seen_as_brand_and_person": sorted(n for n, k in names.items() if len(k) == 2),
        "mean_tokens": sum(len(e.tokens) for e in examples) / len(examples),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=8000, help="generated training examples")
    parser.add_argument("--test-size", type=int, default=2000, help="examples per test set")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training set (test sets use seed+1..)")
    parser.add_argument("--out", type=Path, default=RESULT, help="where to save the JSON result")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    train = generate(GeneratorConfig(n=args.train_size, seed=args.seed))
    generated_s = time.perf_counter() - started
    test_sets = {
        "clean": GeneratorConfig(n=args.test_size, seed=args.seed + 1),
        "noise_0.15": GeneratorConfig(n=args.test_size, seed=args.seed + 2, noise_rate=0.15),
        "unseen_products": GeneratorConfig(n=args.test_size, seed=args.seed + 3, unseen_products=True),
        "unseen_names": GeneratorConfig(n=args.test_size, seed=args.seed + 4, unseen_names=True),
    }
    classify, tag = intent_model(train), memoriser(train)
    rows = {}
    for name, config in test_sets.items():
        test = generate(config)
        report = evaluate(test, list(classify.predict([e.text for e in test])), [tag(e.tokens) for e in test])
        rows[name] = {
            "intent_accuracy": report.intent_accuracy,
            "slot_f1": report.slots.f1,
            "sentence_accuracy": report.sentence_accuracy,
            "brand_as_person": report.brand_person_confusion["brand_as_person"],
            "person_as_brand": report.brand_person_confusion["person_as_brand"],
        }
    print(f"{'test set':<18}{'intent acc':>11}{'slot F1':>9}{'sentence':>10}{'brand->person':>15}{'person->brand':>15}")
    for name, row in rows.items():
        print(f"{name:<18}{row['intent_accuracy']:>11.4f}{row['slot_f1']:>9.4f}{row['sentence_accuracy']:>10.4f}"
              f"{row['brand_as_person']:>15}{row['person_as_brand']:>15}")
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "versions": {pkg: version(pkg) for pkg in ("scikit-learn", "numpy")},
        "units": {"*_accuracy": "share 0..1", "slot_f1": "share 0..1 (entity level)", "brand_as_person": "spans",
                  "generate_s": "seconds", "generate_per_s": "examples per second"},
        "baselines": {"intent": "tfidf word 1-2 + char 2-4, logistic regression C=10",
                      "slots": "most frequent training tag per token"},
        "generate_s": generated_s,
        "generate_per_s": args.train_size / generated_s,
        "train": corpus_stats(train),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"generated {args.train_size} examples in {generated_s:.2f} s; saved {args.out}")
    return result


if __name__ == "__main__":
    main()
