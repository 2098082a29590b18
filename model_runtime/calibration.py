"""Temperature scaling of the intent head (Guo et al. 2017), fitted on the dev split. Numpy/scipy only.

>>> rng = np.random.default_rng(0)
>>> labels = rng.integers(0, 5, 2000)
>>> logits = rng.normal(size=(2000, 5)); logits[np.arange(2000), labels] += 2.0
>>> round(fit_temperature(logits * 3.0, labels) / fit_temperature(logits, labels), 1)  # over-confident x3
3.0
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from model_runtime.decoding import log_softmax


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    log_p = log_softmax(np.asarray(logits, dtype=np.float64) / temperature)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T); rows with label < 0 are ignored."""
    labels = np.asarray(labels)
    keep = labels >= 0
    if keep.sum() == 0:
        return 1.0
    logits, labels = np.asarray(logits)[keep], labels[keep]
    # search log T: the NLL is smooth and unimodal in it, and the bounds stay symmetric around T = 1
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
    )
    return float(np.exp(result.x))
