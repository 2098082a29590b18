"""Workers with real model packages: hot reload between batches, and no personal data stored."""

from __future__ import annotations

import json
import random
import re
import shutil
import threading

import pytest

from model_runtime.package import load_package, write_manifest
from model_runtime.registry import promote
from nlumon.pii import luhn_valid
from nlumon.records import UtteranceEvent
from nlumon.schema import connect
from streams.replay import produce
from streams.scenarios import scenario_events
from tests.integration.workers import Worker, full_log, isolated, stored_ids, topic_messages, wait_until

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


def secrets(seed: int) -> dict[str, str]:
    """An e-mail, a phone and a card number of this run only (older rows of the shared test database, written
    by earlier code, cannot match them)."""
    rng = random.Random(seed)
    return {"email": f"{rare_name(rng)}.lee@example.com",
            "phone": f"{rng.randint(200, 989)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
            "card": " ".join(re.findall("....", luhn_card(rng)))}
STREETS = ("elm street", "oak st", "n main ave", "maple drive", "w 42nd st", "sunset blvd")


def luhn_card(rng, prefix: str = "4", length: int = 16) -> str:
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def rare_name(rng) -> str:
    """A made-up name (no list holds it; unique to this run, so no other test's rows can hold it)."""
    syllables = ("ka", "zu", "mbe", "lo", "ri", "vo", "th", "ndi", "sa", "qu", "el", "ora", "ya", "gwe", "xi")
    return "".join(rng.choice(syllables) for _ in range(3)) + rng.choice(("a", "o", "e", "i", "u"))


def planted_events(seed: int) -> tuple[list[tuple[bytes, bytes]], list[str], dict[str, list[str]]]:
    """Utterances with personal data in many shapes, plus what must never be read back: exact strings,
    digit strings (cards, phones) and words (names)."""
    rng = random.Random(seed)
    texts, probes = [], {"exact": [], "digits": [], "words": []}
    for index in range(40):
        card, phone = luhn_card(rng, rng.choice(("4", "51", "37", "6011"))), f"{rng.randint(200, 989)}" \
            f"{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        name, surname = rare_name(rng), rare_name(rng)
        local = f"{rare_name(rng)}.{rare_name(rng)}"
        number, street = str(rng.randint(100, 99999)), rng.choice(STREETS)
        shapes = [
            (f"pay with {card[:4]}  {card[4:6]} {card[6:11]}--{card[11:]} please", card),  # odd grouping
            (f"my card is {' '.join(DIGITS[int(d)] for d in card)}", card),  # spoken
            (f"charge {card[:7]} {card[7:]}", card),
            (f"call me at ({phone[:3]}) {phone[3:6]}-{phone[6:]}", phone),
            (f"text {phone[:3]}.{phone[3:6]}.{phone[6:]} when its ready", phone),
            (f"my number is one {' '.join(DIGITS[int(d)] for d in phone)}", phone),
            (f"reach me on +1 {phone[:3]} {phone[3:6]} {phone[6:]}", phone),
        ]
        text, digits = shapes[index % len(shapes)]
        probes["digits"].append(digits)
        person = [f"swap my shift with {name} tomorrow", f"ask {name} {surname} to cover aisle 4",
                  f"is {name} working today", f"pull up {name} {surname}'s order",
                  f"tell {name.title()} the truck is here",
                  f"send {name} to electronics"][index % 6]
        probes["words"] += [name, surname] if surname in person else [name]
        email = [f"{local}@example.com", f"{local.replace('.', ' dot ')} at gmail dot com"][index % 2]
        probes["words"] += local.split(".")
        address = f"{number} {street}"
        probes["exact"].append(address)
        texts.append([f"{person} and {text}", f"{person}, mail {email}",
                      f"ship it to {address} and tell {name} it is coming"][index % 3])
    records, ids = [], []
    for index, text in enumerate(texts):
        event = UtteranceEvent(id=f"pii-planted-{seed}-{index}", ts="2026-11-23T10:00:00Z", assistant="associate",
                               session_id="s-pii", text=text)
        records.append((b"s-pii", event.to_json()))
        ids.append(event.id)
    return records, ids, probes


DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def pii_events(seed: int) -> tuple[list[tuple[bytes, bytes]], list[str], list[str]]:
    """Associate utterances that name people, with an e-mail, a phone or a card number appended."""
    from model_runtime.data.retail import GeneratorConfig, generate

    # 90 utterances: enough that every seed plants at least 40 names (60 gave 37 to 53)
    examples = generate(GeneratorConfig(n=90, seed=seed, intents=("check_shift", "swap_shift", "find_coworker")))
    records, ids, names = [], [], []
    for index, example in enumerate(examples):
        secret = list(secrets(seed).values())[index % 3]
        text = f"{example.text} and reach me at {secret}"
        names += [" ".join(example.tokens[s:e]) for kind, s, e in example.spans() if kind == "person"]
        event = UtteranceEvent(id=f"pii-{seed}-{index}", ts="2026-11-23T10:00:00Z", assistant="associate",
                               session_id="s-pii", text=text)
        records.append((b"s-pii", event.to_json()))
        ids.append(event.id)
    return records, ids, names


def digit_runs(text: str) -> list[str]:
    """Numbers in a stored string, their groups joined (spaces, dots, dashes, brackets); spoken digits as digits."""
    spoken = re.sub(r"\b(zero|one|two|three|four|five|six|seven|eight|nine)\b",
                    lambda m: str(DIGITS.index(m.group().lower())), text, flags=re.IGNORECASE)
    return [re.sub(r"\D", "", run) for run in re.findall(r"\d(?:[\d\s.()+-]*\d)?", spoken)]


def test_no_raw_email_phone_card_or_person_name_is_stored(services, unique, tmp_path, quick_model):
    settings = isolated(services, unique, model={"package_path": quick_model})
    seed = int(unique[:6], 16)
    records, ids, names = pii_events(seed)
    planted, planted_ids, probes = planted_events(seed)
    assert len(names) >= 40
    produce(settings, records + planted)
    worker = Worker(settings, "scrubber", tmp_path)
    try:
        wait_until(lambda: min(stored_ids(settings, ids + planted_ids).values()) == 1, 180, "every row", (worker,))
    finally:
        worker.stop()
    client = connect(settings.clickhouse)
    try:  # every String / Array(String) column of every table of the database, every row
        text_columns = client.execute(
            "SELECT table, name FROM system.columns WHERE database = %(db)s AND type IN %(types)s",
            {"db": settings.clickhouse.database,
             "types": ("String", "Array(String)", "Nullable(String)", "Array(Nullable(String))")})
        assert {table for table, _ in text_columns} >= {"predictions", "utterance_log", "dead_letters",
                                                       "labeling_queue", "ood_clusters", "alert_events"}
        stored = []
        for table, column in text_columns:
            for (value,) in client.execute(f"SELECT {column} FROM {table}"):
                if isinstance(value, list | tuple):  # each element, and all of them joined: a card split over two
                    stored += [str(item) for item in value] + [" ".join(str(item) for item in value)]
                elif value is not None:
                    stored.append(str(value))
        ours = client.execute("SELECT text_scrubbed, slot_values FROM predictions WHERE id IN %(ids)s",
                              {"ids": tuple(ids)})
        planted_rows = client.execute("SELECT text_scrubbed, slot_values FROM predictions WHERE id IN %(ids)s",
                                      {"ids": tuple(planted_ids)})
    finally:
        client.disconnect()
    published = [message.value.decode(errors="replace")
                 for message in topic_messages(settings, settings.topics.predictions)]
    stored += [*published, full_log(worker)]  # the predictions topic and the worker's log lines too
    everything = "\n".join(stored).lower()
    for kind, secret in secrets(seed).items():
        assert secret.lower() not in everything, f"a raw {kind} is stored"
        if kind != "email":
            probes["digits"].append(re.sub(r"\D", "", secret))
    for exact in probes["exact"]:
        assert exact.lower() not in everything, f"an address is stored: {exact}"
    numbers = {run for value in stored for run in digit_runs(value)}
    leaked_numbers = [digits for digits in probes["digits"] if any(digits in run for run in numbers)]
    assert not leaked_numbers, f"card or phone numbers readable from storage: {leaked_numbers}"
    words = set(re.findall(r"[^\W\d_]+", everything))
    leaked_words = sorted({word for word in probes["words"] if word.lower() in words})
    assert not leaked_words, f"planted names stored: {leaked_words}"
    our_text = " ".join(f"{text} {' '.join(slots)}" for text, slots in ours).lower()
    leaked = sorted({name for name in names if f" {name} " in f" {our_text} "})
    assert not leaked, f"person names stored in the clear: {leaked}"
    assert our_text.count("<person>") >= len(ids) * 0.9
    planted_text = " ".join(f"{text} {' '.join(slots)}" for text, slots in planted_rows)
    for placeholder in ("<PERSON>", "<CARD>", "<PHONE>", "<EMAIL>", "<ADDRESS>"):
        assert placeholder in planted_text
