"""feedback is unique on its scoring id

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

A label belongs to one scored record: logging the same feedback twice doubled the labelled count.
Each feedback table's ``scoring_id`` index becomes unique (standalone feedback, without a scoring
id, is unaffected: NULLs never collide). Where a mart already holds repeated labels for one
scoring id, the newest one (highest ``record_id``) is kept, as ``feedback log --replace`` would.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _feedback_tables() -> list[str]:
    return [r[0] for r in op.get_bind().exec_driver_sql("SELECT feedback_table FROM subscriptions").fetchall()]


def upgrade() -> None:
    for table in _feedback_tables():
        t = _quote(table)
        op.execute(
            f"DELETE FROM {t} f USING {t} newer WHERE f.scoring_id = newer.scoring_id AND f.record_id < newer.record_id"
        )
        op.execute(f"DROP INDEX IF EXISTS {_quote(table + '_sid')}")
        op.execute(f"CREATE UNIQUE INDEX {_quote(table + '_sid')} ON {t} (scoring_id)")


def downgrade() -> None:
    for table in _feedback_tables():
        op.execute(f"DROP INDEX IF EXISTS {_quote(table + '_sid')}")
        op.execute(f"CREATE INDEX {_quote(table + '_sid')} ON {_quote(table)} (scoring_id)")
