"""Runs inside NannyML's own environment (``nannyml_env.py``), never in openmart's.

python nannyml_oracle.py datasets OUT BINARY_CHUNK MULTICLASS_CHUNK REGRESSION_CHUNK
    NannyML's shipped synthetic datasets (binary work-from-home, multiclass credit card, car price)
    as parquet (``<name>_reference``, ``<name>_analysis`` with its targets joined back by id), and
    NannyML's CBPE / DLE results per chunk, reference and analysis periods (``<name>_results``: one
    row per chunk, columns ``<metric>__<field>``: value, sampling_error, realized, bands, thresholds).

python nannyml_oracle.py cbpe-bench REFERENCE ANALYSIS CHUNK OUT_JSON
    NannyML's binary CBPE (roc_auc, accuracy, precision, recall, f1) fitted on REFERENCE and run
    over ANALYSIS (parquet: y_true, y_pred, y_pred_proba), timed; the seconds and the estimates to OUT_JSON.

python nannyml_oracle.py reconstruction OUT CHUNK
    NannyML's car loan dataset (``car_loan_reference``/``car_loan_analysis``: its seven features) and
    NannyML's DataReconstructionDriftCalculator results per chunk, both periods, all defaults but the chunk
    size (``car_loan_reconstruction``, with the PCA's component count); the same on the data-quality
    variant, which has missing values (``car_loan_dq_*``); seconds in ``reconstruction_timings.json``.

python nannyml_oracle.py domain-classifier OUT CHUNK
    The car loan dataset and NannyML's DomainClassifierCalculator results per chunk, both periods, all
    defaults but the chunk size (``car_loan_classifier``); seconds in ``classifier_timings.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

warnings.filterwarnings("ignore")
# NannyML sends usage analytics unless told not to; the oracle must not talk to the network
os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
import nannyml as nml  # noqa: E402

BINARY_METRICS = ["roc_auc", "accuracy", "precision", "recall", "f1"]
REGRESSION_METRICS = ["mae", "mse"]


def flat(result) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    df = result.to_df()
    df.columns = [f"{a}__{b}" for a, b in df.columns]
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].astype(str)
    return df.reset_index(drop=True)


def write(out: Path, name: str, reference: pd.DataFrame, analysis: pd.DataFrame, result) -> None:  # type: ignore[no-untyped-def]
    reference.to_parquet(out / f"{name}_reference.parquet", index=False)
    analysis.to_parquet(out / f"{name}_analysis.parquet", index=False)
    flat(result).to_parquet(out / f"{name}_results.parquet", index=False)


def datasets(out: Path, binary_chunk: int, multiclass_chunk: int, regression_chunk: int) -> None:
    reference, analysis, targets = nml.load_synthetic_binary_classification_dataset()
    analysis = analysis.merge(targets, on="id")
    cbpe = nml.CBPE(
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
        y_true="work_home_actual",
        metrics=BINARY_METRICS,
        chunk_size=binary_chunk,
        problem_type="classification_binary",
    )
    cbpe.fit(reference)
    write(out, "binary", reference, analysis, cbpe.estimate(analysis))
    (out / "binary_calibrated.json").write_text(json.dumps({"needs_calibration": bool(cbpe.needs_calibration)}))

    reference, analysis, targets = nml.load_synthetic_multiclass_classification_dataset()
    analysis = analysis.merge(targets, on="id")
    classes = ["prepaid_card", "highstreet_card", "upmarket_card"]
    cbpe = nml.CBPE(
        y_pred_proba={c: f"y_pred_proba_{c}" for c in classes},
        y_pred="y_pred",
        y_true="y_true",
        metrics=BINARY_METRICS,
        chunk_size=multiclass_chunk,
        problem_type="classification_multiclass",
    )
    cbpe.fit(reference)
    write(out, "multiclass", reference, analysis, cbpe.estimate(analysis))

    reference, analysis, targets = nml.load_synthetic_car_price_dataset()
    analysis = analysis.merge(targets, on="id")
    features = ["car_age", "km_driven", "price_new", "accident_count", "door_count", "fuel", "transmission"]
    dle = nml.DLE(
        feature_column_names=features,
        y_pred="y_pred",
        y_true="y_true",
        metrics=REGRESSION_METRICS,
        chunk_size=regression_chunk,
    )
    dle.fit(reference)
    write(out, "regression", reference, analysis, dle.estimate(analysis))


CAR_LOAN_FEATURES = [
    "car_value",
    "salary_range",
    "debt_to_income_ratio",
    "loan_length",
    "repaid_loan_on_prev_car",
    "size_of_downpayment",
    "driver_tenure",
]


def _car_loan(out: Path, name: str, load) -> tuple[pd.DataFrame, pd.DataFrame]:  # type: ignore[no-untyped-def]
    reference, analysis, _ = load()
    reference, analysis = reference[CAR_LOAN_FEATURES], analysis[CAR_LOAN_FEATURES]
    reference.to_parquet(out / f"{name}_reference.parquet", index=False)
    analysis.to_parquet(out / f"{name}_analysis.parquet", index=False)
    return reference, analysis


def reconstruction(out: Path, chunk: int) -> None:
    timings = {}
    for name, load in (
        ("car_loan", nml.load_synthetic_car_loan_dataset),
        ("car_loan_dq", nml.load_synthetic_car_loan_data_quality_dataset),
    ):
        reference, analysis = _car_loan(out, name, load)
        started = time.perf_counter()
        calc = nml.DataReconstructionDriftCalculator(column_names=CAR_LOAN_FEATURES, chunk_size=chunk)
        calc.fit(reference)
        result = calc.calculate(analysis)
        timings[name] = time.perf_counter() - started
        frame = flat(result)
        frame["n_components"] = int(calc._pca.n_components_)
        frame.to_parquet(out / f"{name}_reconstruction.parquet", index=False)
    (out / "reconstruction_timings.json").write_text(json.dumps(timings))


def domain_classifier(out: Path, chunk: int) -> None:
    reference, analysis = _car_loan(out, "car_loan", nml.load_synthetic_car_loan_dataset)
    started = time.perf_counter()
    calc = nml.DomainClassifierCalculator(feature_column_names=CAR_LOAN_FEATURES, chunk_size=chunk)
    calc.fit(reference)
    result = calc.calculate(analysis)
    seconds = time.perf_counter() - started
    flat(result).to_parquet(out / "car_loan_classifier.parquet", index=False)
    (out / "classifier_timings.json").write_text(json.dumps({"car_loan": seconds}))


def cbpe_bench(reference: Path, analysis: Path, chunk: int, out: Path) -> None:
    ref = pd.read_parquet(reference)
    ana = pd.read_parquet(analysis)
    started = time.perf_counter()
    cbpe = nml.CBPE(
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
        y_true="y_true",
        metrics=BINARY_METRICS,
        chunk_size=chunk,
        problem_type="classification_binary",
    )
    cbpe.fit(ref)
    fitted = time.perf_counter()
    result = cbpe.estimate(ana)
    done = time.perf_counter()
    df = result.filter(period="analysis").to_df()
    estimates = {m: df[(m, "value")].astype(float).tolist() for m in BINARY_METRICS}
    out.write_text(
        json.dumps({"fit_s": fitted - started, "estimate_s": done - fitted, "seconds": done - started, **estimates})
    )


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "datasets":
        datasets(Path(args[0]), int(args[1]), int(args[2]), int(args[3]))
    elif command == "cbpe-bench":
        cbpe_bench(Path(args[0]), Path(args[1]), int(args[2]), Path(args[3]))
    elif command == "reconstruction":
        reconstruction(Path(args[0]), int(args[1]))
    elif command == "domain-classifier":
        domain_classifier(Path(args[0]), int(args[1]))
    else:
        raise SystemExit(f"unknown command {command!r}")
