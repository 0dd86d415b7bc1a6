"""Loading a model file and answering for it, shared by the reference deployments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd


class ServedModel:
    """A fitted scikit-learn estimator (or pipeline) loaded from a joblib file."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.features: list[str] | None = (
            list(estimator.feature_names_in_) if hasattr(estimator, "feature_names_in_") else None
        )
        self.classes = list(getattr(estimator, "classes_", [])) or None

    @classmethod
    def load(cls, path: str | Path) -> ServedModel:
        return cls(joblib.load(path))

    def frame(self, records: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
        frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(records)
        if self.features is not None:
            missing = [c for c in self.features if c not in frame.columns]
            if missing:
                raise ValueError(f"missing feature(s) {missing}")
            frame = frame.loc[:, self.features]
        return frame

    def predict(self, records: list[dict[str, Any]] | pd.DataFrame) -> dict[str, list[Any]]:
        """``{"predictions": [...], "probabilities": [...]}``: for two classes the positive
        class's probability, for more one list per record."""
        frame = self.frame(records)
        if hasattr(self.estimator, "predict_proba") and self.classes is not None:
            # one pass through the model: the predicted class is the most probable one (what
            # predict() does for these estimators), which halves the work per request
            proba = self.estimator.predict_proba(frame)
            preds = np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
            return {
                "predictions": [_py(v) for v in preds],
                "probabilities": proba[:, 1].tolist() if proba.shape[1] == 2 else proba.tolist(),
            }
        return {"predictions": [_py(v) for v in self.estimator.predict(frame)]}


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
