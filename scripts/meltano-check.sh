#!/usr/bin/env bash
# Runs postmark-elt as a Meltano custom extractor into target-jsonl, twice (the second run gets
# the state Meltano saved), against the fake Postmark API on 127.0.0.1. Needs PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/fake-env.sh
work="$(mktemp -d)"
trap 'kill ${fake_pid:-0} 2>/dev/null || true; rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet meltano

start_fake "$work/fake.log" --days 3 --per-day 500 --hot-day 700

mkdir -p "$work/project/output"
cat > "$work/project/meltano.yml" <<YAML
version: 1
default_environment: dev
project_id: postmark-elt-check
environments:
  - name: dev
plugins:
  extractors:
    - name: tap-postmark
      namespace: tap_postmark
      executable: $bin_dir/postmark-elt
      capabilities: [catalog, discover, state]
      settings:
        - {name: server_token, kind: password}
        - {name: start_date}
        - {name: base_url}
      config:
        start_date: "$(date -u -d '4 days ago' +%Y-%m-%d)"
        base_url: http://127.0.0.1:$port
  loaders:
    - name: target-jsonl
      namespace: target_jsonl
      pip_url: target-jsonl
      executable: target-jsonl
      settings:
        - {name: destination_path}
      config:
        destination_path: output
YAML
cd "$work/project"
export TAP_POSTMARK_SERVER_TOKEN=fake-server-token-0000 MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
"$work/venv/bin/meltano" install > install.log 2>&1
"$work/venv/bin/meltano" run tap-postmark target-jsonl > run1.log 2>&1
first=$(cat output/*.jsonl | wc -l)
"$work/venv/bin/meltano" run tap-postmark target-jsonl > run2.log 2>&1
grep -q "Reading state from" run2.log
echo "meltano run: $first rows in $(ls output | wc -l) files; second run resumed from Meltano's saved state"
