"""Every bad input gets a clear answer: a table of bad files, CLI options and API arguments.

Each case must give ONE line on stderr (or one-line exception text), a non-zero exit (2 for
input the user must change), no traceback, and leave the mart exactly as it was (every table of
the test's schema counted before and after). A last test checks that awkward but acceptable
column names work everywhere: subscribe, log, read, evaluate and the HTML report."""

from __future__ import annotations

import codecs
import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import openmart
from openmart.errors import OpenmartError

HEADER = "age,sex,income,prediction,probability\n"
ROW = "30,f,50.5,1,0.7\n"
GOOD_CSV = HEADER + ROW + "41,m,60.0,0,0.2\n"
RECORD = {"age": 30, "sex": "f", "income": 50.5, "prediction": 1, "probability": 0.7}


def _parquet(frame: pd.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf)
    return buf.getvalue()


GOOD_PARQUET = _parquet(pd.DataFrame([RECORD, RECORD]))


@dataclass(frozen=True)
class FileCase:
    """``openmart <command...> FILE`` with FILE written from ``data``; ``{file}`` in args is its path."""

    id: str
    name: str
    data: bytes
    expect: str
    args: tuple[str, ...] = ("payload", "log", "credit", "{file}")
    code: int = 2


def jl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


FILE_CASES = [
    # encodings
    FileCase(
        "latin-1 without --encoding",
        "p.csv",
        (HEADER + "30,fé,50.5,1,0.7\n").encode("latin-1"),
        "line 2, byte 5: not UTF-8",
    ),
    FileCase("cp1252 jsonl", "p.jsonl", '{"age": 30, "sex": "\u2019"}\n'.encode("cp1252"), "line 1, byte"),
    FileCase("utf-16 without a BOM", "p.csv", GOOD_CSV.encode("utf-16-le"), "UTF-16 without a byte-order mark"),
    FileCase(
        "unknown --encoding",
        "p.csv",
        GOOD_CSV.encode(),
        "--encoding must be a text encoding",
        ("payload", "log", "credit", "{file}", "--encoding", "klingon"),
    ),
    FileCase(
        "binary codec as --encoding",
        "p.csv",
        GOOD_CSV.encode(),
        "--encoding must be a text encoding",
        ("payload", "log", "credit", "{file}", "--encoding", "hex"),
    ),
    FileCase(
        "wrong --encoding for utf-16 text",
        "p.csv",
        GOOD_CSV.encode("utf-16"),
        "not UTF-8",
        ("payload", "log", "credit", "{file}", "--encoding", "utf-8"),
    ),
    # CSV structure
    FileCase("empty csv", "p.csv", b"", "the file is empty"),
    FileCase("only blank lines", "p.csv", b"\n\n\n", "the file is empty"),
    FileCase("header only", "p.csv", HEADER.encode(), "no records (only a header)"),
    FileCase("short row", "p.csv", (HEADER + ROW + "41,m,60.0\n").encode(), "line 3: a short row"),
    FileCase("long row", "p.csv", (HEADER + ROW + "41,m,60.0,0,0.2,9\n").encode(), "line 3: 6 fields"),
    FileCase("long first row", "p.csv", (HEADER + "1,30,f,50.5,1,0.7\n").encode(), "line 2: 6 fields"),
    FileCase(
        "duplicate header", "p.csv", ("age,sex,age,prediction,probability\n" + ROW).encode(), "'age' appears twice"
    ),
    FileCase("unnamed column", "p.csv", ("age,,income,prediction,probability\n" + ROW).encode(), "has no name"),
    FileCase("unterminated quote", "p.csv", (HEADER + '30,"f,50.5,1,0.7\n41,m,60.0,0,0.2\n').encode(), "never closed"),
    FileCase("tsv with commas", "p.tsv", GOOD_CSV.encode(), "is not one the subscription takes"),
    FileCase("corrupt gzip", "p.csv.gz", b"\x1f\x8b\x08\x00garbage", "cannot be read"),
    # values
    FileCase(
        "text in a numeric column",
        "p.csv",
        (HEADER + "30,f,n/a,1,0.7\n").encode(),
        "line 2: payload record 0, column 'income': not a number",
    ),
    FileCase(
        "infinity in csv",
        "p.csv",
        (HEADER + ROW + "30,f,inf,1,0.7\n").encode(),
        "line 3: payload record 1, column 'income': not a finite",
    ),
    FileCase("-infinity in csv", "p.csv", (HEADER + "30,f,-inf,1,0.7\n").encode(), "not a finite number"),
    FileCase("unknown class", "p.csv", (HEADER + "30,f,1.0,7,0.7\n").encode(), "class labels"),
    FileCase("probability above 1", "p.csv", (HEADER + "30,f,1.0,1,1.5\n").encode(), "[0, 1]"),
    FileCase("missing prediction", "p.csv", (HEADER + "30,f,1.0,,0.5\n").encode(), "the prediction is missing"),
    FileCase(
        "repeated scoring_id",
        "p.csv",
        (HEADER.strip() + ",scoring_id\n" + "30,f,1,1,0.5,a\n31,m,2,0,0.5,a\n").encode(),
        "repeats within the batch",
    ),
    FileCase(
        "bad timestamp",
        "p.csv",
        (HEADER.strip() + ",scoring_timestamp\n" + "30,f,1,1,0.5,yesterday\n").encode(),
        "not a timestamp",
    ),
    FileCase(
        "extra column",
        "p.csv",
        ("age,sex,income,prediction,probability,secret\n" + ROW.strip() + ",x\n").encode(),
        "column 'secret' is not one the subscription takes",
    ),
    FileCase(
        "missing feature",
        "p.csv",
        (b"age,sex,prediction,probability\n30,f,1,0.7\n"),
        "column 'income' is missing",
    ),
    # JSON lines and JSON
    FileCase("jsonl syntax", "p.jsonl", jl(json.dumps(RECORD), '{"age": 30,'), "line 2, column 12: not JSON"),
    FileCase(
        "jsonl Infinity",
        "p.jsonl",
        jl(json.dumps(RECORD), json.dumps(RECORD).replace("50.5", "Infinity")),
        "line 2: Infinity is not JSON",
    ),
    FileCase("jsonl NaN", "p.jsonl", jl(json.dumps(RECORD).replace("50.5", "NaN")), "line 1: NaN is not JSON"),
    FileCase("jsonl repeated key", "p.jsonl", jl('{"age": 1, "age": 2}'), "key 'age' appears twice"),
    FileCase(
        "jsonl missing key",
        "p.jsonl",
        jl(json.dumps(RECORD), json.dumps({k: v for k, v in RECORD.items() if k != "sex"})),
        "line 2: key 'sex' is missing",
    ),
    FileCase(
        "jsonl extra key",
        "p.jsonl",
        jl(json.dumps(RECORD), json.dumps({**RECORD, "z": 1})),
        "line 2: key 'z' is not in the first record",
    ),
    FileCase("jsonl array line", "p.jsonl", jl("[1, 2, 3]"), "line 1: a JSON list"),
    FileCase(
        "jsonl inf value via big number",
        "p.jsonl",
        jl(json.dumps(RECORD).replace("50.5", "1e999")),
        "line 1: payload record 0, column 'income': not a finite number",
    ),
    FileCase("json scalar", "p.json", b"42", "a JSON int; expected records"),
    FileCase("json truncated", "p.json", b'{"fields": ["age"], "values": [[1]', "not JSON"),
    FileCase(
        "openscale short row",
        "p.json",
        json.dumps({"fields": list(RECORD), "values": [list(RECORD.values()), [30, "f"]]}).encode(),
        "values[1]: a short row",
    ),
    FileCase(
        "openscale long row",
        "p.json",
        json.dumps({"fields": list(RECORD), "values": [[*RECORD.values(), 9]]}).encode(),
        "values[0]: 6 values for 5 fields",
    ),
    FileCase(
        "openscale repeated field",
        "p.json",
        json.dumps({"fields": ["age", "age"], "values": [[1, 2]]}).encode(),
        "'age' appears twice",
    ),
    FileCase(
        "openscale values not a list",
        "p.json",
        json.dumps({"fields": ["age"], "values": 5}).encode(),
        '"values" must be a list',
    ),
    FileCase(
        "openscale payload without fields",
        "p.json",
        json.dumps({"request": {"values": [[1]]}}).encode(),
        "'request' must be an object with 'fields' and 'values'",
    ),
    FileCase(
        "openscale bad value",
        "p.json",
        json.dumps({"fields": list(RECORD), "values": [[30, "f", "lots", 1, 0.7]]}).encode(),
        "values[0]: payload record 0, column 'income': not a number",
    ),
    # Parquet
    FileCase("truncated parquet", "p.parquet", GOOD_PARQUET[: len(GOOD_PARQUET) // 2], "not a readable Parquet file"),
    FileCase("csv named .parquet", "p.parquet", GOOD_CSV.encode(), "not a readable Parquet file"),
    FileCase(
        "parquet with infinity",
        "p.parquet",
        _parquet(pd.DataFrame([RECORD, {**RECORD, "income": np.inf}])),
        "row 1: payload record 1, column 'income': not a finite number",
    ),
    # the file itself
    FileCase("unknown extension", "p.txt", GOOD_CSV.encode(), "unknown file type '.txt'"),
    # the other readers: feedback, reference, subscribe, score
    FileCase(
        "feedback unknown label",
        "f.csv",
        b"age,sex,income,label\n30,f,1.0,5\n",
        "class labels",
        ("feedback", "log", "credit", "{file}"),
    ),
    FileCase(
        "feedback short row",
        "f.csv",
        b"age,sex,income,label\n30,f,1.0\n",
        "a short row",
        ("feedback", "log", "credit", "{file}"),
    ),
    FileCase(
        "reference bad record",
        "r.csv",
        b"age,sex,income,label\n30,f,1.0,1\n31,m,zero,0\n",
        "line 3: reference record 1, column 'income'",
        ("reference", "load", "credit", "{file}"),
    ),
    FileCase(
        "reference latin-1",
        "r.csv",
        "age,sex,income,label\n30,fé,1.0,1\n".encode("latin-1"),
        "not UTF-8",
        ("reference", "load", "credit", "{file}"),
    ),
    FileCase(
        "subscribe: latin-1 reference",
        "s.csv",
        "a,b,label\n1,é,0\n2,x,1\n".encode("latin-1"),
        "not UTF-8",
        ("subscribe", "add", "s2", "--reference", "{file}", "--label", "label", "--problem", "binary"),
    ),
    FileCase(
        "subscribe: '%' in a column name",
        "s.csv",
        b"a%b,label\n1,0\n2,1\n",
        "'%' cannot be used in a column name",
        ("subscribe", "add", "s2", "--reference", "{file}", "--label", "label", "--problem", "binary"),
    ),
    FileCase(
        "subscribe: 64-byte column name",
        "s.csv",
        ("x" * 64 + ",label\n1,0\n2,1\n").encode(),
        "63-byte identifier limit",
        ("subscribe", "add", "s2", "--reference", "{file}", "--label", "label", "--problem", "binary"),
    ),
    FileCase(
        "subscribe: reserved column name",
        "s.csv",
        b"scoring_id,a,label\nq,1,0\nr,2,1\n",
        "reserved by openmart",
        ("subscribe", "add", "s2", "--reference", "{file}", "--label", "label", "--problem", "binary"),
    ),
    FileCase(
        "subscribe: inf in reference",
        "s.csv",
        b"a,label\n1,0\ninf,1\n",
        "line 3: reference record 1, column 'a': not a finite number",
        ("subscribe", "add", "s2", "--reference", "{file}", "--label", "label", "--problem", "binary"),
    ),
    FileCase(
        "subscribe: duplicate header",
        "s.csv",
        b"a,a,label\n1,2,0\n",
        "'a' appears twice",
        ("subscribe", "add", "s2", "--reference", "{file}", "--label", "label", "--problem", "binary"),
    ),
    FileCase(
        "subscribe: label not in file",
        "s.csv",
        b"a,label\n1,0\n2,1\n",
        "label column 'nolabel'",
        ("subscribe", "add", "s2", "--reference", "{file}", "--label", "nolabel", "--problem", "binary"),
    ),
    FileCase(
        "score: extra column",
        "n.csv",
        b"age,sex,income,label\n30,f,1.0,1\n",
        "column 'label' is not one the subscription takes",
        ("score", "credit", "{file}"),
    ),
    FileCase("score: short row", "n.csv", b"age,sex,income\n30,f\n", "a short row", ("score", "credit", "{file}")),
]


@dataclass(frozen=True)
class OptionCase:
    id: str
    args: tuple[str, ...]
    expect: str
    code: int = 2


OPTION_CASES = [
    OptionCase(
        "records --limit -1",
        ("records", "credit", "--limit", "-1"),
        "--limit must be a whole number from 1 up (got -1)",
    ),
    OptionCase("records --limit 0", ("records", "credit", "--limit", "0"), "--limit must be a whole number from 1 up"),
    OptionCase(
        "records --limit abc",
        ("records", "credit", "--limit", "abc"),
        "'--limit' / '-n': Input should be a valid integer",
    ),
    OptionCase(
        "records --kind bogus",
        ("records", "credit", "--kind", "bogus"),
        "'bogus' is not one of 'payload', 'feedback', 'reference'",
    ),
    OptionCase("records: unknown subscription", ("records", "ghost"), "no subscription named 'ghost'", code=1),
    OptionCase(
        "subscribe --problem nope",
        ("subscribe", "add", "s3", "--reference", "{ref}", "--label", "label", "--problem", "nope"),
        "'nope' is not one of 'binary', 'multiclass', 'regression'",
    ),
    OptionCase(
        "subscribe: bad name",
        ("subscribe", "add", "bad name;", "--reference", "{ref}", "--label", "label", "--problem", "binary"),
        "invalid subscription name",
    ),
    OptionCase(
        "subscribe --categorical unknown",
        (
            "subscribe",
            "add",
            "s3",
            "--reference",
            "{ref}",
            "--label",
            "label",
            "--problem",
            "binary",
            "--categorical",
            "nope",
        ),
        "column 'nope' named in the options",
    ),
    OptionCase(
        "subscribe: missing --label",
        ("subscribe", "add", "s3", "--reference", "{ref}", "--problem", "binary"),
        "Missing option '--label'",
    ),
    OptionCase(
        "proxy --port 0", ("proxy", "credit", "--port", "0"), "--port must be a whole number from 1 to 65535 (got 0)"
    ),
    OptionCase(
        "proxy --port 70000", ("proxy", "credit", "--port", "70000"), "--port must be a whole number from 1 to 65535"
    ),
    OptionCase(
        "proxy --timeout nan",
        ("proxy", "credit", "--timeout", "nan"),
        "'--timeout': Input should be greater than or equal to 0.001",
    ),
    OptionCase(
        "proxy --timeout inf", ("proxy", "credit", "--timeout", "inf"), "--timeout must be a finite number above 0"
    ),
    OptionCase(
        "proxy --timeout -1",
        ("proxy", "credit", "--timeout", "-1"),
        "'--timeout': Input should be greater than or equal to 0.001",
    ),
    OptionCase("proxy --host ''", ("proxy", "credit", "--host", " "), "--host must be an address"),
    OptionCase("explain --last 0", ("explain", "credit", "--last", "0"), "--last must be a whole number from 1 up"),
    OptionCase(
        "explain --method foo",
        ("explain", "credit", "x", "--method", "foo"),
        "--method must be one of shap, lime (got 'foo')",
    ),
    OptionCase("explain without id or --last", ("explain", "credit"), "give a SCORING_ID or --last N"),
    OptionCase(
        "quickstart --records 0", ("quickstart", "--records", "0"), "--records must be a whole number from 100 to 1e+06"
    ),
    OptionCase(
        "bind add --set without =",
        ("bind", "add", "web", "--provider", "custom", "--set", "url"),
        "--set 'url': expected key=value",
    ),
    OptionCase("unknown command", ("frobnicate",), "No such command 'frobnicate'"),
    OptionCase("unknown option", ("records", "credit", "--frob"), "No such option: --frob"),
    OptionCase(
        "--schema not a schema name", ("--schema", "Bad-Name", "subscribe", "list"), "invalid PostgreSQL schema name"
    ),
]


@dataclass(frozen=True)
class ApiCase:
    id: str
    call: Callable[[openmart.Mart, openmart.Subscription], Any]
    expect: str
    error: type[Exception] = field(default=OpenmartError)


def _frame(**changes: Any) -> pd.DataFrame:
    return pd.DataFrame([{**RECORD, **changes}])


API_CASES = [
    ApiCase(
        "payload.log(extra column)",
        lambda m, s: s.payload.log(_frame(prediction=1, surprise=3)),
        "payload batch: column 'surprise' is not one of the subscription's",
    ),
    ApiCase(
        "reference.load(extra column)",
        lambda m, s: s.reference.load(_frame(label=1, surprise=3)),
        "reference batch: column 'surprise' is not one of the subscription's",
    ),
    ApiCase("evaluate(last=0)", lambda m, s: s.evaluate(last=0), "last must be a whole number from 1 up (got 0)"),
    ApiCase(
        "evaluate(since after until)",
        lambda m, s: s.evaluate(since="2026-02-01", until="2026-01-01"),
        "since (2026-02-01T00:00:00) must come before until",
    ),
    ApiCase("explanations(limit=0)", lambda m, s: s.explanations(limit=0), "limit must be a whole number from 1 up"),
    ApiCase(
        "feedback.log(on_duplicate=...)",
        lambda m, s: s.feedback.log([{"age": 1}], on_duplicate="sometimes"),
        "on_duplicate 'sometimes': choose refuse or replace",
    ),
    ApiCase("read(limit=-1)", lambda m, s: s.payload.read(limit=-1), "limit must be a whole number from 0 up (got -1)"),
    ApiCase("read(limit='x')", lambda m, s: s.payload.read(limit="x"), "limit must be a whole number"),
    ApiCase("read(limit=1.5)", lambda m, s: s.payload.read(limit=1.5), "limit must be a whole number"),
    ApiCase(
        "read(since='yesterday')",
        lambda m, s: s.payload.read(since="yesterday"),
        "since must be a datetime or ISO 8601",
    ),
    ApiCase("read(until=5)", lambda m, s: s.payload.read(until=5), "until must be a datetime"),
    ApiCase(
        "read(since > until)",
        lambda m, s: s.payload.read(since="2026-02-01", until="2026-01-01"),
        "must come before until",
    ),
    ApiCase(
        "read(columns='age')", lambda m, s: s.payload.read(columns="age"), "columns must be a list of column names"
    ),
    ApiCase("read(columns=[1])", lambda m, s: s.payload.read(columns=[1]), "columns must be a non-empty list"),
    ApiCase(
        "log(OpenScale without fields)",
        lambda m, s: s.payload.log({"request": {"values": [[1]]}}),
        "'request' must be an object with 'fields' and 'values'",
    ),
    ApiCase(
        "log(OpenScale fields not a list)",
        lambda m, s: s.payload.log({"fields": "abc", "values": [[1]]}),
        "'fields' must be a list",
    ),
    ApiCase(
        "log(OpenScale row not a list)",
        lambda m, s: s.payload.log({"fields": ["age"], "values": [5]}),
        "record 0 is a int, not a list",
    ),
    ApiCase("log([{'request': 5}])", lambda m, s: s.payload.log([{"request": 5}]), "'request' must be an object"),
    ApiCase(
        "log(response rows mismatch)",
        lambda m, s: s.payload.log(
            {
                "request": {"fields": ["age"], "values": [[1], [2]]},
                "response": {"fields": ["prediction"], "values": [[1]]},
            }
        ),
        "response has 1 rows for 2 request rows",
    ),
    ApiCase("log('text')", lambda m, s: s.payload.log("text"), "cannot read records from a str"),
    ApiCase("log(42)", lambda m, s: s.payload.log(42), "cannot read records from a int"),
    ApiCase("log(empty frame)", lambda m, s: s.payload.log(pd.DataFrame()), "payload batch is empty"),
    ApiCase(
        "log(inf)", lambda m, s: s.payload.log(_frame(income=float("inf"))), "column 'income': not a finite number"
    ),
    ApiCase(
        "log(bytes category)",
        lambda m, s: s.payload.log(_frame(sex=b"\x80")),
        "column 'sex': a bytes, not a single value",
    ),
    ApiCase("log(list category)", lambda m, s: s.payload.log(_frame(sex=["a"])), "column 'sex'"),
    ApiCase(
        "log(binary probability list)",
        lambda m, s: s.payload.log(_frame(probability=[0.1, 0.2, 0.7])),
        "has 3 probabilities for 2 classes",
    ),
    ApiCase(
        "log(null timestamp)", lambda m, s: s.payload.log(_frame(scoring_timestamp=None)), "the timestamp is missing"
    ),
    ApiCase("feedback.log(bad label)", lambda m, s: s.feedback.log(_frame(label=9)), "class labels"),
    ApiCase(
        "reference.load(bad record)",
        lambda m, s: s.reference.load(_frame(label=1, income="x")),
        "reference record 0, column 'income': not a number",
    ),
    ApiCase(
        "add(problem_type='nope')",
        lambda m, s: m.subscriptions.add("z", reference=_frame(label=1), label="label", problem_type="nope"),
        "problem_type must be one of binary, multiclass, regression",
    ),
    ApiCase(
        "add(categorical='sex')",
        lambda m, s: m.subscriptions.add(
            "z", reference=_frame(label=1), label="label", problem_type="regression", categorical="sex"
        ),
        "categorical must be a list of column names",
    ),
    ApiCase(
        "add(reference=list)",
        lambda m, s: m.subscriptions.add("z", reference=[1, 2], label="label", problem_type="binary"),
        "reference must be a DataFrame",
    ),
    ApiCase(
        "add('%' column)",
        lambda m, s: m.subscriptions.add(
            "z", reference=pd.DataFrame({"a%": [1.0, 2.0], "label": [0, 1]}), label="label", problem_type="binary"
        ),
        "'%' cannot be used",
    ),
]


# -- the mart, and how it is compared -------------------------------------------------------------


@pytest.fixture
def world(mart: openmart.Mart, tmp_path: Path) -> dict[str, Any]:
    """A subscription with some of everything stored, and a reference file for subscribe cases."""
    rng = np.random.default_rng(0)
    n = 40
    ref = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "sex": rng.choice(["f", "m"], n),
            "income": rng.normal(50, 10, n),
            "label": rng.integers(0, 2, n),
        }
    )
    sub = mart.subscriptions.add("credit", reference=ref, label="label", problem_type="binary")
    ids = sub.payload.log(ref.drop(columns="label").assign(prediction=ref["label"], probability=0.5))
    sub.feedback.log(ref.head(10).assign(scoring_id=list(ids)[:10]))
    path = tmp_path / "ref.csv"
    ref.to_csv(path, index=False)
    return {"sub": sub, "ref": path}


