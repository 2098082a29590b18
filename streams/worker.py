"""Run one long-lived stream worker (``nlumon worker``)."""

from __future__ import annotations

from nlumon.settings import Settings


def run_worker(settings: Settings, *, worker_id: str | None = None, loglevel: str = "info") -> None:
    """Block running the Faust worker until SIGTERM/SIGINT; it flushes and commits on the way out.

    ``kill -USR1 <pid>`` prints every thread's stack to stderr (for a worker that seems stuck).
    """
    import faulthandler
    import signal

    import faust

    faulthandler.register(signal.SIGUSR1, all_threads=True)

    from streams.app import create_app

    app = create_app(settings, worker_id=worker_id)
    faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()
