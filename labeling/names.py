"""The name dictionary: a versioned, human-reviewed list of names (staff, brands) the annotation gazetteer uses.

The monitor proposes values it saw in live traffic that the model never produced in training (new values of the
``person`` and ``brand`` slots used in several sessions, ``detectors/slot_values.py``); people accept or reject
them (``nlumon labeling names``); :meth:`NameDictionary.accepted` feeds the gazetteer labeling function.

**Personal data.** Accepted person entries are names of staff (and of brands named after people): the
dictionary is a roster the store owns, like its staff list, and is handled as one — a local file (mode 0600),
never shipped in a model package, removed by hand when someone leaves (``reject`` keeps a tombstone so the
monitor does not propose the name again). So that nothing else can ever be written into it, every value is
validated where it enters (:func:`clean_value`): lower-cased (NFKC, case-folded, whitespace collapsed), at most
64 characters and 5 words, letters, spaces, apostrophes and hyphens only, and nothing
:func:`nlumon.pii.find_pii` reads as an e-mail, card, phone number or street address (spoken forms included)
— so digits, e-mails, phone and card numbers and the ``<PERSON>`` placeholders of scrubbed rows are refused.

**File.** JSON: ``{"format": 1, "version": N, "updated_at": ..., "entries": [...], "history": [...]}``. An entry
is ``{value, slot_type, status: proposed|accepted|rejected, first_seen, last_seen, sessions, proposed_by,
decided_by, decided_at, note}``; ``sessions`` is the most distinct sessions that used the value in one monitoring
window (so scoring a window twice does not inflate it). Every change bumps ``version`` by one; status changes
(proposed, accepted, rejected) are appended to ``history`` with who and when (the last ``MAX_HISTORY``).
Writes take an exclusive lock on ``<file>.lock``, re-read the file, apply the change and replace the file
atomically (temporary file + ``os.replace``), so two writers (the monitor and a person at the CLI) never lose
each other's updates; a caller that decided on what it read can pass ``expected_version`` and gets
:class:`VersionConflictError` if the file moved on (compare-and-swap).

Rules: :meth:`~NameDictionary.propose` adds new values as ``proposed`` and never touches an ``accepted`` or
``rejected`` entry (a rejected value is not proposed again; an accepted one stays accepted); :meth:`accept` and
:meth:`reject` are people's decisions and may overturn any status.

    >>> import tempfile, pathlib
    >>> names = NameDictionary.load(pathlib.Path(tempfile.mkdtemp()) / "names.json")
    >>> names.propose(["Imelda", "ann@example.com"], "person", sessions=3).refused
    (('ann@example.com', 'letters, spaces, apostrophes and hyphens only'),)
    >>> names.accept(["imelda"], by="manager").version, names.accepted("person")
    (2, ['imelda'])
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nlumon.pii import find_pii, normalise

FORMAT = 1
STATUSES = ("proposed", "accepted", "rejected")
PROPOSED, ACCEPTED, REJECTED = STATUSES
MAX_VALUE_CHARS = 64
MAX_WORDS = 5
MAX_HISTORY = 5000
MAX_NOTE_CHARS = 200
LOCK_TIMEOUT_S = 10.0
DEFAULT_FILE = "names.json"
_SLOT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ACTOR = re.compile(r"[\w.@+-]{1,64}")
_OTHER_PII = frozenset({"email", "card", "phone", "address"})
_NUMBER_WORDS = frozenset(
    "zero oh one two three four five six seven eight nine ten eleven twelve double triple hundred thousand".split())


class NameDictionaryError(ValueError):
    """The dictionary file is unreadable or invalid, or a change was refused."""


class InvalidNameError(NameDictionaryError):
    """A value that may not enter the dictionary (see :func:`clean_value`)."""


class VersionConflictError(NameDictionaryError):
    """The file changed since the version the caller decided on (compare-and-swap failed)."""


def clean_value(value: Any) -> str:
    """The value as stored (normalised, lower-cased), or :class:`InvalidNameError` saying why it may not be.

    >>> clean_value("  Mary-Jane  O'Neil "), clean_value("ÉLODIE")
    ("mary-jane o'neil", 'élodie')
    >>> clean_value("4111 1111 1111 1111")
    Traceback (most recent call last):
    ...
    labeling.names.InvalidNameError: '4111 1111 1111 1111': letters, spaces, apostrophes and hyphens only
    >>> clean_value("ann dot lee at gmail dot com")
    Traceback (most recent call last):
    ...
    labeling.names.InvalidNameError: 'ann dot lee at gmail dot com': reads as an e-mail address, not a name
    """
    if not isinstance(value, str):
        raise InvalidNameError(f"{value!r}: a name must be a string")
    text = normalise(value)
    shown = value if len(value) <= 80 else value[:77] + "..."
    if not text:
        raise InvalidNameError(f"{shown!r}: empty")
    if len(text) > MAX_VALUE_CHARS:
        raise InvalidNameError(f"{shown!r}: longer than {MAX_VALUE_CHARS} characters")
    if not all(_letter(ch) or ch in " '-" for ch in text):
        raise InvalidNameError(f"{shown!r}: letters, spaces, apostrophes and hyphens only")
    if not (_letter(text[0]) and _letter(text[-1])) or sum(map(_letter, text)) < 2:
        raise InvalidNameError(f"{shown!r}: must start and end with a letter and hold at least two")
    kinds = {finding.kind for finding in find_pii(text, gazetteer=False)} & _OTHER_PII
    if kinds:
        what = {"email": "an e-mail address", "card": "a card number", "phone": "a phone number",
                "address": "a street address"}[sorted(kinds)[0]]
        raise InvalidNameError(f"{shown!r}: reads as {what}, not a name")
    words = text.split()
    if sum(word in _NUMBER_WORDS for word in words) >= 3:
        raise InvalidNameError(f"{shown!r}: reads as a spoken number, not a name")
    if len(words) > MAX_WORDS:
        raise InvalidNameError(f"{shown!r}: more than {MAX_WORDS} words")
    return text


def _letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L")


def check_slot_type(slot_type: Any) -> str:
    if not isinstance(slot_type, str) or not _SLOT_TYPE.fullmatch(slot_type):
        raise NameDictionaryError(f"slot type {slot_type!r}: lower-case letters, digits and _, at most 32")
    return slot_type


def _actor(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _ACTOR.fullmatch(name):
        raise NameDictionaryError(f"{what} {name!r}: a user or program name of 1-64 letters, digits, . _ @ + -")
    return name


def _note(note: Any) -> str:
    text = " ".join(str(note or "").split())
    if len(text) > MAX_NOTE_CHARS:
        raise NameDictionaryError(f"note longer than {MAX_NOTE_CHARS} characters")
    return text


@dataclass(frozen=True)
class NameEntry:
    """One (value, slot type) of the dictionary."""

    value: str
    slot_type: str
    status: str
    first_seen: str = ""
    last_seen: str = ""
    sessions: int = 0
    proposed_by: str = ""
    decided_by: str = ""
    decided_at: str = ""
    note: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.slot_type, self.value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> NameEntry:
        """An entry read from a file, validated like one written through the API."""
        if not isinstance(data, Mapping):
            raise NameDictionaryError(f"{where}: not an object")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise NameDictionaryError(f"{where}: unknown field(s) {', '.join(unknown)}")
        try:
            value = clean_value(data.get("value"))
            if value != data.get("value"):
                raise InvalidNameError(f"{data.get('value')!r}: not in its stored (normalised) form")
            status = data.get("status")
            if status not in STATUSES:
                raise NameDictionaryError(f"status {status!r}: one of {', '.join(STATUSES)}")
            sessions = data.get("sessions", 0)
            if type(sessions) is not int or sessions < 0:
                raise NameDictionaryError(f"sessions {sessions!r}: a count")
            texts = {name: data.get(name, "") for name in ("first_seen", "last_seen", "proposed_by", "decided_by",
                                                            "decided_at", "note")}
            if not all(isinstance(text, str) and len(text) <= MAX_NOTE_CHARS for text in texts.values()):
                raise NameDictionaryError("first_seen, last_seen, proposed_by, decided_by, decided_at, note: "
                                          "short strings")
            return cls(value, check_slot_type(data.get("slot_type")), status, sessions=sessions, **texts)
        except NameDictionaryError as error:
            raise NameDictionaryError(f"{where}: {error}") from None


@dataclass(frozen=True)
class ProposeResult:
    """What one :meth:`NameDictionary.propose` did: values added, proposals updated, values left alone because
    people decided on them, values refused (with the reason), and the version after the call."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    decided: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    version: int = 0


