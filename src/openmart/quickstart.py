"""``openmart quickstart``: the whole story on the embedded mart, with nothing else to start.

1. Train a model on data that ships with scikit-learn (the diabetes study: 442 patients; the
   model flags those whose disease will progress strongly within a year, for a care programme —
   the favourable outcome for a patient).
2. Serve it as a real local deployment (the FastAPI single-record service, a subprocess).
3. Bind it, subscribe it with its training data as reference.
4. Send traffic through the capture proxy. Records are drawn from the study (with replacement);
   halfway, the population drifts (higher BMI, shifted s5) and a group bias appears (patients of
   sex 2 arrive with lower s5, so the model flags them less), and the world moves (a share of
   outcomes no longer follows the features, so quality drops).
5. Log feedback (ground truth) for part of the traffic.
6. Enable quality, fairness, drift (and explainability when available) monitors; evaluate after
   each quarter of the traffic; print what breached and why; write the HTML report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd

from openmart.api import Mart, Subscription
from openmart.errors import NotFound

NAME = "diabetes-triage"
BINDING = "quickstart-api"
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
THRESHOLD = 140.0  # disease progression above this: high risk, flagged for the programme


@dataclass
class QuickstartResult:
    subscription: str
    sent: int
    stored: int
    feedback: int
    evaluations: list[Any] = field(default_factory=list)
    report: Path | None = None
    deployment_url: str = ""

    @property
    def final(self) -> Any:
        return self.evaluations[-1]


def study() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame["sex"] = frame["sex"].astype(int).astype(str)  # a category: "1" or "2"
    frame["high_risk"] = (frame["target"] > THRESHOLD).astype(int)
    return frame.drop(columns="target")


def train(frame: pd.DataFrame, path: Path) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [f for f in FEATURES if f != "sex"]
    pre = ColumnTransformer(
        [("sex", OneHotEncoder(handle_unknown="ignore"), ["sex"]), ("num", StandardScaler(), numeric)]
    )
    model = make_pipeline(pre, LogisticRegression(max_iter=2000, C=1.0)).fit(frame[FEATURES], frame["high_risk"])
    joblib.dump(model, path)
    return model


def traffic(frame: pd.DataFrame, n: int, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    """n records drawn from the study; drift, bias and a changed world in the second half."""
    rng = np.random.default_rng(seed)
    rows = frame.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    out = rows[FEATURES].copy()
    truth = rows["high_risk"].to_numpy().copy()
    late = np.arange(n) >= n // 2
    out.loc[late, "bmi"] += 4.5  # the population drifts
    out.loc[late, "s5"] += 0.35
    biased = late & (out["sex"] == "2").to_numpy()
    out.loc[biased, ["bmi", "s5"]] -= [6.0, 1.0]  # a group arrives looking healthier than it is
    flip = late & (rng.random(n) < 0.3)  # the world moves: outcomes stop following the features
    truth[flip] = 1 - truth[flip]
    return out, truth


def _reset(mart: Mart) -> None:
    for name in (NAME,):
        with contextlib.suppress(NotFound):
            mart.subscriptions.remove(name)
    with contextlib.suppress(NotFound):
        mart.bindings.remove(BINDING)


def run(
    mart: Mart,
    *,
    records: int = 2000,
    report: Path | None = None,
    workdir: Path,
    step: Callable[[str, int, int], None] | None = None,
    concurrency: int = 8,
) -> QuickstartResult:
    """Run the story; ``step(description, done, total)`` reports progress."""
    from openmart.deployments.launch import start_fastapi
    from openmart.report import write_report
    from openmart.scoring.proxy import SCORING_ID_HEADER, CaptureProxy

    def say(text: str, done: int = 0, total: int = 0) -> None:
        if step:
            step(text, done, total)

    workdir.mkdir(parents=True, exist_ok=True)
    say("training a model on scikit-learn's diabetes study")
    data = study()
    model_path = workdir / "diabetes-triage.joblib"
    train(data, model_path)
    say("starting the deployment (FastAPI, single-record /predict)")
    deployment = start_fastapi(model_path)
    proxy_server = None
    try:
        _reset(mart)
        mart.bindings.add(BINDING, "custom", {"url": f"{deployment.url}/predict", "mode": "single"})
        sub = mart.subscriptions.add(
            NAME,
            reference=data,
            label="high_risk",
            problem_type="binary",
            binding=BINDING,
            deployment="/predict",
            categorical=["sex"],
            asset_revision="1",
        )
        app = proxy_server = CaptureProxy(sub)
        proxy = f"{app.start_in_thread()}/predict"

        sub.monitors.enable("quality", thresholds=["roc_auc=0.72"], min_records=50)
        sub.monitors.enable(
            "fairness",
            attributes=[{"feature": "sex", "monitored": "2", "reference": "1"}],
            favourable=1,
            min_records=50,
            max_perturbed=100,
        )
        sub.monitors.enable("drift", method="auto", drift_share=0.3, min_records=50)

        requests, truth = traffic(data, records)
        quarter = max(records // 4, 1)
        result = QuickstartResult(NAME, records, 0, 0, deployment_url=deployment.url)
        client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=concurrency))
        sent = 0
        try:
            for q in range(4):
                chunk = requests.iloc[q * quarter : records if q == 3 else (q + 1) * quarter]
                rows = chunk.to_dict(orient="records")

                def send(record: dict[str, Any]) -> str:
                    answer = client.post(proxy, json=record)
                    answer.raise_for_status()
                    return answer.headers[SCORING_ID_HEADER]

                ids = []
                with ThreadPoolExecutor(max_workers=concurrency) as pool:
                    for sid in pool.map(send, rows):
                        ids.append(sid)
                        sent += 1
                        if sent % 50 == 0 or sent == records:
                            say("sending traffic through the capture proxy", sent, records)
                app.capture.flush(60)
                # ground truth arrives for 60% of the records
                labelled = np.arange(len(chunk)) % 5 < 3
                feedback = chunk[labelled].assign(
                    high_risk=truth[chunk.index[labelled]],
                    scoring_id=[i for i, keep in zip(ids, labelled, strict=True) if keep],
                )
                sub.feedback.log(feedback)
                result.feedback += int(labelled.sum())
                say(f"evaluating monitors (quarter {q + 1} of 4)", q + 1, 4)
                result.evaluations.append(sub.evaluate(last=len(chunk)))
        finally:
            client.close()
        result.stored = sub.payload.count()
        if report is not None:
            say("writing the HTML report")
            result.report = write_report(sub, report)
        return result
    finally:
        if proxy_server is not None:
            proxy_server.stop()
        deployment.stop()


def summary_rows(sub: Subscription, evaluation: Any) -> list[dict[str, Any]]:
    rows = []
    for m in evaluation.breaches:
        why = {
            "quality": "the model is less right than its threshold allows",
            "fairness": "one group gets the favourable outcome much less often",
            "drift": "the traffic no longer looks like the training data",
        }.get(m.monitor, "")
        rows.append(
            {
                "monitor": m.monitor,
                "metric": m.metric,
                "feature": m.feature or "",
                "value": "n/a" if m.value is None else f"{m.value:.3f}",
                "limit": ""
                if m.threshold is None
                else f"{'≥' if m.threshold_type == 'lower_limit' else '≤'} {m.threshold:g}",
                "why": why,
            }
        )
    return rows
