"""Weak-supervision annotation of store logs: labeling functions, aggregation, agreement, ambiguity routing."""
