"""An Evidently HTML report for a window that drifted (for people; never on the hot path).

The only file a detector writes, and only to the path it is given. Columns are described with an explicit
``DataDefinition``; list columns become plain ones (``slot_count``) and the embedding sketch is left out
(Evidently's embedding widgets compute a t-SNE: 6–25 s a window).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from detectors.base import EmptyWindowError, InvalidInputError
from detectors.drift import NUMERIC_FEATURES

CATEGORICAL_FEATURES = ("intent", "assistant")


def report_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The columns the report shows: numeric features, categorical ones and ``slot_count``."""
    columns = [name for name in (*NUMERIC_FEATURES, "asr_confidence", *CATEGORICAL_FEATURES) if name in rows.columns]
    frame = rows[columns].copy()
    if "slot_types" in rows.columns:
        frame["slot_count"] = rows["slot_types"].map(len)
    return frame.reset_index(drop=True)


def save_evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    path: str | Path,
    num_method: str = "wasserstein",
    cat_method: str = "jensenshannon",
) -> Path:
    """Write Evidently's data drift report (``DataDriftPreset``) comparing ``current`` with ``reference``.

    The methods are set explicitly (Evidently's default switches test at 1,000 rows); the verdicts in the
    HTML use Evidently's thresholds, so the calibrated :class:`~detectors.base.DetectionResult` list stays the
    source of truth for alerts. Returns the path written.
    """
    if len(reference) == 0 or len(current) == 0:
        raise EmptyWindowError("an Evidently report needs reference and current rows")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # no telemetry from evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference_frame, current_frame = report_frame(reference), report_frame(current)
    if list(reference_frame.columns) != list(current_frame.columns):
        raise InvalidInputError(
            f"reference and current differ in columns: {list(reference_frame.columns)} vs {list(current_frame.columns)}"
        )
    categorical = [name for name in CATEGORICAL_FEATURES if name in reference_frame.columns]
    numerical = [name for name in reference_frame.columns if name not in categorical]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset(num_method=num_method, cat_method=cat_method)]).run(
        Dataset.from_pandas(current_frame, data_definition=definition),
        Dataset.from_pandas(reference_frame, data_definition=definition),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path
