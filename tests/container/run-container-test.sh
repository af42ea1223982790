#!/usr/bin/env bash
# Builds the image from the Containerfile and runs it as a user would: against the suite's
# PostgreSQL (RELAY_TEST_CONNINFO), in a database of its own, with the network of the host, a
# read-only root filesystem and every capability dropped. It applies the migrations with the
# documented one-off (`podman run IMAGE migrate`), seeds events and waits until the container's
# stdout shows them all, asks /healthz and /readyz (200) and the image's HEALTHCHECK, checks the
# logs are JSON and the process is not root, stops it with `podman stop` (SIGTERM) and requires
# exit code 0 with the position stored past every event. The configs of deploy/ go through the
# image's `check` too. Prints the image's size (goal: under 100 MB).
#
# No registry is needed: the base image is made with mmdebstrap from Debian's mirror (as
# debian:bookworm-slim is made, docs and locales left out) and `podman import`ed, unless
# RELAY_CONTAINER_BASE names one to use instead. podman keeps its storage, and the base tarball,
# under BUILD_DIR/container/, so that a second run reuses the base and the build's cached layers.
#
# Usage: run-container-test.sh SOURCE_DIR BUILD_DIR. Exits 77 (meson's skip) when podman, runc or
# mmdebstrap is missing (scripts/deps installs them), 0 when everything held, 1 otherwise.
set -euo pipefail

readonly SKIP=77
readonly DEADLINE_S=60
readonly EVENTS=20
readonly IMAGE=localhost/outbox-relay:test
readonly BASE_IMAGE=localhost/outbox-relay-test-base:bookworm
readonly SIZE_GOAL_MB=100

SOURCE_DIR=$(cd "${1:?usage: run-container-test.sh SOURCE_DIR BUILD_DIR}" && pwd)
BUILD_DIR=$(cd "${2:?usage: run-container-test.sh SOURCE_DIR BUILD_DIR}" && pwd)
readonly SOURCE_DIR BUILD_DIR
readonly STATE="$BUILD_DIR/container"

WORK=""
DATABASE=""
CONTAINER=""
ADMIN_CONNINFO=""

TEST_NAME=container-test
# shellcheck source=tests/lib/script-test.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/script-test.sh"

for tool in podman runc mmdebstrap; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $tool missing (scripts/deps installs it)"
        exit "$SKIP"
    fi
done
command -v psql >/dev/null 2>&1 || fail "psql missing (scripts/deps installs postgresql-client)"
command -v curl >/dev/null 2>&1 || fail "curl missing (scripts/deps installs it)"
: "${RELAY_TEST_CONNINFO:?RELAY_TEST_CONNINFO must name the suite PostgreSQL}"

# Storage, run state and temporary files of podman all in the build directory: nothing of this
# test lands in /var/lib/containers or /run, and removing the build removes it.
export CONTAINERS_CONF="$SOURCE_DIR/tests/container/containers.conf"
pm() {
    podman --root "$STATE/storage" --runroot "$STATE/run" --tmpdir "$STATE/tmp" \
        --storage-driver overlay "$@"
}

sql() {
    psql "$ADMIN_CONNINFO" -X -q -v ON_ERROR_STOP=1 -At "$@"
}

# shellcheck disable=SC2317 # called by trap
cleanup() {
    local status=$?
    if [[ -n "$CONTAINER" ]]; then
        if ((status != 0)); then
            say "the container's log:"
            pm logs "$CONTAINER" 2>&1 | tail -n 40 >&2 || true
        fi
        pm rm -f "$CONTAINER" >/dev/null 2>&1 || true
    fi
    drop_test_database "$ADMIN_CONNINFO" "$DATABASE"
    [[ -z "$WORK" ]] || rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

make_base_image() {
    if [[ -n "${RELAY_CONTAINER_BASE:-}" ]]; then
        BASE="$RELAY_CONTAINER_BASE"
        return
    fi
    BASE="$BASE_IMAGE"
    pm image exists "$BASE" && return
    local tarball="$STATE/base-bookworm.tar"
    if [[ ! -s "$tarball" ]]; then
        say "making the base image with mmdebstrap (once per build directory)"
        # What debian:bookworm-slim leaves out (docs but their copyright, man pages, locales), and
        # perl, which mmdebstrap's minbase has only for usrmerge, whose work is done by then.
        # shellcheck disable=SC2016 # "$1" is the hooks' own, expanded by mmdebstrap's shell
        mmdebstrap --variant=minbase --format=tar --quiet \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            --dpkgopt='path-exclude=/usr/share/lintian/*' \
            --customize-hook='chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq \
                usrmerge perl libperl5.36 perl-modules-5.36 libfile-find-rule-perl \
                libnumber-compare-perl libtext-glob-perl libgdbm-compat4 >/dev/null' \
            --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
            bookworm "$tarball.part" http://deb.debian.org/debian ||
            fail "mmdebstrap could not make the base (is the Debian mirror reachable?)"
        mv "$tarball.part" "$tarball"
    fi
    pm import --quiet "$tarball" "$BASE" >/dev/null || fail "podman import $tarball failed"
}

build_image() {
    local start=$SECONDS
    say "building $IMAGE from $SOURCE_DIR/Containerfile on $BASE"
    # docker format: OCI images have no HEALTHCHECK. The build's RUN steps use the host's network
    # (apt-get), as the test's machine has no container network set up.
    pm build --quiet --format docker --network host --build-arg "BASE=$BASE" -t "$IMAGE" \
        -f "$SOURCE_DIR/Containerfile" "$SOURCE_DIR" >"$WORK/build.log" 2>&1 || {
        tail -n 40 "$WORK/build.log" >&2
        fail "podman build failed"
    }
    say "built in $((SECONDS - start))s"
}

report_size() {
    local bytes mb
    bytes=$(pm image inspect --format '{{.Size}}' "$IMAGE")
    mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1000000 }')
    if awk -v m="$mb" -v g="$SIZE_GOAL_MB" 'BEGIN { exit !(m < g) }'; then
        echo "image size: $mb MB (goal: under $SIZE_GOAL_MB MB)"
    else
        echo "image size: $mb MB: OVER the goal of $SIZE_GOAL_MB MB"
    fi
}

