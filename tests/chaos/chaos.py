#!/usr/bin/python3
"""The writers and the verifier of the chaos soak (tests/chaos/chaos.sh).

    chaos.py writer --conninfo C --writer N --profile fast|slow|duet --seconds S --rate R
                    --log FILE [--lull PERIOD,QUIET --epoch T]
        One writer: transactions of the kinds its profile draws (see KINDS and PROFILES) on
        aggregates of its own for S seconds, R a second at most, surviving PostgreSQL restarts.
        With --lull, the last QUIET seconds of every PERIOD counted from the epoch time T are a
        lull: writers given the same T fall quiet together, but for the duet profile, which
        plays its duet then. Every outcome goes to FILE, one JSON object per line: {"o": "c"|"r",
        "tx", "k", "how", "ev": [[aggregate, version, marker, id], ...]}, "c" for committed, "r"
        for rolled back or aborted; the last line is {"end": true, "stats": {...}}. Exits 0, or 1
        on an error that is not a lost connection.

    chaos.py verify --conninfo C --output FILE --writer-log FILE... [--fact KEY=VALUE...]
        Checks the relay's output (stdout sink lines) against the events table and the writers'
        logs, prints the summary, and exits 0 only when no committed event is missing, no rolled
        back one was delivered, the per-aggregate order of first deliveries held and the harness
        itself is consistent (every writer finished, its log agrees with the table).

Needs psycopg2 (Debian: python3-psycopg2, which only /usr/bin/python3 sees; scripts/deps installs
it).
"""
import argparse
import json
import math
import os
import random
import sys
import time
import uuid
from collections import Counter, defaultdict

import psycopg2

AGGREGATES_PER_WRITER = 16
# Longer than the relay's 500 ms margin: the id is passed while its transaction still runs.
LONG_SLEEP = (0.55, 1.5)
XID_SLEEP = (0.55, 1.5)
# The duet's holder stays open this long after the early transaction committed: past the margin
# (or settled mode's gap floor) twice over, the time for the relay to pass the id and then to judge
# the gap dead. DUET_SECONDS is what a whole duet needs of a lull.
DUET_HOLD = (1.2, 1.5)
DUET_SECONDS = 1.7
# Quiet enough for a duet: nothing committed for longer than the margin (500 ms) and settled
# mode's gap floor (1 s), so that no checkpoint of the relay's (which can follow the last commit by
# either, or by both) comes during the duet.
QUIET_SECONDS = 1.1
# Other transactions holding an xid, and seconds since the last commit (NULL: none since the
# server started); pg_last_committed_xact() needs track_commit_timestamp.
QUIET_SQL = """
SELECT (SELECT count(*) FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()),
       extract(epoch FROM clock_timestamp() - (pg_last_committed_xact()).timestamp)
"""
# The hard deadline past --seconds: the last transaction and the resolution of a commit whose
# outcome a crash left unknown must both finish within it.
GRACE_SECONDS = 60
RECONNECT_PAUSE = 0.1

