#!/usr/bin/env python3
"""Helpers of bench-latency.sh: timestamps the relay's output lines, then reports latencies.

    latency.py probe OUT < relay-stdout
        Reads the stdout sink's lines ({"id":N,...}) and, at end of input, writes one
        "id<TAB>arrival" line per event into OUT, arrival in seconds since the epoch
        (CLOCK_REALTIME, the clock PostgreSQL stamps commits with on the same machine).

    latency.py report LABEL ARRIVALS COMMITS WARMUP_SECONDS
        COMMITS holds "id<TAB>commit<TAB>created_at" lines (epoch seconds). Prints one line for
        LABEL: events measured, achieved rate, and p50/p90/p99/max of arrival - commit in ms,
        leaving out the events committed in the first WARMUP_SECONDS. Exits 1 when an event
        never arrived.
"""
import math
import os
import sys
import time

ID_PREFIX = b'{"id":'


def probe(out_path):
    # os.read returns as soon as anything is in the pipe, so every line is stamped when the
    # chunk holding it arrived; a buffered line reader could hold lines back.
    arrivals = []
    pending = b""
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        now = time.time()
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if not line.startswith(ID_PREFIX):
                raise SystemExit(f"latency.py: not a stdout sink line: {line[:80]!r}")
            arrivals.append((line[len(ID_PREFIX):line.index(b",")].decode(), now))
    # Written at the end only, so that file I/O never delays the stamping.
    with open(out_path, "w", encoding="ascii") as out:
        for event_id, arrived in arrivals:
            out.write(f"{event_id}\t{arrived:.6f}\n")


def read_table(path):
    with open(path, encoding="ascii") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def report(label, arrivals_path, commits_path, warmup):
    first_arrival = {}
    for event_id, arrived in read_table(arrivals_path):
        # At-least-once may repeat an event; its latency is that of its first delivery.
        first_arrival.setdefault(int(event_id), float(arrived))

    commits = [(int(i), float(c), float(a)) for i, c, a in read_table(commits_path)]
    if not commits:
        raise SystemExit(f"latency.py: {label}: no events were written")
    missing = [i for i, _, _ in commits if i not in first_arrival]
    if missing:
        print(f"latency.py: {label}: {len(missing)} events never reached the sink, "
              f"e.g. ids {missing[:5]}", file=sys.stderr)
        sys.exit(1)

    start = min(c for _, c, _ in commits)
    end = max(c for _, c, _ in commits)
    measured = sorted((first_arrival[i] - c) * 1000.0 for i, c, _ in commits
                      if c >= start + warmup)
    if not measured:
        raise SystemExit(f"latency.py: {label}: every event fell in the warm-up")
    # Insert to commit: how far created_at (the margin's clock) runs ahead of the commit.
    commit_delay = sorted((c - a) * 1000.0 for _, c, a in commits if c >= start + warmup)
    rate = (len(commits) - 1) / (end - start) if end > start else 0.0
    print(f"{label:<16} {len(measured):>7} {rate:>9.0f} "
          f"{percentile(measured, 0.50):>8.1f} {percentile(measured, 0.90):>8.1f} "
          f"{percentile(measured, 0.99):>8.1f} {measured[-1]:>8.1f} "
          f"{percentile(commit_delay, 0.99):>10.2f}")


def main(argv):
    if len(argv) == 3 and argv[1] == "probe":
        probe(argv[2])
    elif len(argv) == 6 and argv[1] == "report":
        report(argv[2], argv[3], argv[4], float(argv[5]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
