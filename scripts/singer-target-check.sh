#!/usr/bin/env bash
# Pipes postmark-elt's Singer output (the tap invocation, as Meltano runs it) into a real Singer
# target from PyPI, target-jsonl, and checks that it accepted every stream and record.
# Needs PyPI; runs against the fake Postmark API on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/fake-env.sh
work="$(mktemp -d)"
trap 'kill ${fake_pid:-0} 2>/dev/null || true; rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet target-jsonl

start_fake "$work/fake.log" --days 3 --per-day 800 --hot-day 1200

umask 077
printf '{"server_token": "fake-server-token-0000", "base_url": "http://127.0.0.1:%s", "start_date": "%s"}\n' \
  "$port" "$(date -u -d '5 days ago' +%Y-%m-%d)" > "$work/config.json"
mkdir -p "$work/out"
printf '{"destination_path": "%s/out"}\n' "$work" > "$work/target.json"

"$bin_dir/postmark-elt" --config "$work/config.json" > "$work/singer.jsonl"
( cd "$work" && "$work/venv/bin/target-jsonl" --config target.json < singer.jsonl > state.out )

records=$(grep -c '"type":"RECORD"' "$work/singer.jsonl" || true)
written=$(cat "$work"/out/*.jsonl | wc -l)
streams=$(ls "$work/out" | wc -l)
echo "target-jsonl wrote $written rows in $streams stream files from $records RECORD messages; last state: $(tail -c 200 "$work/state.out")"
[ "$records" -gt 0 ] && [ "$written" -eq "$records" ] && [ -s "$work/state.out" ]
