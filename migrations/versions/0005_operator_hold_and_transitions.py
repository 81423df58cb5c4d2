"""One batch lifecycle: the hidden state "held + error_kind operator" becomes the status
operator_hold, and PostgreSQL refuses a status it does not know or a move the lifecycle does not
allow (a copy of appendq.batches.lifecycle.TRANSITIONS; tests/test_lifecycle.py keeps the two
equal).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 18:05:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = (
    "ready",
    "sending",
    "appended",
    "retry_wait",
    "in_doubt",
    "held",
    "operator_hold",
    "rejected",
    "failed",
    "dry_run",
)
#: (from, to) between two different statuses; a move to the same status is always allowed.
MOVES = (
    ("dry_run", "ready"),
    ("failed", "ready"),
    ("held", "appended"),
    ("held", "dry_run"),
    ("held", "ready"),
    ("held", "sending"),
    ("in_doubt", "appended"),
    ("in_doubt", "operator_hold"),
    ("in_doubt", "ready"),
    ("operator_hold", "ready"),
    ("operator_hold", "rejected"),
    ("ready", "appended"),
    ("ready", "dry_run"),
    ("ready", "held"),
    ("ready", "sending"),
    ("rejected", "ready"),
    ("retry_wait", "appended"),
    ("retry_wait", "dry_run"),
    ("retry_wait", "held"),
    ("retry_wait", "ready"),
    ("retry_wait", "sending"),
    ("sending", "appended"),
    ("sending", "failed"),
    ("sending", "held"),
    ("sending", "in_doubt"),
    ("sending", "operator_hold"),
    ("sending", "ready"),
    ("sending", "rejected"),
    ("sending", "retry_wait"),
)


def _guard() -> str:
    allowed = ", ".join(f"('{a}', '{b}')" for a, b in MOVES)
    return f"""
CREATE FUNCTION batches_transition_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status
       AND (OLD.status, NEW.status) NOT IN ({allowed}) THEN
        RAISE EXCEPTION 'batch %: % -> % is not a batch transition', OLD.id, OLD.status,
            NEW.status USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$"""


def upgrade() -> None:
    op.execute(
        "UPDATE batches SET status = 'operator_hold' "
        "WHERE status = 'held' AND error_kind = 'operator'"
    )
    known = ", ".join(f"'{s}'" for s in STATUSES)
    op.create_check_constraint(op.f("ck_batches_status_known"), "batches", f"status IN ({known})")
    op.execute(_guard())
    op.execute(
        "CREATE TRIGGER batches_transition_guard BEFORE UPDATE OF status ON batches "
        "FOR EACH ROW EXECUTE FUNCTION batches_transition_guard()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER batches_transition_guard ON batches")
    op.execute("DROP FUNCTION batches_transition_guard()")
    op.drop_constraint(op.f("ck_batches_status_known"), "batches", type_="check")
    op.execute(
        "UPDATE batches SET status = 'held', error_kind = 'operator' "
        "WHERE status = 'operator_hold'"
    )
