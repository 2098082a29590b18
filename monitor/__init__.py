"""The windowed monitor job: closed windows in; scores, alerts and labeling items out.

- :mod:`monitor.job` — which windows are due, scoring one window, storing the results (the commit point).
- :mod:`monitor.storage` — the ClickHouse reads and writes of the job (SQL only).
- :mod:`monitor.reference` — what a window is compared with: the model package's held-out rows, a fixed
  time range, or a rolling history.
- :mod:`monitor.alerting` — window outcomes to metric points, the alert engine and the webhook outbox.
- :mod:`monitor.labeling_sink` — window outcomes to the labeling queue (ClickHouse and Kafka).
- :mod:`monitor.service` — the wiring: one monitor per app, run on the Faust leader or by ``nlumon monitor``.
- :mod:`monitor.cli` — ``nlumon monitor run-once|run``.

It reads what the worker (:mod:`streams`) stored and never runs inside the worker's batch path. Imports
flow one way: ``monitor`` → ``detectors``, ``alerts``, ``labeling``, ``model_runtime``, ``nlumon``.
"""
