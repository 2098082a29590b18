"""Alert rules over metric points, their lifecycle, and signed webhooks that are never lost.

The package does not know how a metric was computed: its input is :class:`alerts.events.MetricPoint`.
Modules: ``events`` (types), ``rules`` (YAML rules), ``engine`` (firing/cooldown/resolved),
``store`` (SQLite file shared by state and outbox), ``outbox`` (durable queue), ``sender`` (delivery
loop with retries), ``webhooks`` (Standard Webhooks signing/verification, standard library only),
``payloads`` (standard and Slack bodies), ``receivers``, ``testing`` (a real local receiver), ``cli``.
"""
