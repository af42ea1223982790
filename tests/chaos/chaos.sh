#!/usr/bin/env bash
# Chaos soak: concurrent writers commit, roll back and hold transactions open past the safety
# margin while the relay is killed with SIGKILL every 1-4 s and PostgreSQL is crashed (immediate
# stop) halfway through. Then the relay drains, and every committed event must have reached the
# sink, in per-aggregate order at its first delivery, and no rolled-back one.
#
#   tests/chaos/chaos.sh --seconds N --mode margin|settled [--build-dir DIR] [--seed N] [--keep]
#
# The traffic comes in busy spells and lulls. In a lull one writer plays a duet on two
# connections: a transaction takes its xid, a second one takes an event id, the first inserts its
# event (a higher id) and commits, and the second stays open past the margin before it commits.
# A relay that takes the second for finished loses its event; under steady load a newer commit
# hides that, so it shows only when the database is quiet (see chaos.py).
#
# Everything runs in a fresh directory under /tmp: its own PostgreSQL (scripts/pg-tmp, unix socket
# only), the relay's output (the stdout sink, appended to by every run of the relay), the relay's
# log and the writers' records (tests/chaos/chaos.py). The directory is removed when the run passes
# (unless --keep) and kept, with its path printed, when it fails. Exits 0 when nothing committed is
# missing, nothing rolled back or unknown was delivered, the order held and the harness agrees with
# the table; 1 otherwise; 2 on a usage error.
#
# The relay binary and its stdout plugin are copied from the build directory (default build/;
# built first when missing) into the work directory, so that a rebuild meanwhile cannot swap the
# relay under test. Needs python3-psycopg2 (scripts/deps installs it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly ROOT
readonly CHAOS_PY="$ROOT/tests/chaos/chaos.py"
readonly RELAY_NAME=chaos
# psycopg2 comes from Debian's python3-psycopg2, which only Debian's interpreter sees: a pyenv or
# virtualenv python3 earlier in PATH would not find it.
readonly PYTHON=${CHAOS_PYTHON:-/usr/bin/python3}
# 6 writers carry the bulk of the traffic (FAST_RATE transactions/s each at most), 1 holds all its
# transactions open past the margin, and 1 plays a duet in each lull: the last LULL_QUIET seconds
# of every LULL_PERIOD, when the others keep quiet (see PROFILES in chaos.py for why).
readonly FAST_WRITERS=6
readonly FAST_RATE=80
readonly SLOW_WRITERS=1
readonly LULL_PERIOD=9
readonly LULL_QUIET=4.5
BUSY_SHARE=$(awk -v p="$LULL_PERIOD" -v q="$LULL_QUIET" 'BEGIN { print (p - q) / p }')
readonly BUSY_SHARE
# Extra settings for the soak's server: commit timestamps let the report say how long after its
# created_at a missing event committed.
readonly PG_CONF="track_commit_timestamp = on"
readonly DRAIN_TIMEOUT=60 # s: the relay must deliver everything after the writers stop
readonly STABLE_MS=3000   # the output must stop growing for this long to count as drained
readonly WRITER_GRACE=90  # s after --seconds for the writers to finish (they give up at 60)
readonly BUILD_WAIT=900   # s to wait for a build already running in the build directory
# $EPOCHREALTIME must use a decimal point.
export LC_ALL=C

SOAK_SECONDS=""
MODE=""
BUILD_DIR="$ROOT/build"
SEED=${RANDOM}${RANDOM}
KEEP=0

WORK_DIR=""
PG_DIR=""
CONNINFO=""
CONFIG=""
OUTPUT=""
RELAY_LOG=""
DUET_FLAG=""
RELAY_BIN=""
RELAY_PID=""
WRITER_PIDS=()
RELAY_STARTS=0
RELAY_KILLS=0
RELAY_EXITS=() # the statuses of the relay's exits of its own accord
PG_RESTARTS=0
DRAIN="ok"
RELAY_STOP="not stopped"
PASSED=0

say() {
    echo "chaos: $*" >&2
}

die() {
    say "$*"
    exit 1
}

usage() {
    echo "usage: $0 --seconds N --mode margin|settled [--build-dir DIR] [--seed N] [--keep]" >&2
    exit 2
}

parse_arguments() {
    while (($# > 0)); do
        if [[ "$1" == --keep ]]; then
            KEEP=1
            shift
            continue
        fi
        (($# >= 2)) || usage
        case "$1" in
        --seconds) SOAK_SECONDS=$2 ;;
        --mode) MODE=$2 ;;
        --build-dir) BUILD_DIR=$(realpath -m -- "$2") ;;
        --seed) SEED=$2 ;;
        *) usage ;;
        esac
        shift 2
    done
    [[ "$SOAK_SECONDS" =~ ^[1-9][0-9]*$ ]] || usage
    [[ "$MODE" == margin || "$MODE" == settled ]] || usage
    [[ "$SEED" =~ ^[0-9]+$ ]] || die "--seed wants a whole number, not '$SEED'"
}

