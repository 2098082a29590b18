"""Run one long-lived stream worker (``nlumon worker``), and stop it on time.

On SIGTERM or SIGINT the worker first drains (stores what is buffered and acknowledges its records, within half
of ``stream.shutdown_timeout_s``), then lets Faust leave the group and close. A deadline thread started with the
signal ends the process if that has not happened within ``stream.shutdown_timeout_s``, whatever state it is in
(a wedged broker, an insert that never returns): nothing it had not acknowledged is committed, so the
partition's next owner gets those records again, and the idempotent tables keep one row per utterance.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from nlumon.settings import Settings

log = logging.getLogger(__name__)

EXIT_DEADLINE = 75  # EX_TEMPFAIL: stopped by the deadline, not cleanly; the records are redelivered


def start_deadline(seconds: float, exit_code: int = EXIT_DEADLINE) -> threading.Thread:
    """End the process ``seconds`` from now with ``exit_code`` unless it has exited by then (a daemon thread)."""

    def run() -> None:
        time.sleep(seconds)
        log.error("the worker did not stop within %.0f s; exiting now with code %d (records it did not "
                  "acknowledge are redelivered to the partition's next owner)", seconds, exit_code)
        for handler in logging.getLogger().handlers:
            try:
                handler.flush()
            except Exception:  # the process ends either way
                pass
        os._exit(exit_code)

    thread = threading.Thread(target=run, name="nlumon-shutdown-deadline", daemon=True)
    thread.start()
    return thread


def worker_class() -> type:
    """``faust.Worker`` that drains before stopping and stops within the deadline (faust is imported lazily)."""
    import faust

    class Worker(faust.Worker):
        shutdown_timeout_s: float = 30.0
        _deadline: threading.Thread | None = None

        def _schedule_shutdown(self, signal: Any) -> None:
            if self._deadline is None:
                self._deadline = start_deadline(self.shutdown_timeout_s)
            super()._schedule_shutdown(signal)

        async def _stop_on_signal(self, signal: Any) -> None:
            handle = getattr(self.app, "nlumon", None)
            if handle is not None:
                self.log.info("Signal received: %s; draining before stopping", signal)
                await handle.drain()
            await super()._stop_on_signal(signal)

    return Worker


def run_worker(settings: Settings, *, worker_id: str | None = None, verbose: bool = False) -> None:
    """Block running the Faust worker until SIGTERM/SIGINT; it drains, commits and leaves the group on the way out.

    ``kill -USR1 <pid>`` prints every thread's stack to stderr (for a worker that seems stuck).
    """
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)

    from nlumon.logs import logging_config
    from streams.app import create_app

    app = create_app(settings, worker_id=worker_id)
    worker = worker_class()(
        app, loglevel="debug" if verbose else "info", quiet=True, redirect_stdouts=False,
        logging_config=logging_config(settings.log_format, verbose=verbose),  # else Faust puts its own format in
    )
    worker.shutdown_timeout_s = settings.stream.shutdown_timeout_s
    worker.execute_from_commandline()
