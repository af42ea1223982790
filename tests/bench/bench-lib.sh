# shellcheck shell=bash
# What the benchmark scripts share: a throwaway PostgreSQL preloaded with events, a relay run timed
# until its committed position reaches the last event, and the report's formatting. Sourced by
# tests/bench/bench-*.sh, which set ROOT first.
#
# BUILD_DIR overrides the build to use (default: build/); RELAY_BIN the binary (default:
# BUILD_DIR/outbox-relay). Do not use the sanitized build.
#
# The benchmarks that time the relay in rounds against a floor (bench-stdout.sh, bench-kafka.sh)
# also take the options of parse_round_option: --compare BIN times a second relay binary in the
# same rounds, against the same rows (each binary loads the plugins of its own build; the
# configuration is the same, and so is the schema, which RELAY_BIN migrates), and --perf FILE
# records the relay's run in the first round with perf.

readonly RELAY_NAME=bench
# $EPOCHREALTIME and awk must agree on the decimal point.
export LC_ALL=C

EVENTS=1000000
BATCH_SIZE=1000
AGGREGATES=300
TIMEOUT=600
# The source settings write_config puts in the configuration; SOURCE_EXTRA is more YAML lines for
# the source section (indented by two spaces), e.g. "  max_gaps: 20000".
SAFETY_MARGIN=1s
POLL_INTERVAL=200ms
SOURCE_EXTRA=""
# 0: time_relay reports a relay that misses TIMEOUT (RELAY_TIMED_OUT=1, RELAY_POSITION where it
# got) instead of exiting.
RELAY_TIMEOUT_FATAL=1
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
RELAY_BIN=${RELAY_BIN:-$BUILD_DIR/outbox-relay}
# The width of the report's labels (report_line).
REPORT_WIDTH=22

WORK_DIR=""
CONNINFO=""
CONFIG=""
RELAY_PID=""
RELAY_SECONDS=""
RELAY_RSS_KIB=""
RELAY_CPU_TICKS=""
RELAY_POSTGRES_TICKS=""
RELAY_TIMED_OUT=0
RELAY_POSITION=""
STOP_STATUS=""
PERF_PID=""
# parse_round_option's: the second binary, and where perf record writes.
COMPARE_BIN=""
PERF_FILE=""
# Per binary timed in rounds, index 0 for RELAY_BIN and 1 for COMPARE_BIN: its seconds in each
# round (separated by spaces) and in the last, the sums over the rounds of its CPU ticks and of
# PostgreSQL's meanwhile, and its highest peak RSS.
BIN_RUNS=()
BIN_LAST=()
BIN_CPU_SUM=()
BIN_POSTGRES_SUM=()
BIN_RSS_MAX=()
# With --compare, one per round: RELAY_BIN's seconds / COMPARE_BIN's, a figure paired within the
# round, so that a machine slower in one round than in another moves both alike.
PAIR_RATIOS=()
CLOCK_TICKS=$(getconf CLK_TCK)
readonly CLOCK_TICKS

say() {
    echo "bench: $*" >&2
}

die() {
    say "$*"
    exit 1
}

positive_integer() {
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 wants a positive whole number, not '$2'"
    printf '%s' "$2"
}

# Sets the option every benchmark takes; returns 1 for one it does not know.
parse_common_option() {
    case "$1" in
    --events) EVENTS=$(positive_integer "$1" "$2") ;;
    --batch-size) BATCH_SIZE=$(positive_integer "$1" "$2") ;;
    --aggregates) AGGREGATES=$(positive_integer "$1" "$2") ;;
    --timeout) TIMEOUT=$(positive_integer "$1" "$2") ;;
    *) return 1 ;;
    esac
}

# Sets the options of the benchmarks that time the relay in rounds; returns 1 for one it does not
# know. Apart from parse_common_option, so that the other benchmarks refuse them rather than
# ignore them.
parse_round_option() {
    case "$1" in
    --compare)
        [[ -f "$2" && -x "$2" ]] || die "--compare wants a relay binary; '$2' is not an executable file"
        COMPARE_BIN=$2
        ;;
    --perf)
        command -v perf >/dev/null 2>&1 || die "--perf needs perf (apt-get install linux-perf)"
        PERF_FILE=$2
        ;;
    *) return 1 ;;
    esac
}

