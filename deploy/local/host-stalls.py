#!/usr/bin/env python3
"""Does this machine stop running its threads under an I/O load like Wharf's? No Wharf needed.

A probe thread sleeps 0.5 ms at a time and counts the wake-ups that come 2 ms or more late.
It runs three times for a few seconds each: on a quiet machine, beside processes that only
fdatasync() a file, and beside the same writers plus pairs of processes that wake each other
up through pipes (the shape of a database commit, a broker round trip and an RPC). A machine
fit for millisecond latency targets shows no stalls in any phase. Each phase also prints the
share of the machine's CPU time the hypervisor gave to someone else meanwhile (steal, from
/proc/stat): a host that is busy with other guests shows there first.

Some virtual machines stop every vCPU for several milliseconds once per 100 ms period under
the third load only: `wharf-bench` then reports a commit-to-consumer p99 about as long as the
longest stall, whatever Wharf does. The bench's own probe (its pacer thread) shows the same
stalls in the latency line ("machine stalls N (…/s, ≥ 2 ms late), longest … ms").

Usage: deploy/local/host-stalls.py [--seconds 3] [--fsyncs 2000] [--dir DIR]
"""

import argparse
import os
import sys
import tempfile
import time
from multiprocessing import Barrier, Process

PROBE_SLEEP = 0.0005
STALL = 0.002


def cpu_time():
    """(all, stolen) clock ticks of the whole machine from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat") as stat:
            fields = next(line for line in stat if line.startswith("cpu ")).split()[1:9]
        ticks = [int(field) for field in fields]
    except (OSError, StopIteration, ValueError):
        return None
    # user nice system idle iowait irq softirq steal; guest time is inside user already.
    return sum(ticks), ticks[7]


def steal_percent(before, after):
    if before is None or after is None or after[0] <= before[0]:
        return None
    return (after[1] - before[1]) * 100 / (after[0] - before[0])


def probe(seconds):
    """Wake-ups at least STALL late, as (offset s, lateness ms)."""
    start = time.perf_counter()
    stalls = []
    while True:
        before = time.perf_counter()
        time.sleep(PROBE_SLEEP)
        after = time.perf_counter()
        late = after - before - PROBE_SLEEP
        if late >= STALL:
            stalls.append((before - start, late * 1000))
        if after - start > seconds:
            return stalls


def fsync_writer(ready, path, rate, seconds):
    """One 8 kB write and fdatasync() every 1/rate s, like a commit log."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    block = b"w" * 8192
    ready.wait()
    start = time.perf_counter()
    done = 0
    while time.perf_counter() - start < seconds:
        due = start + done / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        os.pwrite(fd, block, (done % 128) * 8192)
        os.fdatasync(fd)
        done += 1
    os.close(fd)


def ping_pong(ready, seconds):
    """Two processes waking each other through pipes, with a short pause per round trip."""
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    child = os.fork()
    if child == 0:
        while os.read(to_child, 1) == b"x":
            os.write(from_child, b"x")
        os._exit(0)
    ready.wait()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        os.write(from_parent, b"x")
        os.read(to_parent, 1)
        time.sleep(0.0001)
    os.write(from_parent, b"q")
    os.waitpid(child, 0)


def phase(name, seconds, workers):
    # The probe starts once every load generator has set itself up and is about to run.
    ready = Barrier(len(workers) + 1)
    processes = [Process(target=target, args=(ready, *args)) for target, args in workers]
    for process in processes:
        process.start()
    ready.wait()
    before = cpu_time()
    stalls = probe(seconds)
    steal = steal_percent(before, cpu_time())
    for process in processes:
        process.join()
    longest = max((late for _, late in stalls), default=0.0)
    print(
        f"{name:<36} {len(stalls):>5} stalls ({len(stalls) / seconds:5.1f}/s), "
        f"longest {longest:6.2f} ms"
        + ("" if steal is None else f", host steal {steal:4.1f} %")
    )
    return stalls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--fsyncs", type=float, default=2000.0, help="fdatasync() per second, in all")
    parser.add_argument("--dir", default=None, help="where the writers' files go (default: a temp dir)")
    args = parser.parse_args()
    run_for = args.seconds + 0.5

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        writers = [
            (fsync_writer, (os.path.join(folder, f"log{index}"), args.fsyncs / 2, run_for))
            for index in range(2)
        ]
        pairs = [(ping_pong, (run_for,)) for _ in range(4)]
        phase("quiet", args.seconds, [])
        phase(f"{args.fsyncs:.0f} fdatasync/s", args.seconds, writers)
        stalls = phase(f"{args.fsyncs:.0f} fdatasync/s + 4 ping-pong pairs", args.seconds, writers + pairs)

    if len(stalls) >= 2:
        gaps = [later - earlier for (earlier, _), (later, _) in zip(stalls, stalls[1:])]
        gaps.sort()
        print(f"median time between stalls in the last phase: {gaps[len(gaps) // 2] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
