"""One bad record never takes its batch with it: good records, a NUL byte, a schema misfit and
an undecodable answer in one batch; the set-aside ones are listed, and replayed exactly once
after the schema is fixed. ``openmart score`` tells the truth about what it stored."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import openmart
from openmart.errors import RecordsRefused
from openmart.mart.capture_store import count_set_aside, read_set_aside
from openmart.mart.records import new_scoring_ids
from openmart.scoring.capture import Exchange, PayloadCapture
from openmart.scoring.intake import provider_decoder
from tests.faults.conftest import stored_ids, subscribe


def _exchange(record: dict, answer: bytes) -> Exchange:
    return Exchange(new_scoring_ids(1)[0].as_py(), pd.Timestamp.now(tz="UTC"), 3.0, json.dumps(record).encode(), answer)


def test_a_mixed_batch_keeps_its_good_records(mart: openmart.Mart, crafted_model: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sub = subscribe(mart, crafted_model)
    fair = b'{"prediction": 1, "probability": 0.9}'
    good = [_exchange({"sex": "male", "income": 60.0 + i, "debt": 3.0}, fair) for i in range(5)]
    nul = _exchange({"sex": "fe\x00male", "income": 40.0, "debt": 1.0}, b'{"prediction": 0, "probability": 0.2}')
    misfit = _exchange({"sex": "male", "income": 40.0, "debt": 1.0}, b'{"prediction": 7, "probability": 0.2}')
    garbage = _exchange({"sex": "male", "income": 40.0, "debt": 1.0}, b"<html>oops</html>")
    capture = PayloadCapture(sub, decoder=provider_decoder(sub.provider()), flush_interval=1.0)
    for ex in [good[0], nul, good[1], misfit, good[2], garbage, good[3], good[4]]:
        capture.submit_exchange(ex)
    assert capture.flush(60)
    capture.close()
    assert sorted(stored_ids(mart, sub)) == sorted(ex.scoring_id for ex in good)
    aside = {a.scoring_id: a for a in read_set_aside(mart.engine, sub.id)}
    assert set(aside) == {nul.scoring_id, misfit.scoring_id, garbage.scoring_id}
    assert "NUL" in aside[nul.scoring_id].reason and "'sex'" in aside[nul.scoring_id].reason
    assert "class labels" in aside[misfit.scoring_id].reason and "'prediction'" in aside[misfit.scoring_id].reason
    assert aside[garbage.scoring_id].reason.startswith("undecodable exchange")
    assert aside[nul.scoring_id].request == nul.request  # the raw exchange, byte for byte (NUL included)
    assert aside[garbage.scoring_id].response == b"<html>oops</html>"
    assert capture.stats.stored == 5 and capture.stats.set_aside == 3


def test_set_aside_records_are_listed_and_replayed_once_after_the_fix(mart: openmart.Mart, cli) -> None:  # type: ignore[no-untyped-def]
    ref = pd.DataFrame({"x": [0.0, 1.0, 2.0] * 5, "y": [0, 1, 2] * 5})
    sub = mart.subscriptions.add("tri", reference=ref, label="y", problem_type="multiclass", probability=None)
    capture = PayloadCapture(sub)
    batch = pd.DataFrame({"scoring_id": new_scoring_ids(6).to_pylist(), "x": 1.0, "prediction": [0, 1, 3, 2, 3, 1]})
    capture.submit(batch)
    assert capture.flush(60)
    capture.close()
    assert sub.payload.count() == 4
    listed = json.loads(cli("capture", "rejected", "tri", "--json").stdout)
    assert listed["set_aside"] == 2 and {r["scoring_id"] for r in listed["records"]} == set(batch["scoring_id"][[2, 4]])
    assert all("class labels" in r["reason"] for r in listed["records"])

    refused = cli("capture", "replay", "tri", ok=False)  # not fixed yet: still refused, nothing stored
    assert refused.exit_code == 1 and sub.payload.count() == 4 and count_set_aside(mart.engine, sub.id) == 2

    cli("subscribe", "add-classes", "tri", "3")  # the model learnt a fourth class: the schema says so
    report = json.loads(cli("capture", "replay", "tri", "--json").stdout)
    assert report["stored"] == 2 and report["still_refused"] == 0
    again = json.loads(cli("capture", "replay", "tri", "--json").stdout)
    assert again["examined"] == 0 and again["stored"] == 0
    ids = stored_ids(mart, sub)
    assert len(ids) == len(set(ids)) == 6 and set(ids) == set(batch["scoring_id"])
    assert count_set_aside(mart.engine, sub.id) == 0


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ({"prediction": 7, "probability": 0.4}, "class labels"),
        ({"prediction": 1, "probability": 1.7}, "[0, 1]"),
        ({"prediction": "yes", "probability": 0.4}, "not a number"),
        ({"prediction": None, "probability": 0.4}, "prediction is missing"),
    ],
)
def test_score_refuses_answers_that_do_not_fit_by_name(mart: openmart.Mart, cli, tmp_path, answer, why) -> None:  # type: ignore[no-untyped-def]
    from tests.faults.conftest import answering

    with answering(answer) as url:
        sub = subscribe(mart, url)
        records = pd.DataFrame({"sex": ["male"] * 3, "income": [1.0, 2.0, 3.0], "debt": [1.0, 1.0, 1.0]})
        with pytest.raises(RecordsRefused) as caught:
            sub.score(records, wait=True)
        assert len(caught.value.refused) == 3 and why in caught.value.refused[0]["reason"]
        assert caught.value.counts == {"scored": 3, "accepted": 0, "refused": 3, "stored": 0}
        assert sub.payload.count() == 0 and count_set_aside(mart.engine, sub.id) == 3  # kept, never as NULL
        path = tmp_path / "new.csv"
        records.to_csv(path, index=False)
        run = cli("score", "credit", str(path), ok=False)
        assert run.exit_code == 1
        assert "3 scored, 0 stored, 3 refused" in run.stderr and why in run.stderr
        assert sub.payload.count() == 0