# With --compare, dies unless the plugin the benchmark uses ($1, a path in a build such as
# plugins/stdout/stdout.so) is beside the compare binary, where it will look for it.
check_compare_plugin() {
    [[ -n "$COMPARE_BIN" ]] || return 0
    local plugin
    plugin="$(dirname "$COMPARE_BIN")/$1"
    [[ -f "$plugin" ]] || die "--compare: no plugin beside $COMPARE_BIN ($plugin)"
}

# A work directory with a PostgreSQL inside; sets WORK_DIR, CONFIG and CONNINFO.
start_postgres() {
    WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/outbox-relay-bench.XXXXXX")
    # The cluster inside runs as postgres when we are root; mktemp's 0700 would lock it out.
    chmod 0755 "$WORK_DIR"
    CONFIG="$WORK_DIR/bench.yaml"
    CONNINFO=$("$ROOT/scripts/pg-tmp" start "$WORK_DIR/pg")
}

# For the cleanup traps: whatever happened, perf, the relay and the server stop and the files go.
stop_relay_at_once() {
    stop_perf
    if [[ -n "$RELAY_PID" ]]; then
        kill -KILL "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
        RELAY_PID=""
    fi
}

# The EXIT trap of a benchmark that starts nothing but its PostgreSQL and the relay.
# shellcheck disable=SC2317 # called by trap
cleanup_relay_and_postgres() {
    local status=$?
    stop_relay_at_once
    remove_work_dir
    exit "$status"
}

remove_work_dir() {
    if [[ -n "$WORK_DIR" ]]; then
        "$ROOT/scripts/pg-tmp" stop "$WORK_DIR/pg" >/dev/null 2>&1 || true
        rm -rf "$WORK_DIR"
        WORK_DIR=""
    fi
}

sql() {
    psql "$CONNINFO" -X -q -v ON_ERROR_STOP=1 "$@"
}

# Seconds elapsed since a start taken from $EPOCHREALTIME, with microseconds.
seconds_since() {
    awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.3f", now - start }'
}

have_relay() {
    [[ -x "$RELAY_BIN" ]]
}

