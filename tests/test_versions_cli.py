"""Model versions and labelled sets through the CLI (``openmart versions``, ``reference load
--environment/--version``, ``reference sets|use``, ``--version`` on payload/feedback log) and the
Python API they call; every answer is checked against the mart's own tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import openmart
from openmart.errors import ValidationError
from tests.models import credit_data


def _count(mart: openmart.Mart, table: str, where: str = "TRUE") -> int:
    return int(mart.sql(f'SELECT count(*) AS n FROM "{table}" WHERE {where}')["n"][0])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ref = credit_data(300)
    shifted = credit_data(200, seed=7).assign(income=lambda d: d["income"] + 40)
    pay = ref.drop(columns="label").assign(prediction=ref["label"], probability=np.linspace(0, 1, len(ref)))
    paths = {k: tmp_path / f"{k}.csv" for k in ("ref", "train2", "valid2", "pay", "fb", "pay_v")}
    ref.to_csv(paths["ref"], index=False)
    shifted.to_csv(paths["train2"], index=False)
    ref.head(50).to_csv(paths["valid2"], index=False)
    pay.head(100).assign(scoring_id=[f"a{i}" for i in range(100)]).to_csv(paths["pay"], index=False)
    ref.head(40).assign(scoring_id=[f"a{i}" for i in range(40)]).to_csv(paths["fb"], index=False)
    # 30 records: 10 say their own version 7, the others none
    own = pay.head(30).assign(scoring_id=[f"b{i}" for i in range(30)], asset_revision=[None] * 20 + ["7"] * 10)
    own.to_csv(paths["pay_v"], index=False)
    return paths


def _subscribe(cli, files: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    args = ("subscribe", "add", "credit", "--reference", str(files["ref"]), "--label", "label", "--problem", "binary")
    cli(*args)


def test_versions_list_and_start_with_counts(cli, files, mart: openmart.Mart) -> None:
    _subscribe(cli, files)
    cli("payload", "log", "credit", str(files["pay"]))
    cli("feedback", "log", "credit", str(files["fb"]))
    listed = json.loads(cli("versions", "list", "credit", "--json").stdout)
    assert [(v["version"], v["source"], v["current"]) for v in listed] == [("1", "subscribe", True)]
    assert (listed[0]["payload"], listed[0]["feedback"], listed[0]["training"], listed[0]["validation"]) == (
        100,
        40,
        300,
        0,
    )

    started = json.loads(cli("versions", "start", "credit", "2", "--note", "retrained", "--json").stdout)
    assert started["new"] is True
    again = cli("versions", "start", "credit", "2")
    assert "is current again" in again.stderr
    # records logged now belong to version 2; the log's own --version wins over the current one
    cli("payload", "log", "credit", str(files["pay_v"]), "--version", "7", ok=True)
    sub = mart.subscriptions.get("credit")
    payload = sub.record.payload_table
    assert _count(mart, payload, "asset_revision = '7'") == 30
    assert _count(mart, payload, "asset_revision = '1'") == 100

    listed = {v["version"]: v for v in json.loads(cli("versions", "list", "credit", "--json").stdout)}
    assert list(listed) == ["1", "2", "7"]
    assert listed["2"]["source"] == "user" and listed["2"]["note"] == "retrained"
    # a version new to the mart, carried by the logged records, became current by itself
    assert listed["7"]["source"] == "records" and listed["7"]["current"] is True
    assert (listed["7"]["payload"], listed["2"]["payload"], listed["1"]["payload"]) == (30, 0, 100)
    table = cli("versions", "list", "credit").stdout
    assert "subscr" in table and "*" in table  # (a narrow terminal: the table folds its cells)


def test_log_version_refuses_a_record_that_says_another(cli, files, mart: openmart.Mart) -> None:
    _subscribe(cli, files)
    r = cli("payload", "log", "credit", str(files["pay_v"]), "--version", "3", ok=False)
    assert r.exit_code == 2  # input the user must change
    assert "asset_revision" in r.stderr and "'7'" in r.stderr and "record 20" in r.stderr
    sub = mart.subscriptions.get("credit")
    assert _count(mart, sub.record.payload_table) == 0
    assert [v.version for v in sub.versions.list()] == ["1"]  # nothing registered by the refused log


def test_feedback_version_in_the_api_and_the_cli(cli, files, mart: openmart.Mart) -> None:
    _subscribe(cli, files)
    sub = mart.subscriptions.get("credit")
    labelled = credit_data(20).assign(scoring_id=[f"f{i}" for i in range(20)])
    labelled.loc[:4, "asset_revision"] = "5"
    assert sub.feedback.log(labelled) == 20
    cli("feedback", "log", "credit", str(files["fb"]), "--version", "1")
    table = sub.record.feedback_table
    # 5 was new: registered from the records and current from that batch on, so the batch's
    # records without a version of their own belong to it too; --version 1 stamped the file's
    assert _count(mart, table, "asset_revision = '5'") == 20
    assert _count(mart, table, "asset_revision = '1'") == 40
    assert sub.versions.current == "5"
    ids = sub.payload.log(credit_data(10).drop(columns="label").assign(prediction=1), version="1")
    assert _count(mart, sub.record.payload_table, "asset_revision = '1'") == len(ids) == 10
    with pytest.raises(ValidationError, match="labelled set"):
        sub.reference.log_batches([credit_data(5)], version="1")


def test_reference_load_by_environment_and_version_sets_and_use(cli, files, mart: openmart.Mart) -> None:
    _subscribe(cli, files)
    sub = mart.subscriptions.get("credit")
    profile_v1 = sub.reference.profile()
    cli("versions", "start", "credit", "2")
    valid = json.loads(cli("reference", "load", "credit", str(files["valid2"]), "-e", "validation", "--json").stdout)
    assert [valid[k] for k in ("environment", "version", "records", "reference")] == ["validation", "2", 50, False]
    # a validation set never becomes the reference
    assert sub.reload().reference_version == "1" and sub.reference.profile() == profile_v1

    # the current version's training set becomes THE reference, its profile from its own rows
    loaded = json.loads(
        cli("reference", "load", "credit", str(files["train2"]), "--environment", "training", "--json").stdout
    )
    assert loaded["reference"] is True and loaded["records"] == 200
    sub.reload()
    assert sub.reference_version == "2"
    shifted_mean = pd.read_csv(files["train2"])["income"].mean()
    assert sub.reference.profile() != profile_v1
    assert sub.reference.read()["income"].mean() == pytest.approx(shifted_mean)

    # --add appends to the set (and the profile follows the whole set)
    cli("reference", "load", "credit", str(files["valid2"]), "--version", "2", "--add")
    assert sub.reference.count() == 250
    sets = json.loads(cli("reference", "sets", "credit", "--json").stdout)
    assert [(s["environment"], s["version"], s["records"], s["reference"]) for s in sets] == [
        ("training", "1", 300, False),
        ("training", "2", 250, True),
        ("validation", "2", 50, False),
    ]
    table = sub.record.reference_table
    assert _count(mart, table, "environment = 'training' AND asset_revision = '2'") == 250

    # back to version 1's training set
    r = cli("reference", "use", "credit", "1")
    assert "300 records" in r.stderr
    assert sub.reload().reference_version == "1" and sub.reference.profile() == profile_v1
    assert "*" in cli("reference", "sets", "credit").stdout
    r = cli("reference", "use", "credit", "9", ok=False)
    assert r.exit_code == 2 and "no training set of version '9'" in r.stderr
    r = cli("reference", "load", "credit", str(files["valid2"]), "-e", "production", ok=False)
    assert r.exit_code == 2 and "production" in r.stderr
    assert sub.reference.count() == 300
