#!/usr/bin/env bash
# Weir against Apache Flink on the same keyed running sum, scenario by scenario, back to back.
#
# For each scenario, runs the Flink peer (`shared/peer/flink/run.sh`, a real Flink 2.3 from
# PyPI on an in-JVM MiniCluster) and then Weir's port of the same job (`examples/peer.rs`,
# same event formulas, parallelism 2, 1 s checkpoints, RocksDB unless said otherwise), and
# prints both figures and the ratio Weir / Flink. Each engine waits for an idle machine first
# and reports the share of the CPU others used while it ran (`cpu_other_pct`).
#
# Usage:  benches/peer/compare.sh                    # every scenario (~20 min on 2 idle cores)
#         QUICK=1 benches/peer/compare.sh            # small sizes (~5 min)
#         SCENARIOS="ckpt recovery" benches/peer/compare.sh
# Env:    PEER_DIR (default ../shared/peer/flink from the repository), WORK (default /tmp/peer),
#         EVENTS REC_EVENTS LARGE_KEYS LARGE_PAD (as the Flink peer), WEIR_ARGS (extra
#         key=value arguments for every Weir run, e.g. state_cache_mb=256), WEIR_TUNED_ARGS
#         (a second Weir run per scenario with these settings, printed as "Weir tuned"; default
#         "state_cache_mb=32 memtable_at_barrier=log", the RocksDB settings for a hot set of
#         keys; empty: no second run).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PEER_DIR=${PEER_DIR:-$ROOT/../shared/peer/flink}
WORK=${WORK:-/tmp/peer}
SCENARIOS=${SCENARIOS:-"nockpt ckpt hashmap recovery recovery_large"}
if [[ "${QUICK:-0}" == 1 ]]; then
  EVENTS=${EVENTS:-5000000}; REC_EVENTS=${REC_EVENTS:-6000000}
  LARGE_KEYS=${LARGE_KEYS:-1000000}; LARGE_PAD=${LARGE_PAD:-100}
else
  EVENTS=${EVENTS:-30000000}; REC_EVENTS=${REC_EVENTS:-20000000}
  LARGE_KEYS=${LARGE_KEYS:-10000000}; LARGE_PAD=${LARGE_PAD:-100}
fi
export EVENTS REC_EVENTS LARGE_KEYS LARGE_PAD WORK
[[ -x "$PEER_DIR/run.sh" ]] || { echo "compare.sh: no Flink peer at $PEER_DIR (set PEER_DIR)" >&2; exit 2; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/weir-dev-target}
log() { echo "# $(date +%H:%M:%S) $*" >&2; }

log "building the Weir peer (release)"
cargo build --release --quiet --example peer
WEIR_BIN="$CARGO_TARGET_DIR/release/examples/peer"
mkdir -p "$WORK/compare"

# The Weir arguments of a scenario (the Flink peer's sizes and settings).
weir_args() {
  case "$1" in
    nockpt) echo "events=$EVENTS checkpointing=false" ;;
    ckpt) echo "events=$EVENTS" ;;
    hashmap) echo "events=$EVENTS backend=memory" ;;
    recovery) echo "events=$REC_EVENTS fail_at=$((REC_EVENTS / 3)) verify=true" ;;
    recovery_large) echo "events=$((LARGE_KEYS * 3)) keys=$LARGE_KEYS pad=$LARGE_PAD fail_at=$((LARGE_KEYS / 2)) stop_after_catchup_ms=10000" ;;
    *) echo "compare.sh: unknown scenario $1" >&2; exit 2 ;;
  esac
}

