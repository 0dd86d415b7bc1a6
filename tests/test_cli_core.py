"""The CLI's data-mart commands through Typer's CliRunner, against real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    n = 500
    ref = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "sex": rng.choice(["f", "m"], n),
            "income": rng.normal(50, 10, n),
            "label": rng.integers(0, 2, n),
        }
    )
    pay = ref.drop(columns="label").assign(prediction=ref["label"], probability=rng.random(n))
    paths = {
        "ref": tmp_path / "ref.csv",
        "pay": tmp_path / "pay.parquet",
        "fb": tmp_path / "fb.jsonl",
        "bad": tmp_path / "bad.csv",
    }
    ref.to_csv(paths["ref"], index=False)
    pay.assign(scoring_id=[f"s{i}" for i in range(n)]).to_parquet(paths["pay"])
    ref.head(100).assign(scoring_id=[f"s{i}" for i in range(100)]).to_json(paths["fb"], orient="records", lines=True)
    bad = pay.astype({"income": object})
    bad.loc[42, "income"] = "n/a"
    bad.to_csv(paths["bad"], index=False)
    return paths


def test_subscribe_log_and_read(cli, files) -> None:
    r = cli(
        "subscribe",
        "add",
        "credit",
        "--reference",
        str(files["ref"]),
        "--label",
        "label",
        "--problem",
        "binary",
        "--categorical",
        "sex",
        "--json",
    )
    info = json.loads(r.stdout)
    assert [f["name"] for f in info["schema"]["features"]] == ["age", "sex", "income"]
    cli("payload", "log", "credit", str(files["pay"]))
    cli("feedback", "log", "credit", str(files["fb"]))
    r = cli("records", "credit", "--kind", "payload", "--limit", "3", "--json")
    rows = json.loads(r.stdout)
    assert len(rows) == 3 and {"scoring_id", "age", "sex", "income", "prediction", "probability"} <= set(rows[0])
    r = cli("records", "credit", "--kind", "feedback", "--limit", "1000", "--json")
    assert len(json.loads(r.stdout)) == 100
    listed = json.loads(cli("subscribe", "list", "--json").stdout)
    assert [s["name"] for s in listed] == ["credit"]
    shown = json.loads(cli("subscribe", "show", "credit", "--json").stdout)
    assert shown["tables"]["payload"].startswith("payload_")
    status = json.loads(cli("db", "status", "--json").stdout)
    assert status["up_to_date"] is True


def test_bad_file_is_refused_whole_with_one_line(cli, files) -> None:
    cli("subscribe", "add", "credit", "--reference", str(files["ref"]), "--label", "label", "--problem", "binary")
    r = cli("payload", "log", "credit", str(files["bad"]), ok=False)
    assert r.exit_code == 2  # bad input
    assert r.stderr.strip().splitlines() == [
        f"error: {files['bad']}: line 44: payload record 42, column 'income': not a number (value 'n/a')"
    ]
    assert "Traceback" not in r.stdout + r.stderr
    rows = json.loads(cli("records", "credit", "--json", "--limit", "10").stdout)
    assert rows == []


def test_errors_exit_non_zero(cli, files) -> None:
    r = cli("records", "ghost", ok=False)
    assert r.exit_code == 1 and "no subscription named 'ghost'" in r.stderr
    r = cli("bind", "add", "x", "--provider", "nope", ok=False)
    assert r.exit_code == 1 and "no provider of kind 'nope' is installed" in r.stderr
    r = cli("payload", "log", "credit", "/nonexistent.csv", ok=False)
    assert r.exit_code == 2 and "/nonexistent.csv: no such file" in r.stderr
    r = cli(
        "subscribe", "add", "s", "--reference", str(files["ref"]), "--label", "nolabel", "--problem", "binary", ok=False
    )
    assert r.exit_code == 2 and "label column 'nolabel'" in r.stderr


def test_remove(cli, files) -> None:
    cli("subscribe", "add", "credit", "--reference", str(files["ref"]), "--label", "label", "--problem", "binary")
    cli("subscribe", "remove", "credit")
    assert json.loads(cli("subscribe", "list", "--json").stdout) == []
