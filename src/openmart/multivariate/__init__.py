"""Multivariate drift (issue #18 part 2): drift in the joint distribution of features, which no
one feature's test sees, following NannyML 0.13 (docs/multivariate-drift.md).

- :mod:`.reconstruction` — PCA data-reconstruction error: fitted on the reference (imputed,
  count-encoded, standardised), a chunk's mean euclidean distance between its records and their
  reconstruction from the principal components; thresholds from the reference's chunks.
- :mod:`.domain_classifier` — a LightGBM classifier told to separate the reference from a chunk;
  its cross-validated AUROC is the drift (0.5: indistinguishable).

Pure functions over frames (no database). The ``multivariate_drift`` monitor
(monitors/multivariate_drift.py) reads the mart and calls them.
"""

from openmart.multivariate.domain_classifier import DomainClassifier
from openmart.multivariate.reconstruction import Reconstruction, ReconstructionError

__all__ = ["DomainClassifier", "Reconstruction", "ReconstructionError"]
