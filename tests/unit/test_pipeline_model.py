"""The worker's batch step with a real (tiny) model package: features, scrubbing, failure isolation."""

from dataclasses import replace

import pytest

from nlumon.pii import text_hash
from nlumon.records import UtteranceEvent
from nlumon.settings import load_settings
from streams.features import PREDICTION_COLUMNS
from streams.model_service import ModelService
from streams.pipeline import BatchPipeline, RawRecord

TEXTS = [
    "add two jordans to my cart",
    "mail the receipt to ann.lee@example.com or text 415-555-0134",
    "pay with card 4111 1111 1111 1111",
    "is jordan on shift tomorrow",
]


@pytest.fixture(scope="module")
def model():
    from model_runtime.testing import cached_tiny_package

    settings = load_settings(None, model={"package_path": cached_tiny_package()})
    loaded = ModelService(settings.model).start()
    yield loaded
    loaded.runtime.close()


def records(texts):
    out = []
    for index, text in enumerate(texts):
        event = UtteranceEvent.model_validate({
            "id": f"u{index}", "ts": "2026-11-23T10:00:00Z", "assistant": "shopper", "session_id": "s",
            "text": text, "asr_confidence": 0.9,
        })
        out.append(RawRecord(event.to_json(), b"s", 0, index, "utterances", 1_700_000_000.0))
    return out


def test_each_accepted_utterance_gets_a_full_feature_row(model):
    result = BatchPipeline(load_settings(None)).process(records(TEXTS), model)
    rows = result.rows["predictions"]
    assert [row["id"] for row in rows] == ["u0", "u1", "u2", "u3"]
    for row in rows:
        assert set(row) == set(PREDICTION_COLUMNS)
        assert row["model_version"] == model.version
        assert len(row["embedding_sketch"]) == 32
        assert 0.0 <= row["confidence"] <= 1.0 and row["is_ood"] in (0, 1)
        assert row["batch_size"] == 4 and row["inference_ms"] > 0
        assert len(row["top_intents"]) == 3 and row["top_intents"][0] == row["intent"]
    assert result.model_version == model.version
    settings = load_settings(None)
    logged = {row["id"]: row["text_hash"] for row in result.rows["utterance_log"]}
    assert logged == {f"u{i}": text_hash(settings.stream.pii_hash_key, text) for i, text in enumerate(TEXTS)}
    assert logged == {row["id"]: row["text_hash"] for row in rows}


def test_stored_text_is_scrubbed(model):
    rows = BatchPipeline(load_settings(None)).process(records(TEXTS), model).rows["predictions"]
    stored = " ".join(row["text_scrubbed"] + " ".join(row["slot_values"]) for row in rows)
    for secret in ("ann.lee@example.com", "415-555-0134", "4111 1111 1111 1111"):
        assert secret not in stored
    assert "<EMAIL>" in rows[1]["text_scrubbed"] and "<CARD>" in rows[2]["text_scrubbed"]


class PoisonRuntime:
    """The real runtime, except that it raises on one text (as a model bug on an odd input would)."""

    def __init__(self, runtime, poison: str) -> None:
        self.runtime, self.poison = runtime, poison

    def predict(self, texts):
        if self.poison in texts:
            raise RuntimeError("kernel exploded")
        return self.runtime.predict(texts)


def test_a_record_the_model_fails_on_is_dead_lettered_and_the_rest_of_the_batch_is_kept(model):
    poisoned = replace(model, runtime=PoisonRuntime(model.runtime, TEXTS[2]))
    result = BatchPipeline(load_settings(None)).process(records(TEXTS), poisoned)
    assert [row["id"] for row in result.rows["predictions"]] == ["u0", "u1", "u3"]
    assert [letter.offset for letter in result.dead_letters] == [2]
    assert result.dead_letters[0].reason.startswith("model error: kernel exploded")