@dataclass
class _State:
    version: int
    updated_at: str
    entries: dict[tuple[str, str], NameEntry]
    history: list[dict[str, Any]]


def default_names_path(settings: Any) -> Path:
    """The dictionary file: ``labeling.names_path`` when the settings have it, else ``<state dir>/names.json``
    (``services.run_dir``: ``<checkout>/.run`` or the XDG state dir, see ``nlumon.settings.default_state_dir``)."""
    configured = getattr(getattr(settings, "labeling", None), "names_path", None)
    return Path(configured) if configured else Path(settings.services.run_dir) / DEFAULT_FILE


class NameDictionary:
    """The dictionary file at ``path`` and its state as last read or written; see the module docstring."""

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] | None = None,
                 lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.lock_timeout_s = lock_timeout_s
        self._state = _State(0, "", {}, [])

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> NameDictionary:
        """Read the dictionary at ``path`` (none yet: an empty one at version 0, written on the first change)."""
        names = cls(path, **options)
        names.reload()
        return names

    def reload(self) -> NameDictionary:
        self._state = _read(self.path)
        return self

    @property
    def version(self) -> int:
        return self._state.version

    @property
    def history(self) -> list[dict[str, Any]]:
        return [dict(record) for record in self._state.history]

    def entries(self, status: str | None = None, slot_type: str | None = None) -> list[NameEntry]:
        """Entries, by slot type then value, optionally of one status and/or slot type."""
        if status is not None and status not in STATUSES:
            raise NameDictionaryError(f"status {status!r}: one of {', '.join(STATUSES)}")
        return [entry for key, entry in sorted(self._state.entries.items())
                if (status is None or entry.status == status) and (slot_type is None or entry.slot_type == slot_type)]

    def accepted(self, slot_type: str = "person") -> list[str]:
        """The accepted values of ``slot_type``, sorted: what the gazetteer labeling function matches."""
        return [entry.value for entry in self.entries(ACCEPTED, slot_type)]

    def propose(
        self, values: Iterable[str], slot_type: str, sessions: int | Mapping[str, int] = 1, *,
        seen_at: datetime | None = None, proposed_by: str = "monitor", note: str = "",
        expected_version: int | None = None,
    ) -> ProposeResult:
        """Propose ``values`` of ``slot_type``: new ones become ``proposed``; a proposal seen again keeps the
        larger ``sessions`` and the later ``last_seen``; accepted and rejected values are left alone. Values that
        may not enter the dictionary are refused (returned with the reason), never written."""
        check_slot_type(slot_type)
        proposed_by, note = _actor(proposed_by, "proposed_by"), _note(note)
        seen = _iso(seen_at or self.clock())
        cleaned: dict[str, int] = {}
        refused: list[tuple[str, str]] = []
        for raw in values:
            try:
                value = clean_value(raw)
            except InvalidNameError as error:
                refused.append((str(raw), str(error).split(": ", 1)[-1]))
                continue
            count = sessions.get(raw, sessions.get(value, 0)) if isinstance(sessions, Mapping) else sessions
            cleaned[value] = max(cleaned.get(value, 0), int(count))
        outcome: dict[str, list[str]] = {"added": [], "updated": [], "decided": []}

        def change(state: _State, record: Callable[..., None]) -> None:
            for value, count in cleaned.items():
                entry = state.entries.get((slot_type, value))
                if entry is None:
                    state.entries[(slot_type, value)] = NameEntry(value, slot_type, PROPOSED, seen, seen, count,
                                                                  proposed_by, note=note)
                    record("propose", value, slot_type, proposed_by, note)
                    outcome["added"].append(value)
                elif entry.status != PROPOSED:
                    outcome["decided"].append(value)
                elif count > entry.sessions or seen > entry.last_seen:
                    state.entries[entry.key] = replace(entry, sessions=max(entry.sessions, count),
                                                       last_seen=max(entry.last_seen, seen))
                    outcome["updated"].append(value)

        self._change(change, expected_version)
        return ProposeResult(tuple(outcome["added"]), tuple(outcome["updated"]), tuple(outcome["decided"]),
                             tuple(refused), self.version)

    def accept(self, values: str | Iterable[str], *, slot_type: str | None = None, by: str = "cli", note: str = "",
               expected_version: int | None = None) -> NameDictionary:
        """Mark ``values`` accepted (every slot type they are listed under, or ``slot_type``; a value not listed
        yet is added under ``slot_type``, default ``person``). Raises :class:`InvalidNameError` before writing
        anything if one value may not enter the dictionary."""
        return self._decide(ACCEPTED, values, slot_type, by, note, expected_version)

    def reject(self, values: str | Iterable[str], *, slot_type: str | None = None, by: str = "cli", note: str = "",
               expected_version: int | None = None) -> NameDictionary:
        """Mark ``values`` rejected: the monitor never proposes them again (same rules as :meth:`accept`)."""
        return self._decide(REJECTED, values, slot_type, by, note, expected_version)

    def _decide(self, status: str, values: str | Iterable[str], slot_type: str | None, by: str, note: str,
                expected_version: int | None) -> NameDictionary:
        cleaned = [clean_value(value) for value in ([values] if isinstance(values, str) else values)]
        if slot_type is not None:
            check_slot_type(slot_type)
        by, note = _actor(by, "by"), _note(note)
        now = _iso(self.clock())
        action = "accept" if status == ACCEPTED else "reject"

        def change(state: _State, record: Callable[..., None]) -> None:
            for value in dict.fromkeys(cleaned):
                keys = [key for key in state.entries if key[1] == value and slot_type in (None, key[0])]
                for key in keys or [(slot_type or "person", value)]:
                    entry = state.entries.get(key) or NameEntry(value, key[0], status, now, now, 0, by)
                    if entry.status == status and key in state.entries and (not note or note == entry.note):
                        continue
                    state.entries[key] = replace(entry, status=status, decided_by=by, decided_at=now,
                                                 note=note or entry.note)
                    record(action, value, key[0], by, note)

        self._change(change, expected_version)
        return self

    def _change(self, change: Callable[[_State, Callable[..., None]], None], expected_version: int | None) -> None:
        """Under the file lock: re-read, check ``expected_version``, apply ``change``, write if it changed."""
        with _locked(self.path, self.lock_timeout_s):
            state = _read(self.path)
            if expected_version is not None and state.version != expected_version:
                raise VersionConflictError(f"{self.path} is at version {state.version}, not {expected_version}: "
                                           f"someone changed it meanwhile; reload and decide again")
            now = _iso(self.clock())
            records: list[dict[str, Any]] = []

            def record(action: str, value: str, slot_type: str, by: str, note: str) -> None:
                records.append({"version": state.version + 1, "at": now, "action": action, "value": value,
                                "slot_type": slot_type, "by": by, **({"note": note} if note else {})})

            before = dict(state.entries)
            change(state, record)
            if state.entries != before:  # anything to write (a proposal seen again may only update its counts)
                state.version += 1
                for item in records:
                    item["version"] = state.version
                state.updated_at = now
                state.history = (state.history + records)[-MAX_HISTORY:]
                _write(self.path, state)
            self._state = state


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _read(path: Path) -> _State:
    """The file's state; an empty one when there is no file yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _State(0, "", {}, [])
    except OSError as error:
        raise NameDictionaryError(f"{path}: cannot read the name dictionary: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise NameDictionaryError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise NameDictionaryError(f"{path}: not a name dictionary of format {FORMAT}")
    version = data.get("version")
    if type(version) is not int or version < 0:
        raise NameDictionaryError(f"{path}: version {version!r} is not a non-negative integer")
    entries: dict[tuple[str, str], NameEntry] = {}
    for index, item in enumerate(data.get("entries") or []):
        entry = NameEntry.from_dict(item, f"{path}: entry {index}")
        if entry.key in entries:
            raise NameDictionaryError(f"{path}: entry {index}: {entry.value!r} ({entry.slot_type}) listed twice")
        entries[entry.key] = entry
    history = data.get("history") or []
    if not isinstance(history, list) or not all(isinstance(item, dict) for item in history):
        raise NameDictionaryError(f"{path}: history is not a list of objects")
    return _State(version, str(data.get("updated_at", "")), entries, history)


def _write(path: Path, state: _State) -> None:
    """Replace the file atomically (temporary file in the same folder, fsync, ``os.replace``), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": state.version, "updated_at": state.updated_at,
            "entries": [entry.to_dict() for _, entry in sorted(state.entries.items())], "history": state.history}
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, ensure_ascii=False, indent=1)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the platform allows it
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@contextlib.contextmanager
def _locked(path: Path, timeout_s: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``<path>.lock`` (waits up to ``timeout_s``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise NameDictionaryError(f"{lock_path}: could not lock the name dictionary within "
                                              f"{timeout_s:.0f} s ({error.strerror})") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
