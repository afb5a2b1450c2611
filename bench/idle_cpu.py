#!/usr/bin/env python3
"""Idle CPU of the agent around plugin-directory changes (issues 17 and 18).

Starts the agent with a plugins dir of 4 plugins (one padded to --pad-mb MB
with a custom section, the size of a Python or JS component) and no scrape
jobs, then
measures its CPU (utime+stime from /proc/PID/stat) over --window seconds in
each phase:

  idle      nothing happens (the baseline);
  touch     right after every plugin file's mtime was bumped and one was
            rewritten with identical bytes: nothing changed, nothing should
            be reloaded;
  junk      right after a --junk-mb MB file of random bytes was copied in
            as junk.wasm: it should be rejected once, by its header, and
            then cost nothing (CPU and RSS).

It also counts, per phase from the change on, the agent's plugin load
attempts (`wasmon_plugin_loads_total`) and its ERROR log lines. It exits 1 when the
touch phase is at or above --max-cpu percent of one core (issue 18: 2%).

    python3 bench/idle_cpu.py                          # target/release/wasmon, else target/debug/wasmon
    python3 bench/idle_cpu.py --bin /tmp/wasmon-old --window 10 --junk-mb 100

Needs the plugins built (`cargo xtask plugins` -> target/plugins/). Runs on
127.0.0.1 only, stops the agent and removes its work dir (`--keep` keeps it).
Python 3.11 stdlib only.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, bench_run, free_port, host_line, http_get, log,  # noqa: E402
                      metric_value, proc_cpu_seconds, raise_on_sigterm, wait_for,
                      wasmon_binary, write)

PLUGINS = ["webhook", "slack", "pagerduty", "metric-threshold"]


def leb128(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def padded(component, mb):
    """The component with a custom section of `mb` MB appended: still valid,
    loaded like the original, as large as an interpreter-carrying plugin."""
    if mb <= 0:
        return component
    name = b"bench-padding"
    payload = leb128(len(name)) + name + b"\0" * (mb << 20)
    return component + b"\0" + leb128(len(payload)) + payload


def rss_mib(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def count_errors(path):
    with open(path, "rb") as f:
        return sum(1 for line in f if b" ERROR " in line or b'"level":"ERROR"' in line)


def measure(args, binary, work, procs):
    """Starts the agent in `work` and runs the phases; one row per phase."""
    plugdir = os.path.join(work, "plugins")
    os.makedirs(plugdir)
    for i, p in enumerate(PLUGINS):
        with open(os.path.join(args.plugins, p + ".wasm"), "rb") as f:
            data = f.read()
        with open(os.path.join(plugdir, p + ".wasm"), "wb") as f:
            f.write(padded(data, args.pad_mb) if i == 0 else data)
    port = free_port()
    write(os.path.join(work, "wasmon.toml"), f"""\
[web]
listen_address = "127.0.0.1:{port}"

[storage]
path = "{work}/data"

[plugins]
dir = "{plugdir}"
cache_dir = "{work}/plugin-cache"
""")
    metrics_url = "http://127.0.0.1:%d/metrics" % port
    agent = procs.start("wasmon", [binary, "run", "--config",
                                   os.path.join(work, "wasmon.toml")], cwd=work)
    wait_for("the agent to be ready",
             lambda: http_get("http://127.0.0.1:%d/-/ready" % port, timeout=5), 120, agent)
    wait_for("the 4 plugins to load",
             lambda: metric_value(metrics_url, "wasmon_plugins_loaded") >= len(PLUGINS),
             120, agent)
    time.sleep(args.settle)
    rows = []

    def phase(name, change):
        # Load attempts and ERROR lines count from the change on (the one
        # expected rejection included); CPU and RSS over the window after
        # it settled.
        loads0 = metric_value(metrics_url, "wasmon_plugin_loads_total")
        errors0 = count_errors(agent.bench_log)
        change()
        time.sleep(args.settle)
        cpu0, t0 = proc_cpu_seconds(agent.pid), time.monotonic()
        peak = rss_mib(agent.pid)
        while time.monotonic() - t0 < args.window:
            time.sleep(0.5)
            peak = max(peak, rss_mib(agent.pid))
        cpu1, t1 = proc_cpu_seconds(agent.pid), time.monotonic()
        if agent.poll() is not None:
            raise RuntimeError("the agent exited with %s" % agent.returncode)
        row = {
            "phase": name,
            "cpu_percent": 100.0 * (cpu1 - cpu0) / (t1 - t0),
            "rss_peak_mib": peak,
            "loads": metric_value(metrics_url, "wasmon_plugin_loads_total") - loads0,
            "errors": count_errors(agent.bench_log) - errors0,
        }
        rows.append(row)
        log("%(phase)-6s cpu %(cpu_percent).2f%%  rss peak %(rss_peak_mib).0f MiB  "
            "load attempts %(loads)d  ERROR lines %(errors)d" % row)

    def touch():
        now = time.time()
        for p in PLUGINS:
            os.utime(os.path.join(plugdir, p + ".wasm"), (now, now))
        # Rewritten in place with the same bytes: events, a new mtime, the
        # same content.
        path = os.path.join(plugdir, PLUGINS[0] + ".wasm")
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data)

    def junk():
        tmp = os.path.join(plugdir, ".junk.wasm.tmp")
        with open(tmp, "wb") as f:
            for _ in range(args.junk_mb):
                f.write(os.urandom(1 << 20))
        os.rename(tmp, os.path.join(plugdir, "junk.wasm"))

    phase("idle", lambda: None)
    phase("touch", touch)
    if args.junk_mb:
        phase("junk", junk)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", help="the wasmon binary (default: target/release, else target/debug)")
    ap.add_argument("--plugins", default=os.path.join(ROOT, "target", "plugins"),
                    help="where the built plugins are (default: target/plugins)")
    ap.add_argument("--window", type=float, default=10.0, help="seconds measured per phase")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds between a change and its measurement window")
    ap.add_argument("--junk-mb", type=int, default=100, help="size of the junk file (0: skip)")
    ap.add_argument("--pad-mb", type=int, default=18,
                    help="pad the first plugin to about this size (0: as built)")
    ap.add_argument("--max-cpu", type=float, default=2.0,
                    help="fail when the touch phase uses this percent of a core or more")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    binary = wasmon_binary(args.bin)
    for p in PLUGINS:
        if not os.path.exists(os.path.join(args.plugins, p + ".wasm")):
            sys.exit("missing %s/%s.wasm: run `cargo xtask plugins`" % (args.plugins, p))

    raise_on_sigterm()
    with bench_run("wasmon-bench-idle-", args.keep) as (work, procs):
        rows = measure(args, binary, work, procs)

    print("binary: %s" % binary)
    print(host_line())
    print()
    print("| phase | CPU (%% of a core, %gs) | peak RSS (MiB) | load attempts | ERROR lines |"
          % args.window)
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print("| %(phase)s | %(cpu_percent).2f | %(rss_peak_mib).0f | %(loads)d | %(errors)d |" % r)
    touch_cpu = next(r["cpu_percent"] for r in rows if r["phase"] == "touch")
    if touch_cpu >= args.max_cpu:
        print("\nFAIL: %.2f%% of a core after a touch (limit %.1f%%)" % (touch_cpu, args.max_cpu))
        return 1
    print("\nok: %.2f%% of a core after a touch (limit %.1f%%)" % (touch_cpu, args.max_cpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
