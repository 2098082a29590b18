"""Every command and group answers --help (the CLI is the user's first contact)."""

import pytest
import typer
from typer.testing import CliRunner

from nlumon.cli import app


def command_paths(group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path below a (typer) click group; typer vendors click, so groups are duck-typed."""
    paths = [prefix]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


ROOT = typer.main.get_command(app)
PATHS = command_paths(ROOT)


def test_the_cli_has_the_foundation_commands():
    assert {("services", "up"), ("services", "down"), ("services", "status"), ("demo",), ("worker",),
            ("replay",)} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "nlumon")
def test_help_works_for(path: tuple[str, ...]):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_a_bad_config_file_exits_2_with_a_message(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("[stream]\nmax_batch = -1\n")
    result = CliRunner().invoke(app, ["services", "status", "--config", str(bad)])
    assert result.exit_code == 2
    assert "x.toml" in result.output


def test_log_format_json_gives_one_object_per_line(capsys):
    import json
    import logging

    from nlumon.logs import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("kafka").level
    try:
        setup_logging("json")
        logging.getLogger("streams.agents").warning("dead-lettered %s", "x", extra={"reason": "text is empty"})
        logging.getLogger("kafka.conn").info("connecting")  # a noisy library: WARNING and up only
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:  # pytest's own handlers back, not one bound to this test's captured stderr
        root.handlers[:], level, kafka_level = saved
        root.setLevel(level)
        logging.getLogger("kafka").setLevel(kafka_level)
    assert [(line["logger"], line["message"], line["reason"]) for line in lines] == [
        ("streams.agents", "dead-lettered x", "text is empty")]
    assert lines[0]["level"] == "WARNING" and lines[0]["ts"].endswith("+00:00")