def snapshot(mart: openmart.Mart) -> dict[str, int]:
    """Rows in every table of the mart's schema (its own tables and the record tables)."""
    schema = mart.location.schema
    with mart.engine.connect() as conn:
        tables = conn.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s ORDER BY 1"),
            {"s": schema},
        ).scalars()
        return {
            t: int(conn.exec_driver_sql(f'SELECT count(*) FROM "{schema}"."{t}"').scalar_one()) for t in list(tables)
        }


def assert_one_clear_line(result: Any, expect: str, code: int) -> None:
    text = result.stderr.strip()
    assert result.exit_code == code, (result.exit_code, text, result.stdout)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught exception
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in text.splitlines() if not line.startswith("mart: ")]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: ") and expect in lines[0], (expect, lines[0])


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.id for c in FILE_CASES])
def test_bad_file(case: FileCase, cli: Any, world: dict[str, Any], mart: openmart.Mart, tmp_path: Path) -> None:
    path = tmp_path / case.name
    path.write_bytes(case.data)
    before = snapshot(mart)
    result = cli(*(a.replace("{file}", str(path)) for a in case.args), ok=False)
    assert_one_clear_line(result, case.expect, case.code)
    if case.code == 2 and "no such" not in case.expect:
        assert str(path) in result.stderr or "--encoding" in case.expect  # the file is named
    assert snapshot(mart) == before


