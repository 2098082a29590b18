"""A real worker with more than the champion: route decisions on the topic, a shadow challenger, an experiment
started and stopped while traffic flows (the worker picks both up from the experiment file)."""

from __future__ import annotations

import json

import pytest

from experiments.definition import Arm, Experiment, save_experiment
from model_runtime.package import load_package
from nlumon.schema import connect
from streams.replay import produce
from streams.routing import ROUTES
from streams.scenarios import scenario_events
from tests.integration.workers import Worker, full_log, isolated, stored_ids, topic_messages, wait_until

pytestmark = pytest.mark.integration


def send(settings, seed: int, count: int, prefix: str) -> list[str]:
    """``count`` stable-scenario events with ids (and sessions) that start with ``prefix``; returns the ids."""
    events = []
    for event in scenario_events("stable", count, seed=seed):
        payload = json.loads(event.value)
        payload["id"] = f"{prefix}{payload['id']}"
        payload["session_id"] = f"{prefix}{payload['session_id']}"
        events.append((payload["session_id"].encode(), json.dumps(payload).encode()))
    produce(settings, iter(events))
    return [json.loads(value)["id"] for _, value in events]


def rows(settings, sql: str, ids: list[str]) -> list[tuple]:
    client = connect(settings.clickhouse)
    try:
        return client.execute(sql, {"ids": tuple(ids)})
    finally:
        client.disconnect()


def test_shadow_and_an_experiment_started_and_stopped_under_traffic(services, unique, tmp_path, quick_model):
    from model_runtime.testing import cached_tiny_package

    challenger = load_package(cached_tiny_package())
    champion = load_package(quick_model)
    experiment_path = tmp_path / "experiment.json"
    settings = isolated(services, unique, model={"package_path": quick_model},
                        shadow={"package_path": challenger.path, "share": 1.0},
                        experiments={"path": experiment_path, "poll_s": 1.0})
    seed = int(unique[:6], 16)
    worker = Worker(settings, "lineup", tmp_path)
    try:
        wait_until(lambda: "shadow challenger" in worker.output(), 180, "the shadow challenger", (worker,))
        before = send(settings, seed, 200, "a-")
        wait_until(lambda: min(stored_ids(settings, before).values()) == 1, 120, "phase 1 rows", (worker,))
        wait_until(lambda: min(stored_ids(settings, before, "shadow_predictions").values()) == 1, 60,
                   "phase 1 shadow rows", (worker,))

        experiment = Experiment(name=f"ab-{unique[:8]}", arms=[
            Arm(name="control", package_path=quick_model, share=0.5),
            Arm(name="treatment", package_path=challenger.path, share=0.5)])
        save_experiment(experiment_path, experiment)
        wait_until(lambda: f"experiment {experiment.name} running" in full_log(worker), 60, "the experiment",
                   (worker,))
        during = send(settings, seed + 1, 300, "b-")
        wait_until(lambda: min(stored_ids(settings, during).values()) == 1, 120, "phase 2 rows", (worker,))

        stops = full_log(worker).count("no experiment running")  # one at the start, with the shadow
        save_experiment(experiment_path, experiment.model_copy(update={"status": "stopped"}))
        wait_until(lambda: full_log(worker).count("no experiment running") > stops, 60, "the stop", (worker,))
        after = send(settings, seed + 2, 100, "c-")
        wait_until(lambda: min(stored_ids(settings, after).values()) == 1, 120, "phase 3 rows", (worker,))
    finally:
        worker.stop()

    sql = "SELECT id, session_id, model_version, route, experiment, arm FROM predictions FINAL WHERE id IN %(ids)s"
    first = rows(settings, sql, before)
    assert {r[2] for r in first} == {champion.version} and {r[4] for r in first} == {""}
    assert {r[3] for r in first} <= set(ROUTES) and len({r[3] for r in first}) >= 1

    shadow = rows(settings, "SELECT id, model_version, champion_version, intent, champion_intent, intent_agrees "
                            "FROM shadow_predictions FINAL WHERE id IN %(ids)s", before)
    assert len(shadow) == len(before)
    assert {(r[1], r[2]) for r in shadow} == {(challenger.version, champion.version)}
    assert all(r[5] == int(r[3] == r[4]) for r in shadow)

    second = rows(settings, sql, during)
    assert {r[4] for r in second} == {experiment.name}
    for _, session, version, _, _, arm in second:
        assert arm == experiment.arm_of(session)
        assert version == (champion.version if arm == "control" else challenger.version)
    assert {r[5] for r in second} == {"control", "treatment"}

    third = rows(settings, sql, after)
    assert {r[4] for r in third} == {""} and {r[2] for r in third} == {champion.version}

    published = [json.loads(m.value) for m in topic_messages(settings, settings.topics.predictions)]
    routes = {p["id"]: p["route"] for p in published}
    assert set(before) | set(during) | set(after) <= set(routes)
    assert {routes[i] for i in before} <= set(ROUTES)
    assert all(p["arm"] for p in published if p["id"] in set(during))
