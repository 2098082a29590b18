"""The labeling queue's logic: which predictions deserve a human look, in what order, within a budget.

Pure functions over prediction rows (the ClickHouse ``predictions`` columns as a mapping); the lead
wires the I/O (Kafka ``labeling-queue``, ClickHouse ``labeling_queue``). Modules: ``items`` (types,
text normalisation, dedup), ``flags`` (reasons and priority), ``budget`` (daily stratified selection),
``label_studio`` (export pre-annotated tasks, import annotations as training examples), ``cli``.
"""