now_ms() {
    local t=${EPOCHREALTIME/./}
    echo $((10#$t / 1000))
}

# A ninja whose working directory is DIR (ninja -C changes into it) is building there right now.
ninja_running_in() {
    local dir comm
    dir=$(realpath -m -- "$1")
    for comm in /proc/[0-9]*/comm; do
        [[ "$(cat "$comm" 2>/dev/null)" == ninja ]] || continue
        [[ "$(readlink "${comm%/comm}/cwd" 2>/dev/null)" == "$dir" ]] && return 0
    done
    return 1
}

# Waits for a build running in BUILD_DIR (scripts/test may be at it), then builds only what is
# missing: a binary that exists is taken as it is, since src/ may be in the middle of a change.
ensure_built() {
    local deadline=$((SECONDS + BUILD_WAIT)) noted=0
    while ninja_running_in "$BUILD_DIR"; do
        ((SECONDS < deadline)) || die "the build in $BUILD_DIR did not finish within ${BUILD_WAIT}s"
        ((noted)) || say "waiting for the build running in $BUILD_DIR"
        noted=1
        sleep 1
    done
    if [[ -x "$BUILD_DIR/outbox-relay" && -f "$BUILD_DIR/plugins/stdout/stdout.so" ]]; then
        return
    fi
    say "building $BUILD_DIR"
    if [[ ! -f "$BUILD_DIR/meson-private/coredata.dat" ]]; then
        meson setup "$BUILD_DIR" "$ROOT" >&2 || die "meson setup $BUILD_DIR failed (see above)"
    fi
    ninja -C "$BUILD_DIR" >&2 || die "the build in $BUILD_DIR failed (see above)"
}

check_tools() {
    "$PYTHON" -c 'import psycopg2' 2>/dev/null ||
        die "$PYTHON cannot import psycopg2: install python3-psycopg2 (scripts/deps does)"
    command -v psql >/dev/null ||
        die "psql not found: install postgresql-client (scripts/deps does)"
}

# The relay looks for plugins/NAME/NAME.so beside its executable, as in the build tree.
copy_relay() {
    mkdir -p "$WORK_DIR/relay/plugins/stdout"
    cp "$BUILD_DIR/outbox-relay" "$WORK_DIR/relay/"
    cp "$BUILD_DIR/plugins/stdout/stdout.so" "$WORK_DIR/relay/plugins/stdout/"
    RELAY_BIN="$WORK_DIR/relay/outbox-relay"
}

sql() {
    # Bounded: a poll must not hang on a server that is restarting.
    timeout 15 psql "$CONNINFO" -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

# pg-tmp is called with the soak's extra settings each time, since it rewrites them at every start.
pg_tmp() {
    PG_TMP_CONF=$PG_CONF "$ROOT/scripts/pg-tmp" "$@"
}

start_postgres() {
    # Under /tmp, 0755: as root the server runs as postgres, which must reach the directory (and
    # the socket path must stay short).
    WORK_DIR=$(mktemp -d /tmp/outbox-relay-chaos.XXXXXX)
    chmod 0755 "$WORK_DIR"
    PG_DIR="$WORK_DIR/pg"
    OUTPUT="$WORK_DIR/output.jsonl"
    RELAY_LOG="$WORK_DIR/relay.log"
    DUET_FLAG="$WORK_DIR/duet-playing"
    CONFIG="$WORK_DIR/relay.yaml"
    : >"$OUTPUT"
    : >"$RELAY_LOG"
    CONNINFO=$(pg_tmp start "$PG_DIR")
}

write_config() {
    local source
    if [[ "$MODE" == margin ]]; then
        source="  mode: margin
  safety_margin: 500ms
  poll_interval: 100ms"
    else
        source="  mode: settled
  poll_interval: 100ms"
    fi
    # A YAML double-quoted string; the relay expands ${VAR} in it, and reads $$ as a literal $.
    local conninfo=${CONNINFO//\\/\\\\}
    conninfo=${conninfo//\$/\$\$}
    cat >"$CONFIG" <<EOF
name: $RELAY_NAME
database:
  conninfo: "${conninfo//\"/\\\"}"
source:
  table: events
$source
sink:
  plugin: stdout
log:
  level: info
EOF
}

# The relay's schema, and a business table of the soak's own: transactions that write it before
# their event take an xid before the event's id.
create_schema() {
    "$RELAY_BIN" migrate -c "$CONFIG" >>"$RELAY_LOG" 2>&1 || {
        tail -n 20 "$RELAY_LOG" >&2
        die "outbox-relay migrate failed"
    }
    sql -c "CREATE TABLE chaos_orders (id bigserial PRIMARY KEY, writer int NOT NULL,
                tx text NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp())"
}

# The lulls' schedule starts at EPOCH, chosen so that the crash halfway falls in the middle of a
# busy spell: PostgreSQL should die under load, with commits in flight.
start_writers() {
    local i profiles=() epoch
    for ((i = 0; i < FAST_WRITERS; i++)); do
        profiles+=(fast)
    done
    for ((i = 0; i < SLOW_WRITERS; i++)); do
        profiles+=(slow)
    done
    profiles+=(duet)
    epoch=$(awk -v now="$EPOCHREALTIME" -v half="$SOAK_SECONDS" -v p="$LULL_PERIOD" \
        -v q="$LULL_QUIET" 'BEGIN { off = half / 2 - (p - q) / 2; off -= p * int(off / p);
                                    printf "%.6f", now + off }')
    for i in "${!profiles[@]}"; do
        # --rate paces the fast profile only; the others are paced by their sleeps and lulls.
        "$PYTHON" "$CHAOS_PY" writer --conninfo "$CONNINFO" --writer "$i" \
            --profile "${profiles[i]}" --rate "$FAST_RATE" --seconds "$SOAK_SECONDS" \
            --lull "$LULL_PERIOD,$LULL_QUIET" --epoch "$epoch" --duet-flag "$DUET_FLAG" \
            --seed "$((SEED + i))" --log "$WORK_DIR/writer-$i.jsonl" 2>>"$WORK_DIR/writers.log" &
        WRITER_PIDS+=($!)
    done
}

start_relay() {
    RELAY_STARTS=$((RELAY_STARTS + 1))
    echo "=== chaos: relay start $RELAY_STARTS at $(date -u +%H:%M:%S.%N)" >>"$RELAY_LOG"
    # Appended: every run of the relay adds to the one output, as a sink that survives restarts.
    "$RELAY_BIN" run -c "$CONFIG" >>"$OUTPUT" 2>>"$RELAY_LOG" &
    RELAY_PID=$!
}

relay_running() {
    [[ -n "$RELAY_PID" ]] && kill -0 "$RELAY_PID" 2>/dev/null
}

# The duet writer holds this file while it waits for quiet and plays, within one lull: a relay
# starting then commits its checkpoint row, a commit that breaks the quiet or, during the duet, one
# newer than the duet's holder, which hides the hole the duet opens. A file older than a lull is a
# writer that died meanwhile.
duet_playing() {
    [[ -e "$DUET_FLAG" ]] &&
        (($(date +%s) - $(stat -c %Y "$DUET_FLAG" 2>/dev/null || echo 0) <= ${LULL_QUIET%.*} + 1))
}

kill_relay() {
    kill -KILL "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=""
    RELAY_KILLS=$((RELAY_KILLS + 1))
}

# The relay exited of its own accord: note how, and start it again unless that cannot help.
restart_exited_relay() {
    local status=0
    wait "$RELAY_PID" 2>/dev/null || status=$?
    RELAY_PID=""
    RELAY_EXITS+=("$status")
    echo "=== chaos: the relay exited with status $status" >>"$RELAY_LOG"
    case "$status" in
    2 | 3 | 5)
        tail -n 20 "$RELAY_LOG" >&2
        die "the relay exited with status $status (usage, configuration or plugin): see $RELAY_LOG"
        ;;
    esac
    sleep 0.2
    start_relay
}

restart_postgres() {
    local start
    start=$(now_ms)
    say "crashing PostgreSQL (immediate stop) and starting it again"
    PG_TMP_STOP_MODE=immediate pg_tmp restart "$PG_DIR" >/dev/null
    PG_RESTARTS=$((PG_RESTARTS + 1))
    say "PostgreSQL back after $(($(now_ms) - start)) ms"
}

# The soak itself: the writers run for SOAK_SECONDS; meanwhile the relay is killed at random and
# PostgreSQL crashed once, halfway.
run_chaos() {
    local start end crash_at next_kill now crashed=0
    start=$(now_ms)
    end=$((start + SOAK_SECONDS * 1000))
    crash_at=$((start + SOAK_SECONDS * 500))
    next_kill=$((start + 1000 + RANDOM % 3001))
    say "$((FAST_WRITERS + SLOW_WRITERS + 1)) writers for ${SOAK_SECONDS}s, $MODE mode," \
        "seed $SEED, work directory $WORK_DIR"
    start_writers
    start_relay
    while now=$(now_ms) && ((now < end)); do
        if ((!crashed && now >= crash_at)); then
            restart_postgres
            crashed=1
        elif ((now >= next_kill)) && ! duet_playing; then
            kill_relay
            start_relay
            next_kill=$((now + 1000 + RANDOM % 3001))
        elif ! relay_running; then
            restart_exited_relay
        fi
        sleep 0.05
    done
}

wait_for_writers() {
    local deadline=$((SECONDS + WRITER_GRACE)) pid status failed=0
    say "waiting for the writers to finish their last transactions"
    for pid in "${WRITER_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            relay_running || restart_exited_relay
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            say "a writer did not finish within ${WRITER_GRACE}s; killed it"
        fi
        status=0
        wait "$pid" 2>/dev/null || status=$?
        ((status == 0)) || failed=$((failed + 1))
    done
    WRITER_PIDS=()
    if ((failed > 0)); then
        say "$failed writers failed:"
        tail -n 20 "$WORK_DIR/writers.log" >&2
    fi
}

position() {
    sql -c "SELECT coalesce(max(position), 0) FROM relay_checkpoints WHERE name = '$RELAY_NAME'"
}

# Lets the relay run undisturbed until its stored position reaches the last id and its output has
# stopped growing (late rows are delivered after the position passed them), within a deadline.
drain() {
    local max_id deadline now size last_size=-1 stable_since pos=0
    max_id=$(sql -c 'SELECT coalesce(max(id), 0) FROM events')
    deadline=$(($(now_ms) + DRAIN_TIMEOUT * 1000))
    stable_since=$(now_ms)
    say "draining: waiting for the relay's position to reach $max_id"
    while :; do
        relay_running || restart_exited_relay
        now=$(now_ms)
        size=$(stat -c %s "$OUTPUT")
        if ((size != last_size)); then
            last_size=$size
            stable_since=$now
        fi
        pos=$(position) || pos=0
        if ((pos >= max_id && now - stable_since >= STABLE_MS)); then
            break
        fi
        if ((now >= deadline)); then
            DRAIN="timed out after ${DRAIN_TIMEOUT}s at position $pos of $max_id"
            say "the relay did not drain: $DRAIN"
            break
        fi
        sleep 0.2
    done
}

# SIGTERM: the relay commits the batch in hand and exits 0.
stop_relay() {
    local deadline=$((SECONDS + 15)) status=0
    kill -TERM "$RELAY_PID" 2>/dev/null || true
    while relay_running && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if relay_running; then
        kill -KILL "$RELAY_PID" 2>/dev/null || true
        RELAY_STOP="did not stop within 15 s of SIGTERM; killed"
    fi
    wait "$RELAY_PID" 2>/dev/null || status=$?
    RELAY_PID=""
    [[ "$RELAY_STOP" == "not stopped" ]] && RELAY_STOP="exit status $status on SIGTERM"
    "$RELAY_BIN" status -c "$CONFIG" >"$WORK_DIR/status.txt" 2>&1 || true
}

verify() {
    local logs=("$WORK_DIR"/writer-*.jsonl) exits="none"
    ((${#RELAY_EXITS[@]} == 0)) || exits="${#RELAY_EXITS[@]} (statuses ${RELAY_EXITS[*]})"
    "$PYTHON" "$CHAOS_PY" verify --conninfo "$CONNINFO" --output "$OUTPUT" \
        --writer-log "${logs[@]}" \
        --fact "mode=$MODE" --fact "seconds=$SOAK_SECONDS" \
        --fact "busy_share=$BUSY_SHARE" \
        --fact "relay_starts=$RELAY_STARTS" --fact "relay_kills=$RELAY_KILLS (SIGKILL)" \
        --fact "relay_exits=$exits" --fact "postgres_restarts=$PG_RESTARTS (immediate)" \
        --fact "drain=$DRAIN" --fact "relay_stop=$RELAY_STOP" | tee "$WORK_DIR/summary.txt"
}

# shellcheck disable=SC2317 # called by trap
cleanup() {
    local status=$? pid
    for pid in "${WRITER_PIDS[@]}" "$RELAY_PID"; do
        [[ -n "$pid" ]] || continue
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$WORK_DIR" ]]; then
        pg_tmp stop "$PG_DIR" >/dev/null 2>&1 || true
        if ((PASSED && !KEEP)); then
            rm -rf "$WORK_DIR"
        else
            say "kept $WORK_DIR: relay.log (the relay's stderr), output.jsonl (its stdout),"
            say "  writer-*.jsonl, writers.log, summary.txt, status.txt; the database:"
            say "  scripts/pg-tmp start $PG_DIR"
        fi
    fi
    exit "$status"
}

main() {
    parse_arguments "$@"
    # The kills' timing; the writers get SEED too (timing still varies from run to run).
    RANDOM=$SEED
    check_tools
    ensure_built
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    start_postgres
    copy_relay
    write_config
    create_schema
    run_chaos
    wait_for_writers
    drain
    stop_relay
    if verify; then
        PASSED=1
    fi
    ((PASSED))
}

main "$@"
