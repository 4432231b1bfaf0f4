"""The audit log: every administrative act, appended and never changed.

``audit_log`` records who did what, when, from which address and with what outcome:
API keys created and revoked (CLI and API), restores, reject replays, and any later
act of the same kind. It is written only by ``pgpulse.store.audit``.

Append-only twice over:

* privileges: ``pgpulse_writer`` (the application's role) may INSERT and SELECT,
  and UPDATE, DELETE and TRUNCATE are revoked from it;
* triggers that raise on UPDATE, DELETE (per row) and TRUNCATE (per statement), so
  that not even the table's owner (the role the migrations run as) changes a row
  without first dropping or disabling the trigger, an act of DDL that shows.

``pgpulse_reader`` (Grafana) gets no access: the log names keys and addresses.
The same plain table on both engines.

Revision ID: 0008_audit
Revises: 0007_timescale_roles
Create Date: 2026-12-01
"""

from alembic import op

revision = "0008_audit"
down_revision = "0007_timescale_roles"
branch_labels = None
depends_on = None

OUTCOMES = ("ok", "refused", "failed")


def upgrade() -> None:
    outcomes = ", ".join(f"'{o}'" for o in OUTCOMES)
    op.execute(
        f"""
        CREATE TABLE audit_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            actor text NOT NULL,
            actor_key_id bigint,
            action text NOT NULL,
            target text,
            address text,
            outcome text NOT NULL CHECK (outcome IN ({outcomes})),
            details jsonb NOT NULL DEFAULT '{{}}'::jsonb
        )
        """
    )
    op.execute("CREATE INDEX audit_log_at_idx ON audit_log (at)")
    op.execute("CREATE INDEX audit_log_action_idx ON audit_log (action, id)")
    op.execute(
        """
        CREATE FUNCTION pgpulse_audit_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION pgpulse_audit_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION pgpulse_audit_append_only()"
    )
    op.execute("REVOKE ALL ON audit_log FROM PUBLIC, pgpulse_writer, pgpulse_reader")
    op.execute("GRANT SELECT, INSERT ON audit_log TO pgpulse_writer")
    op.execute("REVOKE ALL ON FUNCTION pgpulse_audit_append_only() FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS audit_log")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_audit_append_only()")
