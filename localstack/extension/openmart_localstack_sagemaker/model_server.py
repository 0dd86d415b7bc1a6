"""The SageMaker inference container contract, for a model artifact unpacked in a directory.

    python -m openmart_localstack_sagemaker.model_server --model-dir DIR --port P

- ``GET /ping`` answers 200 when the model is loaded.
- ``POST /invocations``: ``text/csv`` (rows of feature values, no header) or
  ``application/json`` (``{"instances": [[...], ...]}``, ``{"instances": [{"features": [...]}]}``
  or a plain list of rows). The answer follows ``Accept``: ``application/json`` (default) gives
  ``{"predictions": [{"predicted_label": ..., "score": ...}, ...]}`` (the shape of SageMaker's
  built-in linear learner; ``score`` is the positive class's probability, or the class
  probabilities for more than two classes); ``text/csv`` gives one ``predicted_label,score`` line
  per row (just the prediction when the model has no probabilities).

Artifacts: ``model.joblib`` (any scikit-learn estimator or pipeline fed a numeric matrix) or
``xgboost-model`` (an XGBoost Booster saved with ``save_model``; ``binary:logistic`` outputs a
probability and the label is ``score > 0.5``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np


class Model:
    def __init__(self, model_dir: Path) -> None:
        if (model_dir / "model.joblib").exists():
            import joblib

            self.kind = "sklearn"
            self.estimator = joblib.load(model_dir / "model.joblib")
        elif (model_dir / "xgboost-model").exists():
            import xgboost

            self.kind = "xgboost"
            self.booster = xgboost.Booster()
            self.booster.load_model(str(model_dir / "xgboost-model"))
        else:
            raise FileNotFoundError(f"no model.joblib or xgboost-model in {model_dir}")

    def predict(self, rows: np.ndarray) -> list[dict[str, Any]]:
        if self.kind == "xgboost":
            import xgboost

            scores = self.booster.predict(xgboost.DMatrix(rows))
            if scores.ndim == 1:
                return [{"predicted_label": int(s > 0.5), "score": float(s)} for s in scores]
            return [{"predicted_label": int(np.argmax(s)), "score": s.tolist()} for s in scores]
        labels = self.estimator.predict(rows)
        out = [{"predicted_label": _py(v)} for v in labels]
        if hasattr(self.estimator, "predict_proba"):
            proba = self.estimator.predict_proba(rows)
            for o, p in zip(out, proba, strict=True):
                o["score"] = float(p[1]) if len(p) == 2 else p.tolist()
        return out


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def parse(body: bytes, content_type: str) -> np.ndarray:
    if content_type.startswith("text/csv"):
        rows = [[float(x) for x in r] for r in csv.reader(io.StringIO(body.decode())) if r]
        return np.asarray(rows, dtype=float)
    data = json.loads(body)
    if isinstance(data, dict):
        data = data.get("instances", data.get("features"))
    rows = [r["features"] if isinstance(r, dict) else r for r in data]
    return np.asarray(rows, dtype=float).reshape(len(rows), -1)


def render(predictions: list[dict[str, Any]], accept: str) -> tuple[bytes, str]:
    if accept.startswith("text/csv"):
        lines = []
        for p in predictions:
            score = p.get("score")
            lines.append(f"{p['predicted_label']}" + (f",{score}" if isinstance(score, float) else ""))
        return ("\n".join(lines) + "\n").encode(), "text/csv"
    return json.dumps({"predictions": predictions}).encode(), "application/json"


def serve(model_dir: Path, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    model = Model(model_dir)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/ping":
                self._send(200, b"", "text/plain")
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/invocations":
                self._send(404, b"not found", "text/plain")
                return
            try:
                rows = parse(body, self.headers.get("Content-Type", "text/csv"))
                out, ctype = render(model.predict(rows), self.headers.get("Accept") or "application/json")
            except Exception as exc:  # the model's own failure: SageMaker's ModelError carries it
                self._send(400, f"{type(exc).__name__}: {exc}".encode(), "text/plain")
                return
            self._send(200, out, ctype)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.model_dir, args.port).serve_forever()


if __name__ == "__main__":
    main()
