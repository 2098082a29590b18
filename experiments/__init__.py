"""Session A/B experiments: definition and sticky assignment (``definition``), the sequential test
(``stats``), the per-arm report from ClickHouse (``report``) and ``nlumon experiment`` (``cli``).
See docs/experiments.md."""
