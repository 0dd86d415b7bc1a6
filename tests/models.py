"""Small real models for tests: trained here, saved as joblib files the deployments load."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def credit_data(n: int = 800, seed: int = 0) -> pd.DataFrame:
    """A credit-shaped table whose labels depend on income, debt and (unfairly) sex."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], n)
    income = rng.normal(50, 15, n)
    debt = rng.normal(20, 8, n)
    logit = 0.08 * (income - 50) - 0.1 * (debt - 20) - 0.8 * (sex == "female") + 0.4
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"sex": sex, "income": income, "debt": debt, "label": label})


def train_credit(path: Path, data: pd.DataFrame | None = None) -> tuple[Path, object, pd.DataFrame]:
    data = credit_data() if data is None else data
    pre = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), ["sex"]), ("num", StandardScaler(), ["income", "debt"])]
    )
    model = make_pipeline(pre, LogisticRegression(max_iter=1000)).fit(data[["sex", "income", "debt"]], data["label"])
    joblib.dump(model, path)
    return path, model, data
