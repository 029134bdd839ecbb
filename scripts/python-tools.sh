#!/usr/bin/env bash
# The Python tools the tests use as a user would: pyarrow (its dataset reader skips only names
# starting with `.` or `_`, as Spark does). Installed once into a venv outside the clone;
# prints the venv's python.
set -euo pipefail
venv="${POSTMARK_ELT_PY_VENV:-$HOME/.cache/postmark-elt/py}"
if ! "$venv/bin/python" -c "import pyarrow.dataset" >/dev/null 2>&1; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "pyarrow>=14" >&2
fi
echo "$venv/bin/python"
