"""The Faust application: topics and agents, built from the settings (no module-level app).

    app = create_app(settings)      # then streams.worker.run_worker(app) or app.main()
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from nlumon.settings import Settings

if TYPE_CHECKING:
    import faust

    from streams.agents import AgentHandle


def create_app(settings: Settings, *, worker_id: str | None = None) -> faust.App:
    """A Faust app for ``settings`` with its topics declared (never auto-created) and agents attached."""
    import faust

    from monitor.metrics import monitor_metrics
    from monitor.service import attach_monitor

    # Faust's data dir (default: ./<app id>-data in the working directory, which the image's user may not write)
    # lives under the run dir; Faust creates only its last folder, and formats the path (braces are escaped)
    datadir = settings.services.run_dir / "faust" / f"{settings.kafka.consumer_group}-data"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.kafka.consumer_group,  # the app id is the consumer group of the workers
        broker=[f"kafka://{server}" for server in settings.kafka.bootstrap_servers.split(",")],
        key_serializer="raw",
        value_serializer="raw",
        topic_allow_declare=False,  # topics are created by `nlumon services up` with their partition counts
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
        broker_commit_interval=1.0,
        web_enabled=False,
        store="memory://",
        datadir=str(datadir).replace("{", "{{").replace("}", "}}"),
        autodiscover=False,
        table_cleanup_interval=60.0,
        producer_acks=-1,
        # a killed worker's partitions move after this, not after Faust's default 60 s; heartbeats run on their own
        # task, so a long ClickHouse outage or a slow batch does not cost the membership (tested)
        broker_session_timeout=settings.kafka.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka.session_timeout_s / 5),
        producer_max_request_size=settings.topics.max_message_bytes,  # = every topic's max.message.bytes
        # On stop, do not wait for every taken record to be acked: the agent drains what it can within
        # stream.shutdown_timeout_s (streams.worker) and the rest is redelivered to the partition's next owner.
        stream_wait_empty=False,
    )
    app.nlumon = attach_all_agents(app, settings, worker_id)  # the drain hook streams.worker calls on SIGTERM
    # a leader-only timer: one worker of the group scores the windows; its counters are on the worker's /metrics
    attach_monitor(app, settings, metrics=monitor_metrics(app.nlumon.registry))
    return app


def attach_all_agents(app: faust.App, settings: Settings, worker_id: str | None) -> AgentHandle:
    """The inference agent and the outcomes agent, with one handle that drains and stops both."""
    from streams.agents import AgentHandle, attach_agents
    from streams.outcomes import attach_outcome_agent

    worker = worker_id or f"{app.conf.id}-{id(app):x}"
    inference = attach_agents(app, settings, worker_id=worker)
    # the counters belong on the one registry the worker serves: the inference agent's
    outcomes = attach_outcome_agent(app, settings, worker=worker, metrics=inference.metrics)

    async def drain() -> None:
        """Both drains at once, each within its own half of ``stream.shutdown_timeout_s``."""
        await asyncio.gather(inference.drain(), outcomes.drain())

    def stop_sink() -> None:
        inference.stop_sink()
        outcomes.stop_sink()

    return AgentHandle(drain=drain, stop_sink=stop_sink, registry=inference.registry, metrics=inference.metrics)
