#!/usr/bin/env bash
# Where one gateway call's cost goes, in figures that do not depend on how busy the machine is:
# user-space instructions per call (valgrind's callgrind), system calls per call (strace -c),
# and user / system CPU per call (/proc). The A/B table in BENCHMARKS.md was made with it.
#
#   crates/keel/benches/gateway/profile.sh <instructions|syscalls|cpu> <plain|stream> [keel binary]
#
# Builds the release keel and the gateway bench (whose `mock-upstream` mode is the upstream),
# serves keel on a free port in front of the mock, and sends 50 concurrent calls with oha.
# The keel binary defaults to this checkout's; pass another build's for an A/B. Needs oha, and
# valgrind (instructions) or strace (syscalls).
set -euo pipefail
mode=${1:?instructions, syscalls or cpu}
shape=${2:?plain or stream}
cd "$(dirname "$0")/../../../.."
cargo build --release -q -p keel --bin keel
keel=${3:-target/release/keel}
bench=$(cargo bench -q -p keel --bench gateway --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*gateway-[^"]*\)".*/\1/p' | tail -n1)
work=$(mktemp -d)
# As in the bench: keel alone on CPU 1, the mock and the load on CPU 0.
keel_cpu=() load_cpu=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  keel_cpu=(taskset -c 1) load_cpu=(taskset -c 0)
fi
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

"${load_cpu[@]}" "$bench" mock-upstream --threads 1 >"$work/mock.out" &
pids+=($!)
until grep -q listening "$work/mock.out" 2>/dev/null; do sleep 0.1; done
mock=$(awk '/listening/ {print $2}' "$work/mock.out")
port=$((20000 + RANDOM % 20000))
printf 'data_dir = "%s/data"\n[store]\ndurability = "normal"\n[providers.mock]\nkind = "openai"\nbase_url = "http://%s/v1"\napi_key_env = "BENCH_UPSTREAM_KEY"\n' \
  "$work" "$mock" >"$work/keel.toml"

export BENCH_UPSTREAM_KEY=sk-bench # the mock takes any key (not OPENAI_API_KEY: keel would add the real OpenAI)
unset OPENAI_API_KEY
export KEEL_LOG=warn            # no line per request (as --quiet, which older builds lack)
run_keel=("$keel" --config "$work/keel.toml" serve --listen "127.0.0.1:$port")
case $mode in
  instructions) run_keel=(valgrind --tool=callgrind --instr-atstart=no
    "--callgrind-out-file=$work/callgrind.out" "${run_keel[@]}") ;;
  syscalls | cpu) ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
"${keel_cpu[@]}" "${run_keel[@]}" 2>"$work/keel.err" &
keel_pid=$!
pids+=($keel_pid)
until grep -q "listening on" "$work/keel.err" 2>/dev/null; do sleep 0.2; done
key=$(cat "$work/data/admin.key")

extra=""
[ "$shape" = stream ] && extra=',"stream":true,"stream_options":{"include_usage":true}'
body='{"model":"mock/gpt-mock","messages":[{"role":"system","content":"You are a concise assistant."},{"role":"user","content":"Say hello to the benchmark in about ten words."}],"max_tokens":32'"$extra"'}'
calls=${KEEL_PROFILE_CALLS:-3000}
load() {
  "${load_cpu[@]}" oha --no-tui -c 50 -m POST -H 'content-type: application/json' -H "authorization: Bearer $key" \
    -d "$body" "$@" "http://127.0.0.1:$port/v1/chat/completions" >"$work/oha.out"
  grep -q 'Success rate:.*100.00%' "$work/oha.out" || { cat "$work/oha.out"; exit 1; }
}
load -n 300 # warm up: connections, caches, the key record

case $mode in
  instructions)
    callgrind_control -i on "$keel_pid" >/dev/null 2>&1
    load -n "$calls"
    callgrind_control -d "$keel_pid" >/dev/null 2>&1 # the instrumented calls only, as part 1
    kill "$keel_pid"
    wait "$keel_pid" 2>/dev/null || true
    total=$(callgrind_annotate "$work/callgrind.out.1" 2>/dev/null |
      awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "$shape: $((total / calls)) user-space instructions per call"
    ;;
  syscalls)
    strace -f -c -p "$keel_pid" -o "$work/strace.out" &
    tracer=$!
    sleep 1
    load -n "$calls"
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    echo "$shape: system calls per call"
    awk -v n="$calls" '$NF ~ /^[a-z_0-9]+$/ && $NF != "total" && $4 ~ /^[0-9]+$/ && $4 >= n / 10 {
      printf "  %-14s %.2f\n", $NF, $4 / n }' "$work/strace.out"
    ;;
  cpu)
    ticks() { awk '{print $14 + 0, $15 + 0}' "/proc/$keel_pid/stat"; }
    read -r user0 sys0 < <(ticks)
    load -n "$calls"
    read -r user1 sys1 < <(ticks)
    hz=$(getconf CLK_TCK)
    awk -v u=$((user1 - user0)) -v s=$((sys1 - sys0)) -v n="$calls" -v hz="$hz" -v shape="$shape" \
      -v rps="$(awk '/Requests\/sec/ {print $2}' "$work/oha.out")" \
      'BEGIN { printf "%s: user %.1f µs, system %.1f µs per call; %.0f calls/s\n", shape, u * 1e6 / hz / n, s * 1e6 / hz / n, rps }'
    ;;
esac
