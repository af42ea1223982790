# shellcheck shell=bash
# What the shell-script tests (tests/container, tests/install) share: their messages, failing, a
# wait on a condition with a deadline, and a database of their own on the suite's PostgreSQL.
# Source it after setting TEST_NAME (the prefix of the messages) and DEADLINE_S (seconds).

say() {
    echo "$TEST_NAME: $*" >&2
}

fail() {
    say "FAIL: $*"
    exit 1
}

# Runs the command until it succeeds, for at most DEADLINE_S seconds; fails the test naming what.
wait_until() {
    local what=$1
    shift
    local end=$((SECONDS + DEADLINE_S))
    until "$@"; do
        ((SECONDS < end)) || fail "no $what within ${DEADLINE_S}s"
        sleep 0.1
    done
}

# For the cleanup traps: drops database $2 on the server of conninfo $1, if $2 is set, whatever
# sessions it still has.
drop_test_database() {
    [[ -n "$2" ]] || return 0
    psql "$1" -X -q -c "DROP DATABASE IF EXISTS \"$2\" WITH (FORCE)" >/dev/null 2>&1 || true
}
