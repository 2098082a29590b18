"""The name dictionary (``labeling/names.py``) and its CLI (``labeling/names_cli.py``), no services.

It holds names of staff (personal data the store owns), so the tests plant what must never get in — e-mails,
phone and card numbers, spoken or typed, placeholders of scrubbed rows — and check that concurrent writers
(processes, as the monitor and a person at the CLI are) lose no update.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labeling.names import (
    MAX_VALUE_CHARS,
    InvalidNameError,
    NameDictionary,
    NameDictionaryError,
    VersionConflictError,
    clean_value,
    default_names_path,
)
from labeling.names_cli import names_app
from tests.conftest import make_test_settings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

PLANTED = [
    "ann.lee@example.com", "ann dot lee at gmail dot com", "415-555-0134", "(415) 555 0134",
    "four one five five five five zero one three four", "4111 1111 1111 1111", "4111-1111-1111-1111",
    "four one one one one one one one one one one one one one one one", "<PERSON>", "<CARD>", "call 5550134",
    "500 n main ave", "x" * (MAX_VALUE_CHARS + 1), "", "   ", "a", "olivia2", "jordan_", "-jordan",
    "one two three four five six", "https://example.com",
]


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def names_at(tmp_path: Path) -> NameDictionary:
    return NameDictionary.load(tmp_path / "names.json", clock=Clock())


@pytest.mark.parametrize("value", PLANTED)
def test_anything_but_a_name_is_refused(value: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError):
        clean_value(value)
    names = names_at(tmp_path)
    assert names.propose([value], "person", sessions=5).refused
    with pytest.raises(InvalidNameError):
        names.accept([value], by="ana")
    assert names.version == 0 and not (tmp_path / "names.json").exists()


def test_a_refused_value_in_a_batch_stops_the_whole_decision(tmp_path: Path) -> None:
    names = names_at(tmp_path)
    with pytest.raises(InvalidNameError, match=r"card number|letters"):
        names.accept(["imelda", "4111 1111 1111 1111"], by="ana")
    assert names.entries() == [] and names.version == 0


@pytest.mark.parametrize(("raw", "stored"), [
    ("Imelda", "imelda"), ("  Mary-Jane   O'Neil ", "mary-jane o'neil"), ("ÉLODIE", "élodie"),
    ("Ｊｏｒｄａｎ", "jordan"), ("calvin klein", "calvin klein"),
])
def test_names_are_stored_lower_cased_and_normalised(raw: str, stored: str) -> None:
    assert clean_value(raw) == stored


def test_propose_adds_updates_and_never_reproposes_decided_values(tmp_path: Path) -> None:
    names = names_at(tmp_path)
    result = names.propose(["Imelda", "Rhiannon", "jordan"], "person", {"Imelda": 3, "Rhiannon": 4, "jordan": 5},
                           seen_at=T0)
    assert result.added == ("imelda", "rhiannon", "jordan") and names.version == 1
    entry = names.entries(slot_type="person", status="proposed")[0]
    assert (entry.value, entry.sessions, entry.first_seen, entry.proposed_by) == ("imelda", 3, T0.isoformat(),
                                                                                   "monitor")
    names.accept("imelda", by="ana", note="new staff")
    names.reject("jordan", by="ana", note="the brand")
    version = names.version
    again = names.propose(["imelda", "jordan", "rhiannon"], "person", 9, seen_at=T0 + timedelta(minutes=5))
    assert again.decided == ("imelda", "jordan") and again.updated == ("rhiannon",) and again.added == ()
    statuses = {e.value: (e.status, e.sessions) for e in names.entries(slot_type="person")}
    assert statuses == {"imelda": ("accepted", 3), "jordan": ("rejected", 5), "rhiannon": ("proposed", 9)}
    assert names.version == version + 1
    same = names.propose(["rhiannon"], "person", 2, seen_at=T0)  # an older window, fewer sessions: nothing new
    assert same.updated == () and names.version == version + 1
    assert names.accepted("person") == ["imelda"] and names.accepted("brand") == []


def test_accept_and_reject_cover_every_slot_type_unless_one_is_named(tmp_path: Path) -> None:
    names = names_at(tmp_path)
    names.propose(["jordan"], "person", 3)
    names.propose(["jordan"], "brand", 3)
    names.accept("jordan", slot_type="brand", by="ana")
    assert names.accepted("brand") == ["jordan"] and names.accepted("person") == []
    names.reject("jordan", by="ana")
    assert {e.slot_type: e.status for e in names.entries()} == {"brand": "rejected", "person": "rejected"}
    names.accept("Desmond Price", by="ana")  # not proposed: added to the roster as a person
    assert names.accepted() == ["desmond price"]
    assert [r["action"] for r in names.history] == ["propose", "propose", "accept", "reject", "reject", "accept"]
    assert names.history[-1] == {"version": names.version, "at": names.history[-1]["at"], "action": "accept",
                                 "value": "desmond price", "slot_type": "person", "by": "ana"}


def test_the_file_is_versioned_private_and_reloads(tmp_path: Path) -> None:
    names = names_at(tmp_path)
    names.propose(["imelda"], "person", 3)
    names.accept("imelda", by="ana")
    path = tmp_path / "names.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["format"] == 1 and data["version"] == 2 and len(data["history"]) == 2
    reloaded = NameDictionary.load(path)
    assert reloaded.version == 2 and reloaded.accepted() == ["imelda"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temporary file left


def test_compare_and_swap_refuses_a_stale_decision(tmp_path: Path) -> None:
    first, second = names_at(tmp_path), names_at(tmp_path)
    first.propose(["imelda", "tobias"], "person", 3)
    second.reload()
    seen = second.version
    first.reject("tobias", by="ana")
    with pytest.raises(VersionConflictError, match=f"version {seen + 1}, not {seen}"):
        second.accept("tobias", by="bo", expected_version=seen)
    assert NameDictionary.load(tmp_path / "names.json").entries(status="rejected")[0].value == "tobias"
    second.accept("imelda", by="bo")  # without a version: applied on top of the latest file
    assert NameDictionary.load(tmp_path / "names.json").accepted() == ["imelda"]


def _propose_many(path: str, prefix: str, count: int) -> None:
    names = NameDictionary.load(path)
    for index in range(count):
        names.propose([f"{prefix}{chr(97 + index // 26)}{chr(97 + index % 26)}"], "brand", 3)


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    path = str(tmp_path / "names.json")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_propose_many, args=(path, prefix, 25)) for prefix in ("alpha", "beta", "gamma")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    names = NameDictionary.load(path)
    assert len(names.entries(slot_type="brand")) == 75 and names.version == 75
    assert sorted(r["version"] for r in names.history) == list(range(1, 76))


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('{"format": 9, "version": 1}', "format 1"),
    ('{"format": 1, "version": -1}', "version -1"),
    ('{"format": 1, "version": 1, "entries": [{"value": "ann@example.com", "slot_type": "person", '
     '"status": "accepted"}]}', "entry 0"),
    ('{"format": 1, "version": 1, "entries": [{"value": "Imelda", "slot_type": "person", "status": "accepted"}]}',
     "normalised"),
    ('{"format": 1, "version": 1, "entries": [{"value": "imelda", "slot_type": "person", "status": "maybe"}]}',
     "status"),
    ('{"format": 1, "version": 1, "entries": [{"value": "imelda", "slot_type": "person", "status": "accepted", '
     '"phone": "415 555 0134"}]}', "unknown field"),
])
def test_a_damaged_or_hand_edited_file_is_refused_with_a_reason(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "names.json"
    path.write_text(content)
    with pytest.raises(NameDictionaryError, match=message):
        NameDictionary.load(path)


def test_the_default_path_is_under_the_state_dir(tmp_path: Path) -> None:
    settings = make_test_settings(services={"run_dir": tmp_path})
    assert default_names_path(settings) == tmp_path / "names.json"


# -- CLI ---------------------------------------------------------------------------------------------------------
def run(*args: str) -> object:
    return CliRunner().invoke(names_app, list(args), catch_exceptions=False)


def test_cli_lists_accepts_and_rejects(tmp_path: Path) -> None:
    path = str(tmp_path / "names.json")
    NameDictionary.load(path).propose(["imelda", "jordan", "tobias"], "person", {"imelda": 3, "jordan": 7,
                                                                                 "tobias": 4})
    table = run("list", "--path", path)
    assert table.exit_code == 0 and "version 1" in table.output
    lines = [line.split()[0] for line in table.output.splitlines()[2:]]
    assert lines == ["jordan", "tobias", "imelda"]  # most sessions first
    assert run("accept", "imelda", "Desmond Price", "--by", "ana", "--note", "store 12", "--path", path).exit_code == 0
    assert run("reject", "jordan", "--slot-type", "person", "--by", "ana", "--path", path).exit_code == 0
    listed = json.loads(run("list", "--status", "accepted", "--json", "--path", path).output)
    assert [(e["value"], e["decided_by"], e["note"]) for e in listed["entries"]] == [
        ("imelda", "ana", "store 12"), ("desmond price", "ana", "store 12")]  # most sessions first
    assert listed["version"] == 3
    rejected = json.loads(run("list", "--status", "rejected", "--slot-type", "person", "--json", "--path", path).output)
    assert [e["value"] for e in rejected["entries"]] == ["jordan"]


def test_cli_refuses_what_is_not_a_name_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "names.json"
    result = CliRunner().invoke(names_app, ["accept", "imelda", "415 555 0134", "--path", str(path)])
    assert result.exit_code == 1 and "415 555 0134" in result.output and not path.exists()
    stale = CliRunner().invoke(names_app, ["accept", "imelda", "--if-version", "4", "--path", str(path)])
    assert stale.exit_code == 1 and "not 4" in stale.output
    bad_status = CliRunner().invoke(names_app, ["list", "--status", "maybe", "--path", str(path)])
    assert bad_status.exit_code == 1 and "status" in bad_status.output


def test_cli_finds_the_dictionary_through_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLUMON_SERVICES__RUN_DIR", str(tmp_path))
    monkeypatch.delenv("NLUMON_CONFIG", raising=False)
    assert run("accept", "imelda", "--by", "ana").exit_code == 0
    assert NameDictionary.load(tmp_path / "names.json").accepted() == ["imelda"]


@pytest.mark.parametrize("command", ["list", "accept", "reject"])
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0 and "--path" in result.output
    assert os.linesep.join(result.output.splitlines()).strip()
