#!/bin/sh
# Login roles of the pgpulse stack, made on the database's first start (mounted into
# /docker-entrypoint-initdb.d, run by the image's entrypoint as POSTGRES_USER).
#
#   DB_USER / DB_PASSWORD                 the application (proxy, collector): member
#                                         of pgpulse_writer
#   GRAFANA_DB_USER / GRAFANA_DB_PASSWORD Grafana: member of pgpulse_reader, read-only
#                                         sessions, statement timeout 30 s
#
# The NOLOGIN group roles belong to the migrations (revision 0001); they are made
# here too, with the same idempotent block, because this runs before the first
# migration. Re-running the script is harmless: existing roles get the passwords and
# memberships given now. Values reach SQL only through psql variables quoted by
# format(%I, %L), never pasted into the SQL text.
set -eu

: "${DB_USER:?DB_USER is not set}"
: "${DB_PASSWORD:?DB_PASSWORD is not set}"
: "${GRAFANA_DB_USER:?GRAFANA_DB_USER is not set}"
: "${GRAFANA_DB_PASSWORD:?GRAFANA_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    --set app_user="$DB_USER" --set app_password="$DB_PASSWORD" \
    --set reader_user="$GRAFANA_DB_USER" --set reader_password="$GRAFANA_DB_PASSWORD" <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgpulse_reader') THEN
    CREATE ROLE pgpulse_reader NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgpulse_writer') THEN
    CREATE ROLE pgpulse_writer NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

SELECT format('CREATE ROLE %I LOGIN', :'app_user')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L',
              :'app_user', :'app_password') \gexec
SELECT format('GRANT pgpulse_writer TO %I', :'app_user') \gexec

SELECT format('CREATE ROLE %I LOGIN', :'reader_user')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L',
              :'reader_user', :'reader_password') \gexec
SELECT format('GRANT pgpulse_reader TO %I', :'reader_user') \gexec
-- Grafana only reads: a dashboard query can neither write nor run for ever.
SELECT format('ALTER ROLE %I SET default_transaction_read_only = on', :'reader_user') \gexec
SELECT format('ALTER ROLE %I SET statement_timeout = %L', :'reader_user', '30s') \gexec
SQL
echo "pgpulse roles ready: $DB_USER (pgpulse_writer), $GRAFANA_DB_USER (pgpulse_reader)"