@pytest.mark.parametrize("case", OPTION_CASES, ids=[c.id for c in OPTION_CASES])
def test_bad_option(case: OptionCase, cli: Any, world: dict[str, Any], mart: openmart.Mart) -> None:
    before = snapshot(mart)
    result = cli(*(a.replace("{ref}", str(world["ref"])) for a in case.args), ok=False)
    assert_one_clear_line(result, case.expect, case.code)
    assert snapshot(mart) == before


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_bad_api_input(case: ApiCase, world: dict[str, Any], mart: openmart.Mart) -> None:
    before = snapshot(mart)
    with pytest.raises(case.error) as caught:
        case.call(mart, world["sub"])
    message = str(caught.value)
    assert "\n" not in message.strip() and case.expect in message, (case.expect, message)
    assert snapshot(mart) == before


def test_missing_and_directory_paths(cli: Any, world: dict[str, Any], mart: openmart.Mart, tmp_path: Path) -> None:
    before = snapshot(mart)
    assert_one_clear_line(cli("payload", "log", "credit", str(tmp_path / "nope.csv"), ok=False), "no such file", 2)
    assert_one_clear_line(cli("payload", "log", "credit", str(tmp_path), ok=False), "is a directory", 2)
    assert snapshot(mart) == before


def test_the_table_is_large_enough() -> None:
    assert len(FILE_CASES) + len(OPTION_CASES) + len(API_CASES) >= 50


