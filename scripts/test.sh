#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs every test of the
# workspace. `--no-fail-fast` so that one failing test binary never hides the others; extra
# arguments go to `cargo test` (e.g. a test name).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: a C++ compiler for the bundled DuckDB, headless Chromium for
# the test that renders `postmark-elt report`, and PostgreSQL's server for the Singer loader's
# test (tests/postgres.rs starts its own server; the package's default cluster is not used).
missing=""
command -v c++ >/dev/null 2>&1 || missing="$missing g++"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing="$missing postgresql"
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "scripts/test.sh: the tests need these Debian packages:$missing; install them (apt-get install$missing) and run again" >&2
    exit 1
  fi
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "scripts/test.sh: installing$missing" >&2
  $sudo_cmd apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

# Python tools the tests run as users would (pyarrow), in a venv outside the clone.
bash scripts/python-tools.sh >/dev/null

exec cargo test --workspace --no-fail-fast "$@"
