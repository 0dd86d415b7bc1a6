"""The PostgreSQL engine: pieces computed in the mart's own tables (SQL pushdown), over a
:class:`~openmart.mart.windows.Relation` (a window, a chunk, a labelled set)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openmart.aggregates.specs import Pieces, Spec
from openmart.mart.engines.compile import POSTGRES, query
from openmart.mart.engines.results import piece
from openmart.mart.windows import Relation, driver


def run(conn: Any, relation: Relation, specs: Sequence[Spec]) -> Pieces:
    """Every spec over the relation's rows, in the connection's transaction (one snapshot)."""
    values = {}
    with driver(conn).cursor() as cur:
        for spec in specs:
            sql, params = relation.query(query(spec, "{w}", POSTGRES))
            # the relation's SQL is parameterised with psycopg2's %(name)s; literals carry no %
            cur.execute(sql, params)
            values[spec] = piece(spec, cur.fetchall())
    return Pieces(values)
