#!/usr/bin/env bash
# Install ContextIQ with its test dependencies into .venv and run the whole test suite.
#
# PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) tests run when the services answer and
# skip with a reason when they do not; with CI=true they are mandatory and fail instead.
# When PostgreSQL runs here without pgvector and we may install packages (root), pgvector is
# built first by scripts/install-pgvector.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"

pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if pg_up; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        scripts/install-pgvector.sh
    elif [ "${CI:-}" = "true" ]; then
        echo "CI: PostgreSQL runs but pgvector cannot be installed without root" >&2
    fi
elif [ "${CI:-}" = "true" ]; then
    echo "CI: PostgreSQL is not reachable on 127.0.0.1:5432; its tests will fail" >&2
fi

exec .venv/bin/python -m pytest "$@"
