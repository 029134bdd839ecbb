# Sourced by the scripts here: builds the binaries and starts the fake Postmark API on
# 127.0.0.1 (loopback only), stopped when the calling script exits.
#   start_fake LOG_FILE [fake-postmark options...]   sets bin_dir, port and fake_pid
cargo build --quiet --workspace --bins
bin_dir="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug"

start_fake() {
  local log="$1"
  shift
  port=$((20000 + RANDOM % 20000))
  "$bin_dir/fake-postmark" --listen "127.0.0.1:$port" "$@" > "$log" 2>&1 &
  fake_pid=$!
  for _ in $(seq 1 100); do
    grep -q "fake Postmark on" "$log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "the fake Postmark API did not start: $(cat "$log")" >&2
  return 1
}
