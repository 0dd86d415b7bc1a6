"""``Mart.sql`` reads and never writes: one statement, in a read-only transaction."""

from __future__ import annotations

import pandas as pd
import pytest

import openmart
from openmart.errors import ValidationError
from openmart.mart.readonly import split_statements


@pytest.fixture
def sub(mart: openmart.Mart) -> openmart.Subscription:
    return mart.subscriptions.add(
        "ro", reference=pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}), label="y", problem_type="binary"
    )


def _intact(mart: openmart.Mart, sub: openmart.Subscription) -> None:
    assert mart.sql("SELECT count(*) AS n FROM subscriptions")["n"][0] == 1
    assert mart.sql(f'SELECT count(*) AS n FROM "{sub.reference.table}"')["n"][0] == 2


REFUSED = [
    "INSERT INTO subscriptions (name) VALUES ('x')",
    "DROP TABLE subscriptions",
    "COMMIT; DROP TABLE subscriptions",
    "commit ; drop table subscriptions",
    "SELECT 1; COMMIT; DROP TABLE subscriptions",
    "SET default_transaction_read_only = off; DROP TABLE subscriptions",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; COMMIT; DROP TABLE subscriptions",
    "ROLLBACK; DELETE FROM subscriptions",
    "DELETE FROM subscriptions",
    "TRUNCATE subscriptions CASCADE",
    "UPDATE subscriptions SET name = 'y'",
    "COPY (SELECT 1) TO PROGRAM 'touch /tmp/openmart-sql-escape'",
    # a data-modifying CTE and SELECT INTO are one reading-looking statement: the transaction stops them
    "WITH gone AS (DELETE FROM subscriptions RETURNING *) SELECT * FROM gone",
    "SELECT * INTO copied FROM subscriptions",
    "SELECT * FROM subscriptions FOR UPDATE",
    # quoting the way PostgreSQL reads it: the backslash does not escape the quote in a plain string
    "SELECT 'a\\'; DROP TABLE subscriptions; --'",
    "SELECT E'it''s'; DROP TABLE subscriptions",
    "SELECT $q$ ; $q$; DROP TABLE subscriptions",
    'SELECT 1 AS "x;y"; DROP TABLE subscriptions',
    "SELECT 1 /* a comment */; DROP TABLE subscriptions",
    "SELECT 'unterminated; DROP TABLE subscriptions",
]


@pytest.mark.parametrize("query", REFUSED)
def test_writes_are_refused(mart: openmart.Mart, sub: openmart.Subscription, query: str) -> None:
    with pytest.raises(ValidationError, match=r"mart\.sql"):
        mart.sql(query)
    _intact(mart, sub)
    # the pooled connection is not left read-only (or in a failed transaction) for the API's writes
    sub.payload.log(pd.DataFrame({"x": [3.0], "prediction": [1]}))
    assert mart.sql(f'SELECT count(*) AS n FROM "{sub.payload.table}"')["n"][0] == 1


def test_refusal_names_the_rule(mart: openmart.Mart) -> None:
    with pytest.raises(ValidationError, match="read-only and runs one statement; this query has 2"):
        mart.sql("COMMIT; DROP TABLE subscriptions")
    with pytest.raises(ValidationError, match="read-only: DROP is refused"):
        mart.sql("DROP TABLE subscriptions")
    with pytest.raises(ValidationError, match="read-only: cannot execute .* in a read-only transaction"):
        mart.sql("WITH gone AS (DELETE FROM subscriptions RETURNING *) SELECT * FROM gone")


def test_reads_work(mart: openmart.Mart, sub: openmart.Subscription) -> None:
    frame = mart.sql("SELECT name FROM subscriptions WHERE name = :n", {"n": "ro"})
    assert frame["name"].tolist() == ["ro"]
    odd = mart.sql("SELECT ';' AS a, $$;$$ AS b, E'\\';' AS c, 1 AS \"d;\" -- ; trailing\n;")
    assert odd.iloc[0].tolist() == [";", ";", "';", 1]
    assert mart.sql("/* nested /* ; */ still comment ; */ SELECT 2 AS two")["two"][0] == 2
    assert mart.sql("WITH t AS (SELECT 1 AS v) SELECT v FROM t")["v"][0] == 1
    assert mart.sql("VALUES (1, 'a')").shape == (1, 2)
    assert mart.sql("(SELECT x FROM " + f'"{sub.reference.table}"' + " ORDER BY x)")["x"].tolist() == [1.0, 2.0]
    assert not mart.sql("EXPLAIN SELECT * FROM subscriptions").empty
    assert mart.sql("SHOW transaction_read_only")["transaction_read_only"][0] == "on"


def test_query_errors_are_one_line(mart: openmart.Mart) -> None:
    with pytest.raises(ValidationError, match='relation "nowhere" does not exist'):
        mart.sql("SELECT * FROM nowhere")


def test_splitting_follows_postgresql() -> None:
    assert split_statements("SELECT 1;") == ["SELECT 1"]
    assert split_statements("SELECT 'a;b'; SELECT 2") == ["SELECT 'a;b'", "SELECT 2"]
    assert len(split_statements("SELECT x$1$ FROM t; SELECT 2")) == 2  # x$1$ is a name, not a dollar quote
    assert len(split_statements("SELECT $1; SELECT 2")) == 2  # $1 is a parameter
    assert len(split_statements("SELECT $a$ ; $b$ ; $a$")) == 1
    assert len(split_statements("SELECT e'\\'' ; SELECT 2")) == 2
    assert split_statements("-- only a comment ;\n /* and ; another */") == []
