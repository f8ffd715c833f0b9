#!/bin/bash
# The read API's own database user, challenge_api (SPEC §8: least
# privilege). The postgres image runs /docker-entrypoint-initdb.d/* once, as
# POSTGRES_USER, when it initialises an empty data volume.
#
# challenge_api gets its privileges from challenge_reader: SELECT on the
# readings and the device summary, INSERT on audit_log, granted by migration
# 0002 when the worker first migrates. The role is created here as well
# (NOLOGIN, no privileges until then) because challenge_api must be made a
# member of it now; the migration finds it and grants.
#
# Idempotent. On a volume initialised before this script existed, run it
# once by hand:
#   docker compose exec postgres /docker-entrypoint-initdb.d/10-api-role.sh
set -e
: "${API_DB_PASSWORD:?set API_DB_PASSWORD, the password of the API database user}"

# \getenv keeps the password off psql's command line.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" <<'SQL'
\getenv api_password API_DB_PASSWORD
SELECT 'CREATE ROLE challenge_reader NOLOGIN'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'challenge_reader') \gexec
SELECT 'CREATE ROLE challenge_api LOGIN'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'challenge_api') \gexec
SELECT format('ALTER ROLE challenge_api LOGIN PASSWORD %L', :'api_password') \gexec
GRANT challenge_reader TO challenge_api;
SQL
