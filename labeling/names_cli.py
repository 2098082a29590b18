"""``nlumon labeling names ...``: review the name dictionary the monitor proposes new names to.

    nlumon labeling names list --status proposed            # what the monitor found, most sessions first
    nlumon labeling names accept imelda "rhiannon price" --by ana --note "new staff, store 12"
    nlumon labeling names reject jordan --slot-type person --by ana --note "the brand"
    nlumon labeling names list --status accepted --json     # what the gazetteer labeling function uses

The file is ``--path``, else ``labeling.names_path`` from the settings when set, else ``<state dir>/names.json``
(see :func:`labeling.names.default_names_path`). It holds names of staff: a roster the store owns (module
docstring of :mod:`labeling.names`). Values are validated where they enter: a value that is not a name (digits,
an e-mail, a phone or card number) is refused with the reason and nothing is written.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated

import typer

from labeling.names import STATUSES, NameDictionary, NameDictionaryError, NameEntry, default_names_path

names_app = typer.Typer(help="Name dictionary: list, accept and reject the names the monitor proposes.",
                        no_args_is_help=True)

PathOption = Annotated[Path | None, typer.Option(
    "--path", help="The name dictionary (JSON); default labeling.names_path, else <state dir>/names.json.")]
ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Settings file (TOML or YAML) that locates the dictionary; default $NLUMON_CONFIG.")]
SlotTypeOption = Annotated[str | None, typer.Option(
    "--slot-type", help="Only this slot type (accept/reject: every slot type the value is listed under; a new "
    "value is added as person).")]
ByOption = Annotated[str | None, typer.Option("--by", help="Who decides (default: the login name).")]
NoteOption = Annotated[str, typer.Option("--note", help="Why (kept with the entry and in its history).")]
IfVersionOption = Annotated[int | None, typer.Option(
    "--if-version", help="Refuse the change unless the dictionary is still at this version (compare-and-swap).")]


@names_app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option("--status", help=f"Only entries of this status: {', '.join(STATUSES)}.")]
    = None,
    slot_type: SlotTypeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
    path: PathOption = None,
    config: ConfigOption = None,
) -> None:
    """List the dictionary's entries (proposed ones with the most sessions first)."""
    names = _load(path, config)
    try:
        entries = names.entries(status, slot_type)
    except NameDictionaryError as error:
        _fail(str(error))
    entries.sort(key=lambda e: (STATUSES.index(e.status), -e.sessions, e.slot_type, e.value))
    if as_json:
        typer.echo(json.dumps({"path": str(names.path), "version": names.version,
                               "entries": [entry.to_dict() for entry in entries]}, ensure_ascii=False, indent=1))
        return
    typer.echo(f"{names.path} (version {names.version}): {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
    if entries:
        typer.echo(_table(entries))


@names_app.command("accept")
def accept_command(
    values: Annotated[list[str], typer.Argument(help="Names to accept (quote a name of several words).")],
    slot_type: SlotTypeOption = None, by: ByOption = None, note: NoteOption = "",
    if_version: IfVersionOption = None, path: PathOption = None, config: ConfigOption = None,
) -> None:
    """Accept names: the gazetteer labeling function uses them from now on."""
    _decide("accept", values, slot_type, by, note, if_version, path, config)


@names_app.command("reject")
def reject_command(
    values: Annotated[list[str], typer.Argument(help="Names to reject (quote a name of several words).")],
    slot_type: SlotTypeOption = None, by: ByOption = None, note: NoteOption = "",
    if_version: IfVersionOption = None, path: PathOption = None, config: ConfigOption = None,
) -> None:
    """Reject names: never used, and never proposed again by the monitor."""
    _decide("reject", values, slot_type, by, note, if_version, path, config)


def _decide(action: str, values: list[str], slot_type: str | None, by: str | None, note: str,
            if_version: int | None, path: Path | None, config: Path | None) -> None:
    names = _load(path, config)
    try:
        decide = names.accept if action == "accept" else names.reject
        decide(values, slot_type=slot_type, by=by or _login(), note=note, expected_version=if_version)
    except NameDictionaryError as error:
        _fail(str(error))
    typer.echo(f"{action}ed {len(values)} value(s); {names.path} is at version {names.version}")


def _load(path: Path | None, config: Path | None) -> NameDictionary:
    if path is None:
        from nlumon.settings import ConfigFileError, load_settings

        try:
            path = default_names_path(load_settings(config))
        except (ConfigFileError, ValueError) as error:
            _fail(str(error))
    try:
        return NameDictionary.load(path)
    except NameDictionaryError as error:
        _fail(str(error))
    raise AssertionError("unreachable")  # _fail exits


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # an arbitrary uid in a container has no passwd entry
        return "cli"


def _table(entries: list[NameEntry]) -> str:
    header = ("value", "slot_type", "status", "sessions", "first_seen", "last_seen", "decided_by", "note")
    rows = [header] + [(e.value, e.slot_type, e.status, str(e.sessions), e.first_seen[:16], e.last_seen[:16],
                        e.decided_by, e.note) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _fail(message: str) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(1)
