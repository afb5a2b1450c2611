#!/usr/bin/env python3
"""Latency of the Alertmanager v2 listings at scale, through the real binary.

For each alert count N: start wasmon (a route grouping by alertname and
cluster, one inhibit rule, a few silences), POST N alerts in batches, then
time GET /api/v2/alerts and GET /api/v2/alerts/groups (each --repeat times,
best kept) and a GET /-/ready made while a listing runs. A request that takes
longer than --timeout seconds is reported as such (the agent is then stopped
with SIGTERM and the time it took to exit is printed too).

    python3 bench/alerts_api.py --wasmon target/debug/wasmon --counts 1000,4000,50000

Python 3.11 stdlib only; 127.0.0.1 only; every process it starts is stopped.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

CONFIG = """
[web]
listen_address = "127.0.0.1:{port}"

[storage]
path = "data"

[[receivers]]
name = "ops"
plugin = "webhook"
allow_hosts = ["127.0.0.1:9"]
config = {{ url = "http://127.0.0.1:9/unused" }}

[[receivers]]
name = "db"
plugin = "webhook"
allow_hosts = ["127.0.0.1:9"]
config = {{ url = "http://127.0.0.1:9/unused" }}

[route]
receiver = "ops"
group_by = ["alertname", "cluster"]
group_wait = "1h"
routes = [{{ receiver = "db", matchers = ["team=db"], continue = true }}]

[[inhibit_rules]]
source_matchers = ["severity=critical"]
target_matchers = ["severity=warning"]
equal = ["cluster"]
"""


def alert(i):
    return {
        "labels": {
            "alertname": "Alert%d" % (i % 50),
            "instance": "host-%d.example.org:9100" % i,
            "cluster": "c%d" % (i % 200),
            # One critical per 500: most warnings in those clusters are inhibited.
            "severity": "critical" if i % 500 == 0 else "warning",
            "team": "db" if i % 3 == 0 else "web",
        },
        "annotations": {"summary": "alert number %d" % i},
        "generatorURL": "http://prometheus.example.org/graph?g0.expr=up",
    }


def request(url, method="GET", body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    t = time.monotonic()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        payload = r.read()
        return r.status, payload, time.monotonic() - t


def timed_get(base, path, timeout):
    """Seconds the listing took and its length, or (None, why)."""
    try:
        status, payload, secs = request(base + path, timeout=timeout)
        return secs, "%d items, %d bytes, status %d" % (len(json.loads(payload)), len(payload), status)
    except urllib.error.HTTPError as e:
        return None, "HTTP %d %s" % (e.code, e.read()[:200])
    except Exception as e:  # noqa: BLE001 - a timeout is a result here
        return None, "no answer within %ss (%s)" % (timeout, type(e).__name__)


def run_one(args, n, workdir):
    procs = benchlib.Procs(workdir)
    port = benchlib.free_port()
    base = "http://127.0.0.1:%d" % port
    d = os.path.join(workdir, "n%d" % n)
    os.makedirs(d)
    benchlib.write(os.path.join(d, "wasmon.toml"), CONFIG.format(port=port))
    p = procs.start("wasmon-%d" % n, [args.wasmon, "run", "--config", os.path.join(d, "wasmon.toml")], cwd=d)
    try:
        benchlib.wait_for("wasmon ready", lambda: request(base + "/-/ready")[0] == 200, 60, p)
        t = time.monotonic()
        for lo in range(0, n, args.batch):
            request(base + "/api/v2/alerts", "POST", [alert(i) for i in range(lo, min(n, lo + args.batch))], timeout=120)
        post = time.monotonic() - t
        now = time.time()
        for k in range(3):
            request(base + "/api/v2/silences", "POST", {
                "matchers": [{"name": "instance", "value": "host-%d.example.org:9100" % k, "isRegex": False}],
                "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
                "createdBy": "bench", "comment": "bench"})
        print("N=%-6d post %6.2f s (batches of %d)" % (n, post, args.batch), flush=True)
        for path in ("/api/v2/alerts", "/api/v2/alerts/groups"):
            best, what = None, ""
            for _ in range(args.repeat):
                secs, what = timed_get(base, path, args.timeout)
                if secs is None:
                    best = None
                    break
                best = secs if best is None else min(best, secs)
            shown = "%8.3f s" % best if best is not None else "   >%gs  " % args.timeout
            print("N=%-6d GET %-22s %s  %s" % (n, path, shown, what), flush=True)
        # /-/ready while two listings run.
        results = []
        ts = [threading.Thread(target=lambda: results.append(timed_get(base, "/api/v2/alerts", args.timeout)))
              for _ in range(2)]
        for th in ts:
            th.start()
        time.sleep(0.2)
        try:
            _, _, secs = request(base + "/-/ready", timeout=args.timeout)
            print("N=%-6d GET /-/ready during 2 listings %8.3f s" % (n, secs), flush=True)
        except Exception as e:  # noqa: BLE001
            print("N=%-6d GET /-/ready during 2 listings: no answer within %ss (%s)" % (n, args.timeout, type(e).__name__), flush=True)
        # SIGTERM with the listings possibly still in flight.
        t = time.monotonic()
        p.terminate()
        try:
            p.wait(args.timeout)
            print("N=%-6d SIGTERM -> exit %8.3f s (exit code %s)" % (n, time.monotonic() - t, p.returncode), flush=True)
        except Exception:  # noqa: BLE001
            print("N=%-6d SIGTERM -> still running after %ss" % (n, args.timeout), flush=True)
        for th in ts:
            th.join()
    except Exception:
        procs.log_tails()
        raise
    finally:
        procs.stop_all()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wasmon", default=os.path.join(benchlib.ROOT, "target", "release", "wasmon"))
    ap.add_argument("--counts", default="1000,4000,50000")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    # The agent runs in its own work dir.
    args.wasmon = os.path.abspath(args.wasmon)
    benchlib.raise_on_sigterm()
    print(benchlib.host_line(), "; binary", args.wasmon, flush=True)
    workdir = tempfile.mkdtemp(prefix="wasmon-bench-alerts-")
    try:
        for n in [int(c) for c in args.counts.split(",")]:
            run_one(args, n, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
