"""``nlumon routing ...``: check a routing policy file (``streams/routing.py``) before a worker loads it.

A worker refuses to start with a bad policy; ``check`` says why first, with the file and line, and prints the rules
as the worker will apply them. The lead mounts :data:`routing_app` under the project CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

routing_app = typer.Typer(help="Routing policy: the route (fulfil, clarify, confirm, escalate) of each utterance.",
                          no_args_is_help=True)


@routing_app.callback()
def routing_group() -> None:
    """Routing policy: the route (fulfil, clarify, confirm, escalate) of each utterance."""


@routing_app.command("check")
def check_command(
    path: Annotated[Path | None, typer.Argument(
        help="Policy YAML file; default the settings' routing.policy_path.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Settings file (TOML or YAML) to read routing.policy_path from; default $NLUMON_CONFIG.",
    )] = None,
) -> None:
    """Validate a routing policy and print its rules in the order they are tried; exit 1 with file:line if invalid."""
    from streams.routing import PolicyError, load_policy

    if path is None:
        path = _configured_path(config)
        if path is None:
            typer.echo("routing.policy_path is unset: workers publish no route (route '')")
            return
    try:
        policy = load_policy(path)
    except PolicyError as error:
        typer.echo(f"invalid routing policy: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{path}: valid, {len(policy.rules)} rule(s), first match wins, otherwise {policy.default}")
    for number, rule in enumerate(policy.rules, start=1):
        typer.echo(f"{number:>3}. line {rule.line}: {rule.describe()}")
        if rule.description:
            typer.echo(f"     {rule.description}")
    heads = sorted(name for name in policy.features_used() if name.startswith("head."))
    typer.echo(f"features read: {', '.join(sorted(policy.features_used())) or 'none'}")
    if heads:
        typer.echo(f"conditions on {', '.join(heads)} stay false while the serving model has no such head")


def _configured_path(config: Path | None) -> Path | None:
    from nlumon.settings import ConfigFileError, load_settings

    try:
        return load_settings(config).routing.policy_path
    except ConfigFileError as error:
        typer.echo(f"cannot read the settings: {error}", err=True)
        raise typer.Exit(2) from None
