"""The report, looked at: rendered by Debian's headless Chromium, without script errors, with its charts drawn.

Data: a short replay through the real pipeline into the real ClickHouse (``fill_clickhouse``) in a
time range of our own, plus monitor rows derived from it (``dashboards.testing``). The page must load
with no "Uncaught" error in Chromium's log, its own script must report every chart drawn
(``data-render="ok"`` in the dumped DOM), and the screenshot must be far from blank: a PNG of a blank
page of the same size is compressed to a fraction of the size of one full of charts and text.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dashboards.report import build_report
from dashboards.report.data import clickhouse_executor
from dashboards.testing import write_monitor_rows
from nlumon.schema import connect
from tests.helpers import fill_clickhouse

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WINDOW = (1400, 2400)


def chromium(*args: str, profile: Path, timeout_s: float = 90) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)


def png_size(path: Path) -> tuple[int, int, int]:
    """(width, height, decompressed image bytes) read from the PNG's chunks."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, width, height, idat = 8, 0, 0, b""
    while offset < len(data):
        (length,), kind = struct.unpack(">I", data[offset:offset + 4]), data[offset + 4:offset + 8]
        chunk = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        offset += 12 + length
    return width, height, len(zlib.decompress(idat))


def screenshot(page: Path, out: Path, profile: Path) -> subprocess.CompletedProcess:
    return chromium(f"--screenshot={out}", f"--window-size={WINDOW[0]},{WINDOW[1]}", page.as_uri(), profile=profile)


@pytest.fixture(scope="module")
def report(services, tmp_path_factory) -> Path:
    start = datetime(2022, 1, 1, tzinfo=UTC) + timedelta(hours=uuid.uuid4().int % (360 * 24))
    filled = fill_clickhouse(services, "demo", 900, seed=5, spacing_ms=2000, start=start, malformed_share=0.03)
    write_monitor_rows(lambda: connect(services.clickhouse), filled.first_ts, filled.last_ts + timedelta(seconds=1),
                       120)
    out = tmp_path_factory.mktemp("report") / "report.html"
    client = connect(services.clickhouse)
    try:
        build_report(clickhouse_executor(client), out, start=filled.first_ts - timedelta(minutes=1),
                     end=filled.last_ts + timedelta(minutes=1), environment="e2e")
    finally:
        client.disconnect()
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/bootstrap.sh installs it)")
def test_report_renders_in_chromium_with_every_chart_drawn(report, tmp_path):
    dom = chromium("--dump-dom", report.as_uri(), profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-render="ok"' in dom.stdout, "the page's script did not find every chart drawn"
    assert "Uncaught" not in dom.stderr, dom.stderr[-2000:]

    shot = tmp_path / "report.png"
    result = screenshot(report, shot, tmp_path / "profile-shot")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    assert "Uncaught" not in result.stderr, result.stderr[-2000:]
    width, height, _ = png_size(shot)
    assert (width, height) == WINDOW

    blank_page = tmp_path / "blank.html"
    blank_page.write_text("<!DOCTYPE html><html><body style='background:#0f1217'></body></html>")
    blank = tmp_path / "blank.png"
    screenshot(blank_page, blank, tmp_path / "profile-blank")
    # Same pixel count; only a page full of charts and text compresses this much worse than a blank one.
    assert shot.stat().st_size > 10 * blank.stat().st_size, (shot.stat().st_size, blank.stat().st_size)
