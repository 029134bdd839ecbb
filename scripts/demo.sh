#!/usr/bin/env bash
# Quick-start demo: starts the project's fake Postmark API on 127.0.0.1 with two weeks of
# generated mail (one day above Postmark's 10,000-row paging limit), syncs it into
# postmark.duckdb with the real postmark-elt binary, and queries the result.
# Nothing leaves this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --quiet --workspace --bins
bin_dir="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug"
work="${DEMO_DIR:-demo}"
mkdir -p "$work"

port=$((20000 + RANDOM % 20000))
"$bin_dir/fake-postmark" --listen "127.0.0.1:$port" --days 14 --per-day 1000 --hot-day 25000 > "$work/fake.log" 2>&1 &
fake_pid=$!
trap 'kill $fake_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q "fake Postmark on" "$work/fake.log" 2>/dev/null && break
  sleep 0.1
done

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
