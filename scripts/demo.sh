#!/usr/bin/env bash
# Quick-start demo: starts the project's fake Postmark API on 127.0.0.1 with two weeks of
# generated mail (one day above Postmark's 10,000-row paging limit), syncs it into
# postmark.duckdb with the real postmark-elt binary, queries the result, and writes the report.
# Nothing leaves this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/fake-env.sh
work="${DEMO_DIR:-demo}"
mkdir -p "$work"
trap 'kill ${fake_pid:-0} 2>/dev/null || true' EXIT
start_fake "$work/fake.log" --days 14 --per-day 1000 --hot-day 25000

start=$(date -u -d '15 days ago' +%Y-%m-%d)
umask 077
cat > "$work/config.json" <<JSON
{
  "server_token": "fake-server-token-0000",
  "base_url": "http://127.0.0.1:$port",
  "start_date": "$start"
}
JSON

cd "$work"
"$bin_dir/postmark-elt" sync --config config.json
echo
echo "Synced into $work/postmark.duckdb. Messages per day (UTC) and stream:"
"$bin_dir/postmark-elt" query --path postmark.duckdb \
  "SELECT CAST(received_at AS DATE) AS day_utc, message_stream, count(*) AS messages, count(*) FILTER (WHERE tag IS NULL) AS untagged FROM messages_outbound GROUP BY ALL ORDER BY day_utc, message_stream"

"$bin_dir/postmark-elt" report --path postmark.duckdb --out report.html >/dev/null
echo
echo "Report: $work/report.html (open it in a browser)."
echo "Analyst models, created as views in $work/postmark.duckdb:"
"$bin_dir/postmark-elt" query --path postmark.duckdb \
  "SELECT table_name AS model FROM information_schema.tables WHERE table_type = 'VIEW' ORDER BY 1"
echo "e.g."
echo "  postmark-elt query --path $work/postmark.duckdb \"SELECT * FROM postmark_deliverability_daily LIMIT 5\""
echo "The same models as dbt files: models/postmark/ (see the README, \"Analyst models\")."