# What a transaction does, as steps; each writer draws kinds by its profile's weights.
#   event: insert an event (next version of an aggregate of the writer's)
#   business: insert into the business table chaos_orders (takes an xid before the event's id)
#   xid: SELECT pg_current_xact_id() (an xid without any write)
#   sleep: hold the transaction open
KINDS = {
    "single": lambda r: [("event",)],
    "multi": lambda r: [("event",)] * r.randint(2, 5),
    "business": lambda r: [("business",), ("event",)] + [("event",)] * r.randint(0, 1),
    "xid-first": lambda r: [("xid",), ("event",)],
    "rollback": lambda r: [("event",)] * r.randint(1, 3),
    "long": lambda r: [("event",), ("sleep", r.uniform(*LONG_SLEEP)), ("event",)],
    "xid-sleep": lambda r: [
        (r.choice(["xid", "business"]),), ("sleep", r.uniform(*XID_SLEEP)), ("event",)],
    "long-rollback": lambda r: [("event",), ("sleep", r.uniform(*LONG_SLEEP))],
}
ROLLED_BACK_KINDS = {"rollback", "long-rollback"}
# Kinds that sleep, and for how long at most: none starts so late that it would run into a lull.
HELD_KINDS = {"long", "xid-sleep", "long-rollback"}
HELD_SECONDS = max(LONG_SLEEP[1], XID_SLEEP[1]) + 0.1
# fast: the bulk of the traffic, paced; a long transaction now and then.
# slow: only transactions held open past the margin, with a pause before each.
# duet: nothing but a duet in each lull (see Writer.duet), on two connections.
# Every profile keeps quiet during the lulls, but for the duet. While newer transactions commit all
# the time (the relay's own checkpoints among them, a margin after each commit), a proof that takes
# the oldest writer left for finished is right by luck: the holes show when the traffic thins out,
# as it does between bursts.
PROFILES = {
    "fast": {"kinds": {"single": 44, "multi": 15, "business": 14, "xid-first": 5, "rollback": 12,
                       "long": 0.1, "xid-sleep": 0.05, "long-rollback": 0.05}},
    "slow": {"kinds": {"long": 45, "xid-sleep": 45, "long-rollback": 10}, "pause": (0.2, 1.0)},
    "duet": {"kinds": {}},
}

INSERT_EVENT = """
INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, body, metadata)
VALUES (%s, 'chaos', %s, %s, %s, %s)
RETURNING id
"""


class Fatal(Exception):
    """Anything but a lost connection: the harness cannot vouch for its bookkeeping any more."""


def connection_lost(conn, error):
    code = getattr(error, "pgcode", None)
    if code is not None:
        # 57P: admin, crash or immediate shutdown, cannot connect now; 08: connection exceptions.
        return code.startswith("57P") or code.startswith("08")
    if conn is None or conn.closed:
        return True
    # libpq's own failures ("server closed the connection unexpectedly") carry no SQLSTATE, and
    # psycopg2 does not always mark the connection closed at once: try it.
    try:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.rollback()
        return False
    except psycopg2.Error:
        return True


