"""Performance without labels (issue #18): estimates of a model's metrics from what it outputs,
before the labels arrive, following NannyML 0.13 (docs/estimation.md).

- :mod:`.cbpe` — confidence-based performance estimation for binary and multiclass classifiers:
  the expected confusion matrix from calibrated probabilities.
- :mod:`.dle` — direct loss estimation for regressors: a LightGBM model of each record's loss.

Pure functions over arrays (no database): fit on the labelled reference, estimate one chunk at a
time. The ``estimated_performance`` monitor (monitors/estimated_performance.py) reads the mart and
calls them.
"""

from openmart.estimation.cbpe import CBPE
from openmart.estimation.common import Estimate
from openmart.estimation.dle import DLE

__all__ = ["CBPE", "DLE", "Estimate"]
