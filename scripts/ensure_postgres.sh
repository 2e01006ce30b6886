#!/usr/bin/env bash
# Start the local PostgreSQL cluster when it is down (the tests talk to it on 127.0.0.1:5432).
set -euo pipefail
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "ensure_postgres: PostgreSQL is not installed; the PostgreSQL tests will be skipped" >&2
    exit 0
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
echo "ensure_postgres: starting PostgreSQL $version"
pg_ctlcluster --skip-systemctl-redirect "$version" main start
for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && exit 0
    sleep 1
done
echo "ensure_postgres: PostgreSQL did not come up on 127.0.0.1:5432" >&2
exit 1