class Session:
    """One connection of a writer, reconnected whenever it is lost."""

    def __init__(self, writer, name):
        self.writer = writer
        self.name = name
        self.conn = None
        self.backend = None  # (pid, backend_start) of the server process behind conn

    def drop(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg2.Error:
                pass
        self.conn = None

    def connect(self):
        """Connects, retrying until the hard deadline; the server may be restarting."""
        while self.conn is None:
            if time.monotonic() > self.writer.hard_deadline:
                raise Fatal("could not reconnect before the deadline")
            try:
                conn = psycopg2.connect(self.writer.args.conninfo, connect_timeout=5,
                                        application_name=f"chaos-writer-{self.name}")
                with conn.cursor() as cur:
                    # pg-tmp turns synchronous_commit off; a commit reported to us but lost in
                    # the crash would look like an event the relay lost (or, delivered before
                    # the crash, a phantom). The timeout bounds every statement.
                    cur.execute("SET synchronous_commit = on; SET statement_timeout = '30s'")
                    cur.execute("SELECT pid, backend_start FROM pg_stat_activity "
                                "WHERE pid = pg_backend_pid()")
                    self.backend = cur.fetchone()
                conn.commit()
                self.conn = conn
                self.writer.stats["connects"] += 1
            except psycopg2.Error:
                self.writer.stats["connect_failures"] += 1
                time.sleep(RECONNECT_PAUSE)

    def query(self, sql, params=()):
        """One row of a read-only statement, outside any transaction of the writer's."""
        while True:
            self.connect()
            try:
                with self.conn.cursor() as cur:
                    cur.execute(sql, params)
                    row = cur.fetchone()
                self.conn.rollback()
                return row
            except psycopg2.Error as error:
                if not connection_lost(self.conn, error):
                    raise Fatal(f"{sql.split()[0]}: {error!r}") from error
                self.drop()


class Transaction:
    """One transaction on a session, run a few steps at a time, so that a writer can interleave
    two; its outcome is recorded exactly once. Its events take the next versions of the
    aggregates in `pool`, which no other open transaction of the writer's may use."""

    def __init__(self, writer, session, kind, pool):
        self.writer = writer
        self.session = session
        self.kind = kind
        self.pool = pool
        self.tx = uuid.uuid4().hex
        self.events = []  # [aggregate, version, marker, id], in the order inserted
        self.used = Counter()
        self.done = False
        session.connect()

    def do(self, steps):
        """Runs the steps; returns False when the transaction is over (lost, outcome recorded)."""
        if self.done:
            return False
        try:
            with self.session.conn.cursor() as cur:
                for step in steps:
                    self.step(cur, step)
            return True
        except psycopg2.Error as error:
            self.lost(error, committing=False)
            return False

    def step(self, cur, step):
        w = self.writer
        if step[0] == "event":
            aggregate = w.rng.choice(self.pool)
            version = w.next_version[aggregate] + self.used[aggregate]
            self.used[aggregate] += 1
            event = [aggregate, version, uuid.uuid4().hex, None]
            # Recorded before it is sent: if the server dies meanwhile, the marker is known.
            self.events.append(event)
            body = {"tx": self.tx, "m": event[2], "w": w.args.writer, "k": self.kind}
            cur.execute(INSERT_EVENT, (aggregate, version, self.kind, json.dumps(body),
                                       json.dumps({"writer": w.args.writer})))
            event[3] = cur.fetchone()[0]
        elif step[0] == "business":
            cur.execute("INSERT INTO chaos_orders (writer, tx) VALUES (%s, %s)",
                        (w.args.writer, self.tx))
        elif step[0] == "xid":
            cur.execute("SELECT pg_current_xact_id()")
        elif step[0] == "sleep":
            time.sleep(step[1])

    def end(self, commit):
        if self.done:
            return
        try:
            if commit:
                self.session.conn.commit()
            else:
                self.session.conn.rollback()
        except psycopg2.Error as error:
            self.lost(error, committing=commit)
            return
        self.finish("c" if commit else "r", "commit" if commit else "rollback")

    def lost(self, error, committing):
        if not connection_lost(self.session.conn, error):
            raise Fatal(f"{self.kind} transaction {self.tx}: {error!r}") from error
        backend = self.session.backend
        self.session.drop()
        self.writer.stats["connections_lost"] += 1
        if not committing:
            # COMMIT was never sent: the server cannot have committed it.
            self.finish("r", "aborted")
            return
        committed = self.writer.resolve(self.session, self.tx, len(self.events), backend)
        self.finish("c" if committed else "r", "resolved")

    def finish(self, outcome, how):
        self.done = True
        self.writer.record(outcome, self.tx, self.kind, how, self.events)
        if outcome == "c":
            for aggregate, version, _, _ in self.events:
                self.writer.next_version[aggregate] = version + 1


class Writer:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.aggregates = [f"w{args.writer}-a{k}" for k in range(AGGREGATES_PER_WRITER)]
        self.next_version = {a: 1 for a in self.aggregates}
        self.profile = PROFILES[args.profile]
        self.kinds = list(self.profile["kinds"])
        self.weights = [self.profile["kinds"][k] for k in self.kinds]
        self.stats = Counter()
        start = time.monotonic()
        self.stop_at = start + args.seconds
        self.hard_deadline = self.stop_at + GRACE_SECONDS
        self.sessions = [Session(self, f"{args.writer}"), Session(self, f"{args.writer}b")]
        # Line-buffered: a writer killed outright leaves whole lines.
        self.log = open(args.log, "a", buffering=1, encoding="utf-8")

    def record(self, outcome, tx, kind, how, events):
        self.stats[f"{outcome}:{how}"] += 1
        self.log.write(json.dumps({"o": outcome, "tx": tx, "k": kind, "how": how,
                                   "ev": events}) + "\n")

    def resolve(self, session, tx, n_events, backend):
        """The outcome of a COMMIT whose answer was lost: its events are all there, or none."""
        self.stats["unknown_commits"] += 1
        # The old server process may still be finishing the transaction (when only the
        # connection broke); after a restart it is gone for sure.
        while session.query("SELECT count(*) FROM pg_stat_activity "
                            "WHERE pid = %s AND backend_start = %s", backend)[0] > 0:
            if time.monotonic() > self.hard_deadline:
                raise Fatal(f"transaction {tx}: its old backend never ended")
            time.sleep(RECONNECT_PAUSE)
        found = session.query("SELECT count(*) FROM events WHERE body->>'tx' = %s", (tx,))[0]
        if found not in (0, n_events):
            raise Fatal(f"transaction {tx}: {found} of its {n_events} events committed")
        return found == n_events

    def run_transaction(self, kind):
        pool = self.rng.sample(self.aggregates, 2 if kind == "multi" else 1)
        t = Transaction(self, self.sessions[0], kind, pool)
        if t.do(KINDS[kind](self.rng)):
            t.end(commit=kind not in ROLLED_BACK_KINDS)

    def lull_phase(self):
        """(in a lull now, seconds until that changes), by the schedule all writers share."""
        if not self.args.lull:
            return False, math.inf
        period, quiet = self.args.lull
        phase = (time.time() - self.args.epoch) % period
        busy = period - quiet
        return (True, period - phase) if phase >= busy else (False, busy - phase)

    def sleep(self, seconds):
        time.sleep(max(0.0, min(seconds, self.stop_at - time.monotonic())))

    def run_paced(self):
        interval = 1.0 / self.args.rate
        pause = self.profile.get("pause")
        next_start = time.monotonic()
        while time.monotonic() < self.stop_at:
            in_lull, left = self.lull_phase()
            if in_lull:
                self.sleep(left)
                next_start = time.monotonic()
                continue
            kind = self.rng.choices(self.kinds, self.weights)[0]
            if kind in HELD_KINDS and left < HELD_SECONDS:
                self.sleep(left)
                continue
            if pause:
                time.sleep(self.rng.uniform(*pause))
            self.run_transaction(kind)
            next_start += interval
            delay = next_start - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:
                # Behind after a long transaction or an outage: no burst to catch up.
                next_start = time.monotonic()

    def quiet(self, until):
        """Waits, until the monotonic time `until` at most, for a database where no other
        transaction holds an xid and nothing committed for QUIET_SECONDS (the relay's own
        checkpoints included); returns whether it came."""
        while time.monotonic() < until:
            busy, idle = self.sessions[1].query(QUIET_SQL)
            if busy == 0 and (idle is None or idle >= QUIET_SECONDS):
                return True
            time.sleep(0.05)
        return False

    def duet(self):
        """Two transactions of one writer, the first taking its xid before the second takes an
        id, and its own id after: it commits, and the second stays open past the margin."""
        # An idle connection the crash broke would only show at the duet's first step.
        for session in self.sessions:
            session.query("SELECT 1")
        a, b = self.rng.sample(self.aggregates, 2)
        holder = Transaction(self, self.sessions[0], "duet-holder", [a])
        early = Transaction(self, self.sessions[1], "duet-early", [b])
        early.do([(self.rng.choice(["xid", "business"]),)])
        holder.do([("event",)])
        if early.do([("event",)]):
            early.end(commit=True)
        if holder.do([("sleep", self.rng.uniform(*DUET_HOLD)), ("event",)]):
            # Now and then a rollback: the late path must not deliver it either.
            holder.end(commit=self.rng.random() >= 0.2)

    def run_duets(self):
        """One duet in each lull, once the database is quiet: with nothing newer committing,
        the holder's transaction is the oldest writer left, and its id the gap in sight."""
        while time.monotonic() < self.stop_at:
            in_lull, left = self.lull_phase()
            if not in_lull:
                self.sleep(left)
                continue
            lull_end = time.monotonic() + left
            # A relay starting commits its checkpoint row in a transaction of its own: a commit
            # that breaks the quiet, and one newer than the holder's xid, which would hide the
            # hole. chaos.sh holds its kills back while this file is there.
            flag = self.args.duet_flag
            if flag:
                with open(flag, "w", encoding="ascii"):
                    pass
            try:
                if self.quiet(min(lull_end, self.stop_at) - DUET_SECONDS):
                    self.duet()
                    self.stats["duets"] += 1
                else:
                    self.stats["duets_skipped"] += 1
            finally:
                if flag:
                    os.unlink(flag)
            self.sleep(lull_end - time.monotonic())

    def run(self):
        try:
            if self.args.profile == "duet":
                self.run_duets()
            else:
                self.run_paced()
        except Fatal as error:
            print(f"chaos.py: writer {self.args.writer}: {error}", file=sys.stderr)
            return 1
        finally:
            for session in self.sessions:
                session.drop()
        self.log.write(json.dumps({"end": True, "stats": self.stats}) + "\n")
        self.log.close()
        return 0


def cmd_writer(args):
    return Writer(args).run()


# --- verification -------------------------------------------------------------------------------

def id_ranges(ids, limit=None):
    """'3, 7-9, 12' for the sorted ids given (at most `limit` ranges, then '...')."""
    ranges = []
    for i in sorted(ids):
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    text = [str(a) if a == b else f"{a}-{b}" for a, b in ranges]
    if limit is not None and len(text) > limit:
        text = text[:limit] + [f"... ({len(ranges)} ranges)"]
    return ", ".join(text)


def read_writer_logs(paths):
    committed, rolled_back = {}, {}  # marker -> (tx, kind, how, aggregate, version, writer's id)
    transactions = Counter()
    kinds = Counter()
    stats = Counter()
    unfinished = []
    for path in paths:
        ended = False
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                if record.get("end"):
                    ended = True
                    stats.update(record["stats"])
                    continue
                transactions[(record["o"], record["how"])] += 1
                kinds[record["k"]] += 1
                into = committed if record["o"] == "c" else rolled_back
                for aggregate, version, marker, event_id in record["ev"]:
                    into[marker] = (record["tx"], record["k"], record["how"], aggregate, version,
                                    event_id)
        if not ended:
            unfinished.append(os.path.basename(path))
    return committed, rolled_back, transactions, kinds, stats, unfinished


def read_table(conninfo):
    conn = psycopg2.connect(conninfo, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TimeZone = 'UTC'")
            cur.execute("SHOW track_commit_timestamp")
            commit_ts = cur.fetchone()[0] == "on"
            # How long after its created_at each row committed, where the server tracks it.
            delay = ("extract(epoch FROM pg_xact_commit_timestamp(xmin) - created_at)"
                     if commit_ts else "NULL")
            cur.execute(f"""
                SELECT id, aggregate_id, aggregate_version, kind, body->>'m', created_at::text,
                       {delay}
                FROM events ORDER BY id""")
            rows = {r[0]: r[1:] for r in cur.fetchall()}
        conn.rollback()
    finally:
        conn.close()
    return rows


def read_output(path):
    """The stdout sink's lines, in order. A relay killed in the middle of a write can leave a
    torn line, which the next run's first line then continues: such a line is cut where each
    object starts, and whatever still does not parse is counted."""
    lines, torn = [], 0
    with open(path, "rb") as f:
        for raw in f:
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                continue
            try:
                lines.append(json.loads(text))
                continue
            except ValueError:
                torn += 1
            for piece in text.split('{"id":')[1:]:
                try:
                    lines.append(json.loads('{"id":' + piece))
                except ValueError:
                    pass
    return lines, torn


def cmd_verify(args):
    facts = dict(f.split("=", 1) for f in args.fact)
    committed, rolled_back, transactions, kinds, stats, unfinished = \
        read_writer_logs(args.writer_log)
    table = read_table(args.conninfo)
    lines, torn = read_output(args.output)
    by_marker = {row[3]: event_id for event_id, row in table.items()}

    # The harness first: what the writers say committed must be exactly what the table holds.
    problems = []
    unaccounted = [i for i, stored in table.items() if stored[3] not in committed]
    absent = [m for m in committed if m not in by_marker]
    if unfinished:
        problems.append(f"writers that did not finish: {', '.join(unfinished)}")
    if unaccounted:
        problems.append(f"rows no writer recorded as committed: ids {id_ranges(unaccounted, 20)}")
    if absent:
        problems.append(f"{len(absent)} events recorded as committed are not in the table, "
                        f"e.g. {absent[:5]}")
    per_aggregate = defaultdict(list)
    for event_id in sorted(table):
        per_aggregate[table[event_id][0]].append(table[event_id][1])
    disordered = [a for a, v in per_aggregate.items() if v != sorted(set(v))]
    if disordered:
        problems.append(f"aggregates whose versions do not rise with the id in the table: "
                        f"{disordered[:5]}")

    seen = set()
    duplicates = []          # ids of lines seen before
    phantoms = []            # (line, why): delivered, but not as a committed row
    rolled_back_delivered = []
    late_lines, late_ids = 0, set()
    violations = []          # (line number, id, aggregate, version, previous version, late)
    highest = {}             # aggregate -> (version, id) of its highest first delivery so far
    for number, line in enumerate(lines, 1):
        event_id = line.get("id")
        late = line.get("late") is True
        if late:
            late_lines += 1
            late_ids.add(event_id)
        marker = (line.get("payload") or {}).get("m")
        if marker in rolled_back:
            rolled_back_delivered.append((number, event_id, marker))
            continue
        stored = table.get(event_id)
        if stored is None or stored[3] != marker or stored[0] != line.get("key") or \
                stored[1] != line.get("version"):
            phantoms.append((number, event_id, "no such row" if stored is None else "differs"))
            continue
        if event_id in seen:
            duplicates.append(event_id)
            continue
        seen.add(event_id)
        aggregate, version = stored[0], stored[1]
        before = highest.get(aggregate)
        if before is not None and version < before[0]:
            violations.append((number, event_id, aggregate, version, before, late))
        if before is None or version > before[0]:
            highest[aggregate] = (version, event_id)

    missing = sorted(set(table) - seen)
    late_violations = sum(1 for v in violations if v[5])
    n_committed_tx = sum(n for (o, _), n in transactions.items() if o == "c")
    n_rolled_tx = sum(n for (o, _), n in transactions.items() if o == "r")

    def row(label, value):
        print(f"  {label:<28} {value}")

    print(f"chaos: summary ({facts.get('mode', '?')} mode, {facts.get('seconds', '?')} s)")
    row("transactions committed", f"{n_committed_tx} ({transactions[('c', 'resolved')]} after "
        f"an unknown COMMIT outcome)")
    row("transactions rolled back", f"{n_rolled_tx} ({transactions[('r', 'aborted')]} aborted "
        f"by a lost connection, {transactions[('r', 'resolved')]} after an unknown COMMIT)")
    if "seconds" in facts:
        rate = (n_committed_tx + n_rolled_tx) / float(facts["seconds"])
        busy = float(facts.get("busy_share", 1))
        row("transactions/s", f"{rate:.0f} on average" +
            (f", about {rate / busy:.0f} outside the lulls" if busy < 1 else ""))
    row("by kind", ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    row("duets in lulls", f"{stats['duets']} played, {stats['duets_skipped']} skipped (the "
        f"database never fell quiet)")
    row("writer connections lost", stats["connections_lost"])
    row("committed events (table)", len(table))
    row("output lines", f"{len(lines)}" + (f" ({torn} torn)" if torn else ""))
    row("delivered unique", len(seen))
    row("missing", len(missing))
    row("rolled-back delivered", len(rolled_back_delivered))
    row("phantom delivered", len(phantoms))
    row("order violations", f"{len(violations)} ({late_violations} on late-marked lines, "
        f"{len(violations) - late_violations} on others)")
    row("duplicates", f"{len(duplicates)} lines" +
        (f": ids {id_ranges(duplicates, 30)}" if duplicates else ""))
    row("late events", f"{late_lines} lines, {len(late_ids)} ids")
    for key in ("relay_starts", "relay_kills", "relay_exits", "postgres_restarts", "drain",
                "relay_stop"):
        if key in facts:
            row(key.replace("_", " "), facts[key])

    if missing:
        print(f"chaos: missing events (first 20 of {len(missing)}; all are rows of the table, "
              f"committed):")
        for event_id in missing[:20]:
            aggregate, version, kind, marker, created_at, delay = table[event_id]
            writer = committed.get(marker)
            how = f", writer recorded '{writer[2]}'" if writer else ", NOT in any writer's log"
            after = f", committed {delay:.3f} s after created_at" if delay is not None else ""
            print(f"  id {event_id} created_at {created_at} {aggregate} v{version} ({kind}"
                  f"{after}{how})")
        print(f"  all missing ids: {id_ranges(missing, 60)}")
    for number, event_id, marker in rolled_back_delivered[:20]:
        tx, kind, how = rolled_back[marker][:3]
        print(f"chaos: rolled-back event delivered: line {number}, id {event_id}, {kind} "
              f"transaction {tx} ({how})")
    for number, event_id, why in phantoms[:20]:
        print(f"chaos: phantom delivery: line {number}, id {event_id} ({why})")
    for number, event_id, aggregate, version, before, late in violations[:20]:
        print(f"chaos: order violation: line {number}, id {event_id}{' (late)' if late else ''}: "
              f"{aggregate} v{version} first delivered after v{before[0]} (id {before[1]})")
    for problem in problems:
        print(f"chaos: HARNESS: {problem}")

    failures = []
    if missing:
        failures.append(f"{len(missing)} missing")
    if rolled_back_delivered:
        failures.append(f"{len(rolled_back_delivered)} rolled-back delivered")
    if phantoms:
        failures.append(f"{len(phantoms)} phantom")
    if violations:
        failures.append(f"{len(violations)} order violations")
    if problems:
        failures.append("harness inconsistent")
    if facts.get("drain", "ok") != "ok":
        failures.append("the relay did not drain")
    print(f"chaos: {'FAIL: ' + ', '.join(failures) if failures else 'PASS'}")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("writer")
    w.add_argument("--conninfo", required=True)
    w.add_argument("--writer", type=int, required=True)
    w.add_argument("--profile", choices=sorted(PROFILES), default="fast")
    w.add_argument("--seconds", type=float, required=True)
    w.add_argument("--rate", type=float, default=1.0, help="transactions a second, at most")
    w.add_argument("--seed", type=int, default=None)
    w.add_argument("--lull", type=lambda t: tuple(float(x) for x in t.split(",")),
                   help="PERIOD,QUIET in seconds")
    w.add_argument("--epoch", type=float, default=0.0, help="when the lull periods start")
    w.add_argument("--duet-flag",
                   help="duet: a file made to exist while a duet waits for quiet and plays")
    w.add_argument("--log", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--conninfo", required=True)
    v.add_argument("--output", required=True)
    v.add_argument("--writer-log", nargs="+", required=True)
    v.add_argument("--fact", action="append", default=[], help="KEY=VALUE for the summary")
    args = parser.parse_args()
    return cmd_writer(args) if args.command == "writer" else cmd_verify(args)


if __name__ == "__main__":
    sys.exit(main())
