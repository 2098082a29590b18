"""The Faust application: topics and agents, built from the settings (no module-level app).

    app = create_app(settings)      # then streams.worker.run_worker(app) or app.main()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nlumon.settings import Settings

if TYPE_CHECKING:
    import faust


def create_app(settings: Settings, *, worker_id: str | None = None) -> faust.App:
    """A Faust app for ``settings`` with its topics declared (never auto-created) and agents attached."""
    import faust

    from streams.agents import attach_agents
    from monitor.service import attach_monitor

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
        autodiscover=False,
        table_cleanup_interval=60.0,
        producer_acks=-1,
    )
    attach_agents(app, settings, worker_id=worker_id)
    attach_monitor(app, settings)  # a leader-only timer: one worker of the group scores the windows
    return app