# -- what is read, and the options that relax the rules ---------------------------------------------


def test_encodings_and_relaxing_options_read(
    cli: Any, world: dict[str, Any], mart: openmart.Mart, tmp_path: Path
) -> None:
    sub = world["sub"]
    count = sub.payload.count()
    text = HEADER + "30,fé,50.5,1,0.7\n"
    files = {
        "bom.csv": codecs.BOM_UTF8 + text.encode(),
        "u16.csv": text.encode("utf-16"),
        "u16be.csv": codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
        "plain.csv.gz": gzip.compress(text.encode()),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        cli("payload", "log", "credit", str(tmp_path / name))
        count += 1
        assert sub.payload.count() == count
        assert sub.payload.read(limit=1, newest_first=True)["sex"].iloc[0] == "fé", name
    (tmp_path / "l1.csv").write_bytes(text.encode("latin-1"))
    cli("payload", "log", "credit", str(tmp_path / "l1.csv"), "--encoding", "latin-1")
    (tmp_path / "short.csv").write_bytes((HEADER + "30,f,50.5,1\n").encode())
    cli("payload", "log", "credit", str(tmp_path / "short.csv"), "--allow-short-rows")
    (tmp_path / "extra.csv").write_bytes((HEADER.strip() + ",note\n" + ROW.strip() + ",hi\n").encode())
    r = cli("payload", "log", "credit", str(tmp_path / "extra.csv"), "--allow-extra-columns")
    assert "dropped columns the subscription does not take: ['note']" in r.stderr
    (tmp_path / "os.json").write_text(json.dumps({"fields": list(RECORD), "values": [list(RECORD.values())] * 2}))
    cli("payload", "log", "credit", str(tmp_path / "os.json"))
    assert sub.payload.count() == count + 5
    latest = sub.payload.read(limit=5, newest_first=True)
    assert latest["probability"].isna().sum() == 1  # the short row's missing probability is NULL


def test_awkward_column_names_work_everywhere(mart: openmart.Mart, cli: Any, tmp_path: Path) -> None:
    """Names PostgreSQL takes only quoted, and the report must not read as markup or TeX."""
    names = ["$\\foo$", 'say "hi"', "it's", "âge", "年龄", "a b", "x" * 63, "<b>", "back\\slash", "semi;colon --"]
    rng = np.random.default_rng(1)
    n = 200
    ref = pd.DataFrame({name: rng.normal(size=n) for name in names})
    ref["label"] = rng.integers(0, 2, n)
    sub = mart.subscriptions.add("odd", reference=ref, label="label", problem_type="binary")
    assert sub.schema.feature_names == names
    sub.monitors.enable("drift", min_records=10)
    sub.monitors.enable("quality", min_records=10)
    payload = ref.drop(columns="label").assign(prediction=ref["label"], probability=rng.random(n))
    path = tmp_path / "p.csv"
    payload.to_csv(path, index=False)
    cli("payload", "log", "odd", str(path))
    ids = sub.payload.read(columns=["scoring_id"])["scoring_id"].tolist()
    sub.feedback.log(ref.assign(scoring_id=ids))
    back = sub.payload.read()
    assert set(names) <= set(back.columns)
    result = sub.evaluate()
    assert result is not None
    records = json.loads(cli("records", "odd", "--limit", "2", "--json").stdout)
    assert set(names) <= set(records[0])
    report = tmp_path / "odd.html"
    cli("report", "odd", "--out", str(report))
    html = report.read_text()
    assert "$\\foo$" in html and "&lt;b&gt;" in html and "年龄" in html