# What the image holds and how it runs, read off the image itself.
check_image() {
    local user
    user=$(pm image inspect --format '{{.Config.User}}' "$IMAGE")
    [[ "$user" =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] ||
        fail "the image's user is '$user', not a numeric non-root uid"
    pm image inspect --format '{{.Config.Healthcheck.Test}}' "$IMAGE" | grep -q healthz ||
        fail "the image has no HEALTHCHECK on /healthz"
    # The runtime only: no compiler, no headers, no source, no meson build.
    # shellcheck disable=SC2016 # "$p" is the container shell's
    pm run --rm --network none --entrypoint /bin/sh "$IMAGE" -c '
        for p in /usr/bin/gcc /usr/bin/cc /usr/bin/meson /usr/include/libpq-fe.h \
                 /usr/local/include/outbox_relay /usr/local/lib/pkgconfig /src /build /out; do
            if [ -e "$p" ]; then echo "$p"; exit 1; fi
        done
        test -x /usr/local/bin/outbox-relay &&
        test -f /usr/local/lib/outbox-relay/plugins/stdout.so &&
        test -f /usr/local/lib/outbox-relay/plugins/kafka.so &&
        test -f /usr/local/share/outbox-relay/sql/001_events.sql' ||
        fail "the image does not hold just the binary, plugins and migrations (see above)"
}

# The configs of deploy/ as the image's relay reads them, each with a password file where it names
# one: `check` must find the config ok and stop only at the database, which is not there (exit 4;
# 3 would be the config, 5 the plugin).
check_examples() {
    local example secret out code
    for example in kubernetes/relay.yaml:/secrets/db/password \
        compose/relay.yaml:/run/secrets/db_password; do
        secret=${example#*:}
        example=${example%%:*}
        # A copy, 0644 as an operator would install it: a checkout made under umask 002 has the
        # group write bit, which the relay rightly refuses.
        cp "$SOURCE_DIR/deploy/$example" "$WORK/example.yaml"
        chmod 0644 "$WORK/example.yaml"
        code=0
        out=$(pm run --rm --network none -v "$WORK/example.yaml:/config/relay.yaml:ro" \
            -v "$WORK/example.password:$secret:ro" "$IMAGE" check -c /config/relay.yaml 2>&1) ||
            code=$?
        if ((code != 4)) || ! grep -q 'config .*/config/relay.yaml: ok' <<<"$out"; then
            printf '%s\n' "$out" >&2
            fail "check of deploy/$example in the image: exit $code, not 4 after 'config ... ok'"
        fi
    done
    say "the configs of deploy/ pass the image's check up to the database"
}

# How the container reaches the suite's server: its TCP address (the host's network is the
# container's), or its unix socket, bind-mounted where Debian puts it.
connect_args() {
    local socket_dirs port addr user
    IFS='|' read -r socket_dirs port addr user < <(sql -c \
        "SELECT current_setting('unix_socket_directories'), current_setting('port'),
                coalesce(host(inet_server_addr()), ''), current_user")
    if [[ -n "$addr" ]]; then
        CONTAINER_CONNINFO="host=$addr port=$port dbname=$DATABASE user=$user"
        MOUNTS=()
    else
        local dir=${socket_dirs%%,*}
        dir=${dir//[[:space:]]/}
        [[ -S "$dir/.s.PGSQL.$port" ]] || fail "no socket $dir/.s.PGSQL.$port"
        CONTAINER_CONNINFO="host=/run/postgresql port=$port dbname=$DATABASE user=$user"
        MOUNTS=(-v "$dir/.s.PGSQL.$port:/run/postgresql/.s.PGSQL.$port")
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

delivered_count() {
    pm logs "$CONTAINER" 2>/dev/null | grep -o '"id":[0-9]*' | sort -u | wc -l
}

all_delivered() {
    (($(delivered_count) >= EVENTS))
}

http_ok() {
    curl -fs -o /dev/null "http://127.0.0.1:$HTTP_PORT$1"
}

position() {
    psql "$DB_CONNINFO" -X -q -At -c "SELECT position FROM relay_checkpoints WHERE name = '$NAME'"
}

main() {
    mkdir -p "$STATE/storage" "$STATE/run" "$STATE/tmp"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/relay-container.XXXXXX")
    # libpq reads a conninfo's later keywords over the earlier ones.
    ADMIN_CONNINFO="$RELAY_TEST_CONNINFO connect_timeout=10"

    make_base_image
    build_image
    report_size
    check_image
    printf 'example\n' >"$WORK/example.password"
    chmod 0644 "$WORK/example.password"
    check_examples

    NAME="ctr_$$_$RANDOM"
    DATABASE="relay_$NAME"
    sql -c "CREATE DATABASE \"$DATABASE\"" >/dev/null
    DB_CONNINFO="$RELAY_TEST_CONNINFO dbname=$DATABASE"
    connect_args
    HTTP_PORT=$(free_port)

    # As an operator writes it: 0644, not writable by others (the relay refuses that).
    cat >"$WORK/relay.yaml" <<EOF
name: $NAME
database:
  conninfo: "$CONTAINER_CONNINFO"
source:
  poll_interval: 50ms
sink:
  plugin: stdout
http:
  listen: "127.0.0.1:$HTTP_PORT"
EOF
    chmod 0644 "$WORK/relay.yaml"
    local run_args=(--network host --read-only --cap-drop all --security-opt no-new-privileges
        -e "RELAY_HTTP_PORT=$HTTP_PORT" -v "$WORK/relay.yaml:/config/relay.yaml:ro" "${MOUNTS[@]}")

    say "migrate, the documented one-off"
    pm run --rm "${run_args[@]}" "$IMAGE" migrate -c /config/relay.yaml >"$WORK/migrate.log" 2>&1 || {
        cat "$WORK/migrate.log" >&2
        fail "podman run $IMAGE migrate failed"
    }

    CONTAINER="relay-test-$NAME"
    pm run -d --name "$CONTAINER" "${run_args[@]}" "$IMAGE" >/dev/null
    psql "$DB_CONNINFO" -X -q -v ON_ERROR_STOP=1 -c \
        "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, body)
         SELECT 'order-' || g, 'order', 1, 'created', jsonb_build_object('n', g)
         FROM generate_series(1, $EVENTS) g"
    local last_id
    last_id=$(psql "$DB_CONNINFO" -X -q -At -c "SELECT max(id) FROM events")

    wait_until "delivery of the $EVENTS events on the container's stdout" all_delivered
    say "the $EVENTS events are on the container's stdout"
    wait_until "200 from /healthz" http_ok /healthz
    wait_until "200 from /readyz" http_ok /readyz
    say "/healthz and /readyz: 200"
    pm healthcheck run "$CONTAINER" >/dev/null 2>&1 || fail "the image's HEALTHCHECK says unhealthy"
    say "HEALTHCHECK: healthy"

    local uid
    uid=$(pm exec "$CONTAINER" id -u)
    [[ "$uid" != 0 ]] || fail "the relay runs as root in the container"

    # The relay's stderr is its log: every record one JSON object.
    pm logs "$CONTAINER" 2>"$WORK/log.jsonl" >/dev/null
    python3 -c '
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
assert records, "no log records"
assert all("level" in r and "msg" in r for r in records), records
' "$WORK/log.jsonl" || fail "the container's log is not JSON records (see above)"

    local start=$SECONDS
    pm stop --time 20 "$CONTAINER" >/dev/null
    local code
    code=$(pm inspect --format '{{.State.ExitCode}}' "$CONTAINER")
    [[ "$code" == 0 ]] || fail "exit code $code after podman stop, not 0"
    say "podman stop: exit 0 after $((SECONDS - start))s"
    pm logs "$CONTAINER" 2>&1 | grep -q 'stopped at position [0-9]* (stored)' ||
        fail "the log does not say the position was stored at the stop"
    local pos
    pos=$(position)
    [[ "$pos" =~ ^[0-9]+$ ]] || fail "no position stored for $NAME"
    ((pos >= last_id)) || fail "the stored position is $pos, below the last event's id $last_id"
    say "position stored: $pos (last event $last_id)"
    echo "PASS"
}

main "$@"
