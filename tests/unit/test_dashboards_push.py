"""`nlumon dashboards push` against a recording stand-in for Grafana's HTTP API (no Grafana runs here).

The stand-in keeps the little state Grafana would (datasources by name, folders, dashboard versions by
uid), so the test sees what a first push and a second push send.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from dashboards.boards import all_dashboards
from dashboards.cli import app
from dashboards.provisioning import dashboard_documents
from dashboards.push import PushError, grafana_client, parse_datasource_url, push


class FakeGrafana(BaseHTTPRequestHandler):
    state: dict

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        state = self.state
        state["requests"].append((self.command, self.path, body, self.headers.get("Authorization")))
        if self.command == "GET" and self.path.startswith("/api/datasources/name/"):
            name = self.path.rsplit("/", 1)[1]
            if name in state["datasources"]:
                return self._answer(200, state["datasources"][name])
            return self._answer(404, {"message": "Data source not found"})
        if self.command == "POST" and self.path == "/api/datasources":
            state["datasources"][body["name"]] = {**body, "id": 7}
            return self._answer(200, {"id": 7, "message": "Datasource added"})
        if self.command == "PUT" and self.path.startswith("/api/datasources/"):
            state["datasources"][body["name"]] = body
            return self._answer(200, {"message": "Datasource updated"})
        if self.command == "GET" and self.path.startswith("/api/folders/"):
            uid = self.path.rsplit("/", 1)[1]
            return self._answer(200, {"uid": uid}) if uid in state["folders"] else self._answer(404, {"message": "nf"})
        if self.command == "POST" and self.path == "/api/folders":
            state["folders"].add(body["uid"])
            return self._answer(200, {"uid": body["uid"]})
        if self.command == "POST" and self.path == "/api/dashboards/db":
            uid = body["dashboard"]["uid"]
            state["versions"][uid] = state["versions"].get(uid, 0) + 1
            return self._answer(200, {"uid": uid, "status": "success", "version": state["versions"][uid]})
        return self._answer(404, {"message": f"unexpected {self.command} {self.path}"})

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture
def grafana():
    state = {"requests": [], "datasources": {}, "folders": set(), "versions": {}}
    handler = type("Handler", (FakeGrafana,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def test_first_push_creates_then_second_push_updates_in_place(grafana):
    url, state = grafana
    result = CliRunner().invoke(app, ["push", "--url", url, "--token", "glsa_test", "--datasource-url",
                                      "clickhouse:9000"])
    assert result.exit_code == 0, result.output
    first = [(method, path) for method, path, _, _ in state["requests"]]
    assert first[:4] == [("GET", "/api/datasources/name/nlumon-clickhouse"), ("POST", "/api/datasources"),
                         ("GET", "/api/folders/nlumon"), ("POST", "/api/folders")]
    posts = [body for method, path, body, _ in state["requests"] if path == "/api/dashboards/db"]
    assert sorted(b["dashboard"]["uid"] for b in posts) == sorted(d["uid"] for d in dashboard_documents().values())
    assert all(b["overwrite"] is True and b["dashboard"]["id"] is None and b["folderUid"] == "nlumon" for b in posts)
    assert all(auth == "Bearer glsa_test" for *_, auth in state["requests"])
    created = state["datasources"]["nlumon-clickhouse"]
    assert created["type"] == "grafana-clickhouse-datasource" and created["jsonData"]["port"] == 9000

    state["requests"].clear()
    again = CliRunner().invoke(app, ["push", "--url", url, "--token", "admin:admin", "--datasource-url",
                                     "http://ch:8123"])
    assert again.exit_code == 0, again.output
    second = [(method, path) for method, path, _, _ in state["requests"]]
    assert ("PUT", "/api/datasources/7") in second and ("POST", "/api/datasources") not in second
    assert ("POST", "/api/folders") not in second
    assert set(state["versions"].values()) == {2}, "same uid twice: one dashboard, a new version"
    assert state["datasources"]["nlumon-clickhouse"]["jsonData"]["protocol"] == "http"
    assert state["requests"][0][3].startswith("Basic ")
    assert "version 2" in again.output


def test_push_without_datasource_url_leaves_the_datasource_alone(grafana):
    url, state = grafana
    result = push(grafana_client(url, "t"), None)
    assert result.datasource == "skipped" and len(result.dashboards) == len(all_dashboards())
    assert not any("/datasources" in path for _, path, _, _ in state["requests"])


def test_unreachable_or_refusing_grafana_is_a_push_error(grafana):
    with pytest.raises(PushError, match="unreachable"):
        push(grafana_client("http://127.0.0.1:9", "t", timeout_s=2), None)
    with pytest.raises(PushError):
        grafana_client("localhost:3000", "t")


def test_datasource_url_forms():
    assert parse_datasource_url("clickhouse") == ("native", "clickhouse", 9000)
    assert parse_datasource_url("https://ch.example:8443") == ("http", "ch.example", 8443)
