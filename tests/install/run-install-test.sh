#!/usr/bin/env bash
# Installs the build with `meson install --destdir`, moves the installed prefix somewhere else
# again, and runs the relay from there against the suite's PostgreSQL (RELAY_TEST_CONNINFO, a
# database of its own) with `sink.plugin: stdout`: it must migrate, deliver every seeded event,
# log that it loaded the stdout sink from the moved tree, and exit 0 on SIGTERM. The move is what
# proves the plugins are found relative to the binary: a path compiled in (the prefix, the build
# tree) would not lead there. The relay runs with an environment that names no plugin directory.
#
# Usage: run-install-test.sh BUILD_DIR. Exits 0 when everything held, 1 otherwise.
set -euo pipefail

readonly DEADLINE_S=30
readonly EVENTS=10

BUILD_DIR=$(cd "${1:?usage: run-install-test.sh BUILD_DIR}" && pwd)
readonly BUILD_DIR

WORK=""
DATABASE=""
ADMIN_CONNINFO=""
RELAY_PID=""

TEST_NAME=install-test
# shellcheck source=tests/lib/script-test.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/script-test.sh"

: "${RELAY_TEST_CONNINFO:?RELAY_TEST_CONNINFO must name the suite PostgreSQL}"

# shellcheck disable=SC2317 # called by trap
cleanup() {
    local status=$?
    if [[ -n "$RELAY_PID" ]] && kill -0 "$RELAY_PID" 2>/dev/null; then
        kill -KILL "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
    fi
    if ((status != 0)) && [[ -f "$WORK/relay.err" ]]; then
        say "the relay's log:"
        tail -n 30 "$WORK/relay.err" >&2
    fi
    drop_test_database "$ADMIN_CONNINFO" "$DATABASE"
    [[ -z "$WORK" ]] || rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

# The install path meson gives a build target (without the destdir).
installed_path_of() {
    meson introspect "$BUILD_DIR" --installed | python3 -c '
import json, sys
for built, installed in json.load(sys.stdin).items():
    if built == sys.argv[1]:
        print(installed)
' "$1"
}

prefix_of() {
    meson introspect "$BUILD_DIR" --buildoptions | python3 -c '
import json, sys
print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))'
}

# The relay with nothing of the harness's environment: no RELAY_* variable, no build directory.
# A command, not a function, so that `&` gives the relay's own pid (env execs it).
relay_command() {
    RELAY_CMD=(env -i PATH=/usr/bin:/bin)
    [[ -z "${ASAN_OPTIONS:-}" ]] || RELAY_CMD+=("ASAN_OPTIONS=$ASAN_OPTIONS")
    [[ -z "${UBSAN_OPTIONS:-}" ]] || RELAY_CMD+=("UBSAN_OPTIONS=$UBSAN_OPTIONS")
    RELAY_CMD+=("$1")
}


# Exited: no process, or a zombie waiting for `wait` (which kill -0 would still find).
relay_gone() {
    local stat
    stat=$(cat "/proc/$RELAY_PID/stat" 2>/dev/null) || return 0
    [[ "${stat##*) }" == Z* ]]
}

# Every event delivered; a relay that exited meanwhile (a plugin not found: exit 5) fails at once.
delivered_all() {
    (($(grep -o '"id":[0-9]*' "$WORK/relay.out" | sort -u | wc -l) >= EVENTS)) && return 0
    ! relay_gone || fail "the relay exited before delivering the $EVENTS events"
    return 1
}

main() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/relay-install.XXXXXX")
    chmod 0755 "$WORK"
    ADMIN_CONNINFO="$RELAY_TEST_CONNINFO connect_timeout=10"

    meson install -C "$BUILD_DIR" --no-rebuild --quiet --destdir "$WORK/dest" >"$WORK/install.log" 2>&1 || {
        cat "$WORK/install.log" >&2
        fail "meson install --destdir failed"
    }
    local prefix binary
    prefix=$(prefix_of)
    binary=$(installed_path_of "$BUILD_DIR/outbox-relay")
    [[ -n "$binary" ]] || fail "meson does not install outbox-relay"
    [[ "$binary" == "$prefix"/* ]] || fail "the binary ($binary) is not under the prefix $prefix"
    [[ -x "$WORK/dest$binary" ]] || fail "no $WORK/dest$binary after meson install"

    # Elsewhere than the prefix the binary was built for, and than the build tree.
    mv "$WORK/dest$prefix" "$WORK/moved"
    relay_command "$WORK/moved${binary#"$prefix"}"
    say "running ${RELAY_CMD[*]: -1}"

    local name="install_$$_$RANDOM"
    DATABASE="relay_$name"
    psql "$ADMIN_CONNINFO" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DATABASE\""
    local db_conninfo="$RELAY_TEST_CONNINFO dbname=$DATABASE"
    local yaml_conninfo=${db_conninfo//\\/\\\\}
    yaml_conninfo=${yaml_conninfo//\"/\\\"}
    cat >"$WORK/relay.yaml" <<EOF
name: $name
database:
  conninfo: "$yaml_conninfo"
source:
  poll_interval: 50ms
sink:
  plugin: stdout
EOF
    chmod 0644 "$WORK/relay.yaml"

    "${RELAY_CMD[@]}" migrate -c "$WORK/relay.yaml" >"$WORK/migrate.log" 2>&1 || {
        cat "$WORK/migrate.log" >&2
        fail "the installed relay's migrate failed"
    }
    psql "$db_conninfo" -X -q -v ON_ERROR_STOP=1 -c \
        "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, body)
         SELECT 'order-' || g, 'order', 1, 'created', '{}' FROM generate_series(1, $EVENTS) g"

    "${RELAY_CMD[@]}" run -c "$WORK/relay.yaml" >"$WORK/relay.out" 2>"$WORK/relay.err" &
    RELAY_PID=$!
    wait_until "delivery of the $EVENTS events" delivered_all
    grep -q "sink stdout loaded from $WORK/moved/" "$WORK/relay.err" ||
        fail "the stdout sink was not loaded from the installed tree: $(grep -m1 'sink' "$WORK/relay.err")"
    say "$(grep -m1 -o 'sink stdout loaded from .*' "$WORK/relay.err")"

    kill -TERM "$RELAY_PID"
    wait_until "exit after SIGTERM" relay_gone
    local status=0
    wait "$RELAY_PID" || status=$?
    RELAY_PID=""
    ((status == 0)) || fail "the installed relay exited $status after SIGTERM, not 0"
    echo "PASS"
}

main "$@"
