#!/usr/bin/env bash
# Start a local PostgreSQL for the store tests (Debian `postgresql`), listening on
# 127.0.0.1 only, with a `voicebot` role owning a `voicebot_test` database. Idempotent.
# Prints the URL to export as VOICEBOT_TEST_PG_URL.
set -euo pipefail
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main"; then
    pg_createcluster "$version" main >/dev/null
fi
echo "listen_addresses = '127.0.0.1'" >"/etc/postgresql/$version/main/conf.d/voicebot.conf"
pg_ctlcluster "$version" main restart
as_postgres() { su postgres -s /bin/sh -c "$1"; }
as_postgres "psql -q -v ON_ERROR_STOP=1 -c \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'voicebot') THEN CREATE ROLE voicebot LOGIN PASSWORD 'voicebot'; END IF; END \\\$\\\$;\""
as_postgres "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'voicebot_test'\"" | grep -q 1 \
    || as_postgres "createdb -O voicebot voicebot_test"
echo "postgresql+psycopg://voicebot:voicebot@127.0.0.1:5432/voicebot_test"