# Writes CONFIG with the given sink section (YAML lines, indented under "sink:").
write_config() {
    local sink=$1
    # A YAML double-quoted string; the relay expands ${VAR} in it, and reads $$ as a literal $.
    local conninfo=${CONNINFO//\\/\\\\}
    conninfo=${conninfo//\$/\$\$}
    cat >"$CONFIG" <<EOF
name: $RELAY_NAME
database:
  conninfo: "${conninfo//\"/\\\"}"
source:
  table: events
  safety_margin: $SAFETY_MARGIN
  batch_size: $BATCH_SIZE
  poll_interval: $POLL_INTERVAL
${SOURCE_EXTRA:+$SOURCE_EXTRA
}sink:
$sink
log:
  level: warn
EOF
}

create_schema() {
    if have_relay; then
        "$RELAY_BIN" migrate -c "$CONFIG" >/dev/null
    else
        # The same migrations the relay embeds; they are idempotent CREATE ... IF NOT EXISTS.
        local file
        for file in "$ROOT"/sql/*.sql; do
            sql -f "$file"
        done
    fi
}

# One statement, created_at an hour in the past so that the safety margin holds nothing back. The
# body comes out of PostgreSQL at about 100 bytes.
preload() {
    preload_events ""
}

# The same with ids given by a SQL expression over n (0 to EVENTS - 1) instead of the sequence's,
# say "n + n / 49 + 1" for every 50th id missing, as rolled-back inserts leave them; the sequence
# is then set to the highest id.
preload_ids() {
    preload_events "$1"
}

preload_events() {
    local id_expr=$1 id_column="" id_value="" set_sequence="" start
    if [[ -n "$id_expr" ]]; then
        id_column="id, "
        id_value="$id_expr, "
        set_sequence="SELECT setval(pg_get_serial_sequence('events', 'id'), max(id)) FROM events;"
        say "preloading $EVENTS events over $AGGREGATES aggregates, ids $id_expr"
    else
        say "preloading $EVENTS events over $AGGREGATES aggregates"
    fi
    start=$EPOCHREALTIME
    sql >/dev/null <<EOF
INSERT INTO events (${id_column}aggregate_id, aggregate_type, aggregate_version, kind, body,
                    metadata, created_at)
SELECT ${id_value}'order-' || (n % $AGGREGATES),
       'order',
       n / $AGGREGATES + 1,
       (ARRAY['created', 'item_added', 'paid', 'shipped'])[n % 4 + 1],
       jsonb_build_object('order_id', n, 'customer', 'customer-' || (n % 9973),
                          'amount_cents', (n::bigint * 7919) % 100000,
                          'note', 'benchmark event'),
       '{"source": "bench"}',
       clock_timestamp() - interval '1 hour' + n * interval '1 microsecond'
FROM generate_series(0, $EVENTS - 1) AS n;
$set_sequence
VACUUM (ANALYZE) events;
EOF
    say "preloaded in $(seconds_since "$start") s (average body $(sql -A -t -c \
        'SELECT round(avg(length(body::text))) FROM events') bytes)"
}

# Makes the next relay run start from the first event again.
forget_relay_position() {
    sql -c "DELETE FROM relay_checkpoints WHERE name = '$RELAY_NAME';
            DELETE FROM relay_gaps WHERE relay_name = '$RELAY_NAME'"
}

# Prints the relay's committed position every 20 ms through one database session, until its
# output is closed (psql then dies of SIGPIPE). A psql process per look would cost a good part of a
# core, taken from the relay on a small machine.
watch_position() {
    echo "SELECT coalesce(max(position), 0) FROM relay_checkpoints WHERE name = '$RELAY_NAME'" \
        '\watch 0.02' | psql "$CONNINFO" -X -q -A -t
}

# CPU clock ticks (user and system, every thread) process $1 has used so far; 0 once it is gone.
process_ticks() {
    local stat fields
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || {
        echo 0
        return
    }
    # The command name in parentheses may hold spaces; after it, utime and stime are the 12th and
    # 13th fields (14 and 15 in proc(5)'s count).
    read -r -a fields <<<"${stat##*) }"
    echo $((fields[11] + fields[12]))
}

# CPU ticks used so far by the benchmark's PostgreSQL: its postmaster and every child process
# alive now (a backend that exits takes its figure along: read this before stopping a client).
postgres_ticks() {
    local postmaster pid total=0
    postmaster=$(head -n 1 "$WORK_DIR/pg/data/postmaster.pid")
    for pid in "$postmaster" $(pgrep -P "$postmaster"); do
        total=$((total + $(process_ticks "$pid")))
    done
    echo "$total"
}

# "S s" for T clock ticks, divided by N (default 1), for an average.
ticks_text() {
    awk -v t="$1" -v hz="$CLOCK_TICKS" -v n="${2:-1}" 'BEGIN { printf "%.2f s", t / hz / n }'
}

# "C s of CPU over W s: N cores" for C ticks in W seconds, each divided by N (default 1).
cpu_text() {
    awk -v t="$1" -v hz="$CLOCK_TICKS" -v w="$2" -v n="${3:-1}" \
        'BEGIN { printf "%.2f s of CPU over %.2f s: %.1f cores", t / hz / n, w / n, t / hz / w }'
}

# The median of the numbers given.
median_of() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# The sum of the numbers given.
sum_of() {
    printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.3f", s }'
}

peak_rss_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# Stops the relay with SIGTERM, and with SIGKILL if it has not exited within $1 seconds (it may be
# waiting for a long statement); sets STOP_STATUS to its exit status.
stop_relay_within() {
    local deadline=$((SECONDS + $1))
    STOP_STATUS=0
    kill -TERM "$RELAY_PID" 2>/dev/null || true
    while kill -0 "$RELAY_PID" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$RELAY_PID" 2>/dev/null; then
        say "the relay did not stop within $1 s of SIGTERM: killing it"
        kill -KILL "$RELAY_PID" 2>/dev/null || true
    fi
    # shellcheck disable=SC2034 # for the caller
    wait "$RELAY_PID" 2>/dev/null || STOP_STATUS=$?
    RELAY_PID=""
}

# Starts perf record on the relay (RELAY_PID, which runs binary $2), writing to $1; sets PERF_PID.
# Waits for the relay's exec first (its command name changes then), so that the samples are the
# relay's and not those of the shell that forked it; the relay's later threads are followed too.
start_perf() {
    local file=$1 name comm="" tries=0
    name=$(basename "$2")
    # The kernel keeps the first 15 bytes of the command name.
    name=${name:0:15}
    while ((tries++ < 200)) && kill -0 "$RELAY_PID" 2>/dev/null; do
        read -r comm 2>/dev/null <"/proc/$RELAY_PID/comm" || true
        [[ "$comm" == "$name" ]] && break
        sleep 0.005
    done
    # The default event: hardware counters may be missing (in a VM perf falls back to cpu-clock).
    perf record -F 999 -g -p "$RELAY_PID" -o "$file" >/dev/null 2>"$WORK_DIR/perf.log" &
    PERF_PID=$!
}

# Stops perf record with SIGINT, on which it writes out what it has, and waits for it.
stop_perf() {
    [[ -n "$PERF_PID" ]] || return 0
    local status=0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || status=$?
    PERF_PID=""
    # It exits with 128 + SIGINT once it has written the file.
    if ((status != 0 && status != 130)); then
        say "perf record exited with status $status:"
        tail -n 5 "$WORK_DIR/perf.log" >&2
    fi
}

# Runs the relay until its committed position reaches the last event; sets RELAY_SECONDS,
# RELAY_RSS_KIB (its peak resident set, read just before stopping it), RELAY_CPU_TICKS (its CPU
# time, every thread), RELAY_POSTGRES_TICKS (the CPU time PostgreSQL used meanwhile) and
# RELAY_POSITION. With RELAY_TIMEOUT_FATAL=0, a relay that misses TIMEOUT is stopped and reported
# (RELAY_TIMED_OUT=1, the figures up to then) rather than ending the benchmark. $1 is the binary
# (default RELAY_BIN); with a file name as $2, perf records the relay into it from just after its
# start until it has reached the last event (perf is stopped then, before the relay).
time_relay() {
    local bin=${1:-$RELAY_BIN} perf_file=${2:-}
    local max_id start deadline position=0 positions status=0 postgres_before
    RELAY_TIMED_OUT=0
    max_id=$(sql -A -t -c 'SELECT max(id) FROM events')
    exec {positions}< <(watch_position)
    postgres_before=$(postgres_ticks)
    start=$EPOCHREALTIME
    "$bin" run -c "$CONFIG" >/dev/null 2>"$WORK_DIR/relay.log" &
    RELAY_PID=$!
    [[ -z "$perf_file" ]] || start_perf "$perf_file" "$bin"
    deadline=$((SECONDS + TIMEOUT))
    # Each line is the condition itself; the watch's period bounds the timing error.
    while ((position < max_id)); do
        if ! kill -0 "$RELAY_PID" 2>/dev/null; then
            tail -n 20 "$WORK_DIR/relay.log" >&2
            RELAY_PID=""
            die "the relay exited before reaching event $max_id (position $position)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$WORK_DIR/relay.log" >&2
            ((RELAY_TIMEOUT_FATAL)) &&
                die "the relay did not reach event $max_id within ${TIMEOUT}s (position $position)"
            say "the relay did not reach event $max_id within ${TIMEOUT}s (position $position)"
            RELAY_TIMED_OUT=1
            break
        fi
        # A timeout (status above 128) runs the checks above again; end of file means psql is
        # gone. The watch writes whole lines with one write(2) each, so none is read in part.
        read -r -t 1 -u "$positions" position || (($? > 128)) || {
            tail -n 20 "$WORK_DIR/relay.log" >&2
            die "psql watching the relay's position exited (position $position)"
        }
    done
    # shellcheck disable=SC2034 # the results, for the sourcing script's report
    {
        RELAY_SECONDS=$(seconds_since "$start")
        RELAY_RSS_KIB=$(peak_rss_kib "$RELAY_PID")
        RELAY_CPU_TICKS=$(process_ticks "$RELAY_PID")
        RELAY_POSTGRES_TICKS=$(($(postgres_ticks) - postgres_before))
        RELAY_POSITION=$position
    }
    exec {positions}<&-
    stop_perf
    if ((RELAY_TIMED_OUT)); then
        # A statement it was waiting for would run on without it: end every other session.
        stop_relay_within 5
        sql -A -t -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()
                        AND backend_type = 'client backend'" >/dev/null
        return
    fi
    kill -TERM "$RELAY_PID"
    wait "$RELAY_PID" || status=$?
    RELAY_PID=""
    if ((status != 0)); then
        tail -n 20 "$WORK_DIR/relay.log" >&2
        die "the relay exited with status $status on SIGTERM"
    fi
}

# The relays a round times, by index (0: RELAY_BIN, 1: COMPARE_BIN), in order: RELAY_BIN alone,
# or both, taking turns at going first (RELAY_BIN in odd rounds): the second finds what the first
# left, warmer caches and, with Kafka, a fuller topic.
relays_in_round() {
    if [[ -z "$COMPARE_BIN" ]]; then
        echo 0
    elif (($1 % 2)); then
        echo 0 1
    else
        echo 1 0
    fi
}

relay_bin() {
    if (($1 == 0)); then
        printf '%s' "$RELAY_BIN"
    else
        printf '%s' "$COMPARE_BIN"
    fi
}

# What the report and the per-round lines call relay $1.
relay_label() {
    if (($1 == 0)); then
        printf relay
    else
        printf compare
    fi
}

# True if perf records relay $1 in round $2: RELAY_BIN's run in the first round, with --perf.
under_perf() {
    [[ -n "$PERF_FILE" ]] && (($1 == 0 && $2 == 1))
}

# Times relay $1 from position 0 in round $2 (under perf, see under_perf) and adds its figures to
# the BIN_* arrays.
time_relay_in_round() {
    local index=$1 round=$2 perf_file=""
    if under_perf "$index" "$round"; then
        perf_file=$PERF_FILE
    fi
    forget_relay_position
    # A benchmark may run something beside a relay (bench-stdout's scraper): relay_starting and
    # relay_timed, when it defines them, are called with the relay's index around its run.
    if declare -F relay_starting >/dev/null; then
        relay_starting "$index"
    fi
    time_relay "$(relay_bin "$index")" "$perf_file"
    if declare -F relay_timed >/dev/null; then
        relay_timed "$index"
    fi
    BIN_RUNS[index]="${BIN_RUNS[index]:-}${BIN_RUNS[index]:+ }$RELAY_SECONDS"
    BIN_LAST[index]=$RELAY_SECONDS
    BIN_CPU_SUM[index]=$((${BIN_CPU_SUM[index]:-0} + RELAY_CPU_TICKS))
    BIN_POSTGRES_SUM[index]=$((${BIN_POSTGRES_SUM[index]:-0} + RELAY_POSTGRES_TICKS))
    if ((RELAY_RSS_KIB > ${BIN_RSS_MAX[index]:-0})); then
        BIN_RSS_MAX[index]=$RELAY_RSS_KIB
    fi
    # It logs warnings and errors only: anything there explains a slow run.
    if [[ -s "$WORK_DIR/relay.log" ]]; then
        say "the $(relay_label "$index") logged $(wc -l <"$WORK_DIR/relay.log") lines; the last ones:"
        tail -n 10 "$WORK_DIR/relay.log" >&2
    fi
}

# Times the relays of round $1 (relays_in_round), then notes the round's ratio.
time_relays_in_round() {
    local index
    for index in $(relays_in_round "$1"); do
        time_relay_in_round "$index" "$1"
    done
    note_pair_ratio
}

# With --compare, after both relays of a round ran: adds the round's ratio to PAIR_RATIOS.
note_pair_ratio() {
    if [[ -n "$COMPARE_BIN" ]]; then
        PAIR_RATIOS+=("$(awk -v r="${BIN_LAST[0]}" -v c="${BIN_LAST[1]}" \
            'BEGIN { printf "%.3f", r / c }')")
    fi
}

# The per-round line's part for the relays of round $1, just timed: each one's seconds, with
# floor_text's of them (floor_text SECONDS prints, say, "0.52x the floor"), and with --compare
# the round's ratio and which went first.
relays_round_text() {
    local round=$1 index text="" order
    for index in 0 ${COMPARE_BIN:+1}; do
        text+="${text:+, }$(relay_label "$index") ${BIN_LAST[index]} s"
        text+=" ($(floor_text "${BIN_LAST[index]}"))"
        if under_perf "$index" "$round"; then
            text+=" under perf"
        fi
    done
    if [[ -n "$COMPARE_BIN" ]]; then
        text+=", relay / compare ${PAIR_RATIOS[-1]}"
        order=$(relays_in_round "$round")
        text+=" ($(relay_label "${order%% *}") first)"
    fi
    printf '%s' "$text"
}

# The median of relay $1's seconds over the rounds.
bin_median() {
    local runs
    read -r -a runs <<<"${BIN_RUNS[$1]}"
    median_of "${runs[@]}"
}

# Relay $1's CPU per round on average, as cpu_text gives it, then its parts: the relay process's
# (named by relay_label) and PostgreSQL's, and with $2 and $3 (ticks and a name, "brokers") one
# part more.
bin_cpu_text() {
    local index=$1 extra_ticks=${2:-0} extra_name=${3:-} runs seconds
    read -r -a runs <<<"${BIN_RUNS[index]}"
    seconds=$(sum_of "${runs[@]}")
    printf '%s (%s %s, PostgreSQL %s%s)' \
        "$(cpu_text $((BIN_CPU_SUM[index] + BIN_POSTGRES_SUM[index] + extra_ticks)) "$seconds" \
            "${#runs[@]}")" "$(relay_label "$index")" \
        "$(ticks_text "${BIN_CPU_SUM[index]}" "${#runs[@]}")" \
        "$(ticks_text "${BIN_POSTGRES_SUM[index]}" "${#runs[@]}")" \
        "${extra_name:+, $extra_name $(ticks_text "$extra_ticks" "${#runs[@]}")}"
}

# The "rounds" line: how many, and which relay run perf slowed, if one ran.
report_rounds() {
    local note=""
    if [[ -n "$PERF_FILE" && -f "$WORK_DIR/perf.log" ]]; then
        note="; round 1's relay ran under perf"
    fi
    report_line "rounds" "$1 (medians below$note)"
}

# The paired figure of --compare, and which binaries those were.
report_compare() {
    [[ -n "$COMPARE_BIN" ]] || return 0
    # Time, not speed: above 1, the relay is slower than the binary it is compared with.
    report_line "relay time / compare" "$(median_of "${PAIR_RATIOS[@]}") (median of the" \
        "${#PAIR_RATIOS[@]} rounds' ratios; above 1: the relay is slower)"
    report_line "relay binary" "$RELAY_BIN"
    report_line "compare binary" "$COMPARE_BIN"
}

# With --perf: the relay's top 25 symbols, by samples in the symbol itself (callers not counted).
report_perf() {
    [[ -n "$PERF_FILE" ]] || return 0
    local samples top
    if [[ ! -f "$WORK_DIR/perf.log" ]]; then
        printf '\nperf: no relay ran, nothing recorded\n'
        return 0
    fi
    # perf record's last words say how many samples it wrote (nothing when none).
    samples=$(sed -n 's/.*(\([0-9]*\) samples).*/\1/p' "$WORK_DIR/perf.log")
    # awk reads to the end: head would leave perf report writing to a closed pipe. It also drops
    # the IPC columns, "-" without hardware counters.
    top=$(perf report -i "$PERF_FILE" --no-children --sort dso,symbol --stdio -g none \
        2>"$WORK_DIR/perf-report.log" |
        awk '/%/ && !/^#/ && n++ < 25 { sub(/[ \t]+-[ \t]+-[ \t]*$/, ""); print }') || true
    echo
    if [[ -z "$top" ]]; then
        # perf takes a fifth of a second or so to attach: a run not much longer leaves it nothing.
        echo "perf: no profile of the relay in $PERF_FILE (${samples:-no} samples; more --events" \
            "make a longer run)"
        sed -n '1,3s/^/perf report: /p' "$WORK_DIR/perf-report.log"
        return 0
    fi
    echo "perf: the relay's top 25 symbols in round 1, of ${samples:-its} samples ($PERF_FILE;" \
        "perf report -i $PERF_FILE --no-children --sort dso,symbol --stdio for all)"
    printf '%s\n' "$top"
}

# A label, then the rest of the arguments joined by spaces.
report_line() {
    printf '%-*s %s\n' "$REPORT_WIDTH" "$1" "${*:2}"
}

# "S s, R events/s" for EVENTS events in SECONDS.
rate_text() {
    awk -v s="$1" -v n="$EVENTS" 'BEGIN { printf "%.2f s, %.0f events/s", s, n / s }'
}

# Throughput of the relay over the floor's: floor seconds / relay seconds, as "0.52x the floor"
# (or with $3 in place of "the floor").
ratio_text() {
    awk -v f="$1" -v r="$2" -v of="${3:-the floor}" 'BEGIN { printf "%.2fx %s", f / r, of }'
}

rss_text() {
    awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'
}