WEIR_TUNED_ARGS=${WEIR_TUNED_ARGS-state_cache_mb=32 memtable_at_barrier=log}
declare -A F W T
busy_pct() {
  local a b
  read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat; sleep 2
  read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
  a=$(( (u2+n2+s2+i2+w2+q2+sq2+st2) - (u1+n1+s1+i1+w1+q1+sq1+st1) ))
  b=$(( (i2+w2) - (i1+w1) ))
  echo $(( a > 0 ? 100 * (a - b) / a : 0 ))
}
for sc in $SCENARIOS; do
  log "scenario $sc: Flink"
  SCENARIOS=$sc "$PEER_DIR/run.sh" > "$WORK/compare/$sc.flink" 2> "$WORK/compare/$sc.flink.err" || {
    log "the Flink peer failed on $sc (see $WORK/compare/$sc.flink.err)"; }
  while read -r _ s kv; do F[$sc.${kv%%=*}]=${kv#*=}; done < <(grep -E "^flink $sc [a-z_0-9]+=" "$WORK/compare/$sc.flink" || true)
  log "scenario $sc: Weir"
  waited=0
  while (( $(busy_pct) > 15 && waited < ${IDLE_WAIT_S:-300} )); do waited=$((waited + 2)); done
  rm -rf "$WORK/weir"
  # shellcheck disable=SC2046
  "$WEIR_BIN" $(weir_args "$sc") ${WEIR_ARGS:-} launch_ms="$(date +%s%3N)" work="$WORK/weir" tag="$sc" \
    > "$WORK/compare/$sc.weir" 2> "$WORK/compare/$sc.weir.err" || log "Weir failed on $sc (see $WORK/compare/$sc.weir.err)"
  while read -r _ kv; do W[$sc.${kv%%=*}]=${kv#*=}; done < <(grep -E '^weir [a-z_0-9]+=' "$WORK/compare/$sc.weir" || true)
  if [[ -n "$WEIR_TUNED_ARGS" && "$sc" != hashmap ]]; then
    log "scenario $sc: Weir tuned ($WEIR_TUNED_ARGS)"
    rm -rf "$WORK/weir"
    # shellcheck disable=SC2046,SC2086
    "$WEIR_BIN" $(weir_args "$sc") ${WEIR_ARGS:-} $WEIR_TUNED_ARGS launch_ms="$(date +%s%3N)" work="$WORK/weir" \
      tag="$sc-tuned" > "$WORK/compare/$sc.tuned" 2> "$WORK/compare/$sc.tuned.err" \
      || log "Weir tuned failed on $sc (see $WORK/compare/$sc.tuned.err)"
    while read -r _ kv; do T[$sc.${kv%%=*}]=${kv#*=}; done < <(grep -E '^weir [a-z_0-9]+=' "$WORK/compare/$sc.tuned" || true)
  fi
done

# figure | scenario.key | lower is better
ROWS=(
  "events/s, RocksDB, no checkpoints|nockpt.steady_eps|0"
  "events/s, RocksDB, checkpoint every 1 s|ckpt.steady_eps|0"
  "events/s, in-memory state, checkpoint every 1 s|hashmap.steady_eps|0"
  "checkpoint duration p50, 100 k keys (ms)|ckpt.ckpt_rest_duration_ms_p50|1"
  "checkpoint pause of a keyed subtask p50 (ms; Weir only)|ckpt.ckpt_sync_ms_p50|1"
  "launch to first record (ms)|ckpt.startup_to_first_record_ms|1"
  "recovery, 100 k keys: first record (ms)|recovery.recovery_first_record_ms|1"
  "recovery, 100 k keys: back to 90 % rate (ms)|recovery.recovery_ms|1"
  "recovery, 100 k keys: lost work redone (ms)|recovery.recovery_catchup_ms|1"
  "recovery, large state: first record (ms)|recovery_large.recovery_first_record_ms|1"
  "recovery, large state: caught up (ms)|recovery_large.recovery_catchup_ms|1"
  "events/s before the failure, large state|recovery_large.pre_failure_eps|0"
  "exactly-once check after the failure|recovery.verify|-"
)
echo
echo "compare date=$(date -u +%Y-%m-%dT%H:%M:%SZ) cores=$(nproc) load=\"$(cut -d' ' -f1-3 /proc/loadavg)\" events=$EVENTS rec_events=$REC_EVENTS large_keys=$LARGE_KEYS"
ratio() {
  python3 -c "import sys
try: print(f'{float(sys.argv[2]) / float(sys.argv[1]):.2f}')
except Exception: print('n/a')" "$1" "$2"
}
printf '| %s | %s | %s | %s | %s | %s |\n' "figure" "Flink" "Weir" "Weir / Flink" "Weir tuned" "tuned / Flink"
printf '|---|---:|---:|---:|---:|---:|\n'
for row in "${ROWS[@]}"; do
  IFS='|' read -r name key _ <<< "$row"
  f=${F[$key]:-n/a}; w=${W[$key]:-n/a}; t=${T[$key]:-n/a}
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$f" "$w" "$(ratio "$f" "$w")" "$t" "$(ratio "$f" "$t")"
done
echo
for sc in $SCENARIOS; do
  echo "load while $sc ran: flink cpu_other_pct=${F[$sc.cpu_other_pct]:-n/a} weir cpu_other_pct=${W[$sc.cpu_other_pct]:-n/a} tuned cpu_other_pct=${T[$sc.cpu_other_pct]:-n/a}"
done
echo "raw output: $WORK/compare/<scenario>.{flink,weir,tuned}"
