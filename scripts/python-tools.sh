#!/usr/bin/env bash
# The Python tools the tests run as users would, each in its own venv outside the clone
# (their dependencies conflict), installed once with pip and pinned to the versions tested:
#   pyarrow  pyarrow's dataset reader (it skips names starting with `.` or `_`, as Spark does)
#   airbyte  PyAirbyte (its DuckDB cache) and the Airbyte protocol models
#   meltano  Meltano (it installs target-jsonl itself) and maturin (builds the wheel)
#   moto     moto's S3 server (a real S3 API on 127.0.0.1) and boto3, for the object-storage test
#   postgres meltanolabs-target-postgres, the Singer loader for PostgreSQL
#   dbt      dbt-duckdb (runs the shipped models) and DuckDB's Python client, of the DuckDB
#            version the connector bundles (a reader opening the file while a sync runs)
# `python-tools.sh TOOL` prints the python of TOOL's venv; without TOOL it installs them all.
set -euo pipefail
base="${POSTMARK_ELT_PY_VENV:-$HOME/.cache/postmark-elt/py}"

install() {
  local tool="$1" venv check packages
  case "$tool" in
    pyarrow) venv="$base"; check="import pyarrow.dataset"; packages="pyarrow==26.0.1" ;;
    airbyte) venv="$base-airbyte"; check="import airbyte, airbyte_protocol.models"; packages="airbyte==0.71.3" ;;
    meltano) venv="$base-meltano"; check="import meltano, maturin"; packages="meltano==4.4.1 maturin==1.16.0" ;;
    moto) venv="$base-moto"; check="import moto.server, boto3"; packages="moto[server]==5.2.5" ;;
    postgres) venv="$base-postgres"; check="import target_postgres"; packages="meltanolabs-target-postgres==0.8.1" ;;
    dbt) venv="$base-dbt"; check="import dbt.adapters.duckdb, duckdb"; packages="dbt-duckdb==1.10.1 dbt-core==1.10.23 duckdb==2.0.1" ;;
    *) echo "python-tools.sh: unknown tool $tool (pyarrow, airbyte, meltano, moto, postgres or dbt)" >&2; return 2 ;;
  esac
  mkdir -p "$(dirname "$base")"
  # Tests run side by side: one installs, the others wait for it.
  exec 9>"$venv.lock"
  flock 9
  if ! "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
    echo "python-tools.sh: installing $packages into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet --disable-pip-version-check $packages >&2
  fi
  exec 9>&-
  echo "$venv/bin/python"
}

if [ $# -eq 0 ]; then
  for tool in pyarrow airbyte meltano moto postgres dbt; do install "$tool" >/dev/null; done
else
  install "$1"
fi
