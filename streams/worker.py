"""Run one long-lived stream worker (``nlumon worker``)."""

from __future__ import annotations

from nlumon.settings import Settings


def run_worker(settings: Settings, *, worker_id: str | None = None, verbose: bool = False) -> None:
    """Block running the Faust worker until SIGTERM/SIGINT; it flushes and commits on the way out.

    ``kill -USR1 <pid>`` prints every thread's stack to stderr (for a worker that seems stuck).
    """
    import faulthandler
    import signal

    import faust

    faulthandler.register(signal.SIGUSR1, all_threads=True)

    from nlumon.logs import logging_config
    from streams.app import create_app

    app = create_app(settings, worker_id=worker_id)
    faust.Worker(
        app, loglevel="debug" if verbose else "info", quiet=True, redirect_stdouts=False,
        logging_config=logging_config(settings.log_format, verbose=verbose),  # else Faust puts its own format in
    ).execute_from_commandline()
