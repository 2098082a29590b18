"""Workers with real model packages: hot reload between batches, and no personal data stored."""

from __future__ import annotations

import json
import shutil
import threading

import pytest

from model_runtime.package import load_package, write_manifest
from model_runtime.registry import promote
from nlumon.records import UtteranceEvent
from nlumon.schema import connect
from streams.replay import produce
from streams.scenarios import scenario_events
from tests.integration.workers import Worker, isolated, stored_ids, wait_until

pytestmark = pytest.mark.integration


def renamed_copy(package_dir, out_dir, version: str):
    """A valid copy of a package under another version (what a retrain would give, minus the training)."""
    shutil.copytree(package_dir, out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    manifest["version"] = version
    write_manifest(out_dir, manifest)
    return load_package(out_dir)


def test_hot_reload_switches_the_model_between_batches_with_no_gap(services, unique, tmp_path):
    from model_runtime.testing import cached_tiny_package

    registry = tmp_path / "registry"
    old = promote(cached_tiny_package(), registry)
    new = renamed_copy(cached_tiny_package(), tmp_path / "v2", f"{old.version}-retrained")
    settings = isolated(services, unique, model={"package_path": registry / "current"})
    events = list(scenario_events("stable", 2400, seed=int(unique[:6], 16)))
    ids = [e.truth["id"] for e in events]
    sender = threading.Thread(target=produce, args=(settings, ((e.key, e.value) for e in events)),
                              kwargs={"rate": 200.0})
    worker = Worker(settings, "reloader", tmp_path)
    try:
        wait_until(lambda: "serving model" in worker.output(), 120, "the worker's model", (worker,))
        sender.start()
        wait_until(lambda: sum(stored_ids(settings, ids).values()) > 300, 60, "traffic under the old model", (worker,))
        promote(new.path, registry)
        sender.join()
        wait_until(lambda: min(stored_ids(settings, ids).values()) == 1, 180, "every row", (worker,))
        assert f"now serving model {new.version}" in worker.output()
    finally:
        worker.stop()
    assert set(stored_ids(settings, ids).values()) == {1}
    client = connect(settings.clickhouse)
    rows = client.execute(
        "SELECT kafka_partition, kafka_offset, model_version FROM predictions FINAL WHERE id IN %(ids)s "
        "ORDER BY kafka_partition, kafka_offset", {"ids": tuple(ids)})
    client.disconnect()
    assert {version for _, _, version in rows} == {old.version, new.version}
    for partition in {p for p, _, _ in rows}:  # per partition: old rows, then new rows, never back
        versions = [v for p, _, v in rows if p == partition]
        switched = versions.index(new.version) if new.version in versions else len(versions)
        assert set(versions[:switched]) <= {old.version} and set(versions[switched:]) <= {new.version}


SECRETS = {
    "email": "ann.lee@example.com",
    "phone": "415-555-0134",
    "card": "4111 1111 1111 1111",
}


def pii_events(seed: int) -> tuple[list[tuple[bytes, bytes]], list[str], list[str]]:
    """Associate utterances that name people, with an e-mail, a phone or a card number appended."""
    from model_runtime.data.retail import GeneratorConfig, generate

    examples = generate(GeneratorConfig(n=60, seed=seed, intents=("check_shift", "swap_shift", "find_coworker")))
    records, ids, names = [], [], []
    for index, example in enumerate(examples):
        secret = list(SECRETS.values())[index % 3]
        text = f"{example.text} and reach me at {secret}"
        names += [" ".join(example.tokens[s:e]) for kind, s, e in example.spans() if kind == "person"]
        event = UtteranceEvent(id=f"pii-{seed}-{index}", ts="2026-11-23T10:00:00Z", assistant="associate",
                               session_id="s-pii", text=text)
        records.append((b"s-pii", event.to_json()))
        ids.append(event.id)
    return records, ids, names


def test_no_raw_email_phone_card_or_person_name_is_stored(services, unique, tmp_path, quick_model):
    settings = isolated(services, unique, model={"package_path": quick_model})
    records, ids, names = pii_events(int(unique[:6], 16))
    assert len(names) >= 40
    produce(settings, records)
    worker = Worker(settings, "scrubber", tmp_path)
    try:
        wait_until(lambda: min(stored_ids(settings, ids).values()) == 1, 180, "every row", (worker,))
    finally:
        worker.stop()
    client = connect(settings.clickhouse)
    try:
        text_columns = client.execute(
            "SELECT table, name FROM system.columns WHERE database = %(db)s AND type IN %(types)s",
            {"db": settings.clickhouse.database, "types": ("String", "Array(String)", "Nullable(String)")})
        stored = []
        for table, column in text_columns:
            values = client.execute(f"SELECT toString({column}) FROM {table}")  # every row of every table
            stored += [value for (value,) in values]
        ours = client.execute("SELECT text_scrubbed, slot_values FROM predictions WHERE id IN %(ids)s",
                              {"ids": tuple(ids)})
    finally:
        client.disconnect()
    everything = "\n".join(stored).lower()
    for kind, secret in SECRETS.items():
        assert secret.lower() not in everything, f"a raw {kind} is stored"
    our_text = " ".join(f"{text} {' '.join(slots)}" for text, slots in ours).lower()
    leaked = sorted({name for name in names if f" {name} " in f" {our_text} "})
    assert not leaked, f"person names stored in the clear: {leaked}"
    assert our_text.count("<person>") >= len(ids) * 0.9
