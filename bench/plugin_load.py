#!/usr/bin/env python3
"""Plugin loading and the failure policy, through the real agent (issue 18).

Two measurements, each on a fresh agent on 127.0.0.1:

  parallel  an empty, watched plugins dir; a large component (--large,
            default the first-party email receiver; pass a JS or Python
            component for the real case) and a small one (noop) are copied
            in together, the large one first. Prints how long after the
            copy each one serves (polling GET /api/v1/plugins).
  policy    a receiver looping until its deadline (misbehave, --timeout)
            next to a webhook receiver posting to a local server, every
            alert routed to both (group_interval --group-interval). Prints
            the agent's CPU over --window seconds, how many looping calls
            ran and how many were refused by the open circuit
            (wasmon_plugin_calls_total, wasmon_plugin_short_circuited_calls_total),
            and the webhook's delivery latency for alerts sent meanwhile.

    python3 bench/plugin_load.py                      # target/release/wasmon, else target/debug/wasmon
    python3 bench/plugin_load.py --bin /tmp/wasmon-old --window 30
    python3 bench/plugin_load.py --large app.wasm     # a 12 MB JS component

Needs the plugins built (`cargo xtask plugins` -> target/plugins/). Stops the
agents and its HTTP server and removes the work dirs (`--keep` keeps them).
Python 3.11 stdlib only.
"""
import argparse
import http.server
import json
import os
import shutil
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, bench_run, free_port, host_line, http_get, log,  # noqa: E402
                      metric_value, proc_cpu_seconds, raise_on_sigterm, wait_for,
                      wasmon_binary, write)


def start_agent(procs, binary, work, config):
    port = free_port()
    write(os.path.join(work, "wasmon.toml"), config.replace("{{LISTEN}}", "127.0.0.1:%d" % port))
    agent = procs.start("wasmon", [binary, "run", "--config", os.path.join(work, "wasmon.toml")],
                        cwd=work)
    base = "http://127.0.0.1:%d" % port
    wait_for("the agent to be ready", lambda: http_get(base + "/-/ready", timeout=5), 120, agent)
    return agent, base


def parallel(args, binary):
    with bench_run("wasmon-bench-load-", args.keep) as (work, procs):
        plugdir = os.path.join(work, "plugins")
        os.makedirs(plugdir)
        agent, base = start_agent(procs, binary, work, """\
[web]
listen_address = "{{LISTEN}}"
[storage]
path = "data"
[plugins]
dir = "plugins"
cache_dir = ""
""")
        files = [("large", args.large), ("small", os.path.join(args.plugins, "noop.wasm"))]
        # Staged outside the watched dir, then renamed in: the copy itself
        # is not what is measured.
        for name, src in files:
            shutil.copyfile(src, os.path.join(work, name + ".wasm"))
        t0 = time.monotonic()
        for name, _ in files:
            os.rename(os.path.join(work, name + ".wasm"), os.path.join(plugdir, name + ".wasm"))
        served = {}
        while len(served) < len(files):
            if agent.poll() is not None:
                raise RuntimeError("the agent exited with %s" % agent.returncode)
            if time.monotonic() - t0 > 600:
                raise RuntimeError("not loaded after 600 s: %s" % served)
            rows = json.loads(http_get(base + "/api/v1/plugins"))["data"]
            now = time.monotonic() - t0
            for r in rows:
                if r["name"] not in served and (r.get("hash") or r.get("error")):
                    served[r["name"]] = (now, r.get("load_ms"), r.get("error"))
            time.sleep(0.02)
        out = []
        for name, src in files:
            at, load_ms, error = served[name]
            out.append((name, os.path.basename(src), os.path.getsize(src), at, load_ms, error))
            log("%-5s %-24s serves %.2f s after the copy (its own load %.0f ms)%s"
                % (name, os.path.basename(src), at, load_ms or 0, " ERROR " + error if error else ""))
        return out


class Hook(http.server.BaseHTTPRequestHandler):
    """Records when each alert's notification arrives."""
    arrived = {}

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        now = time.time()
        for a in body.get("alerts", []):
            Hook.arrived.setdefault(a["labels"].get("id"), now)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_):
        pass


def policy(args, binary):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = "127.0.0.1:%d" % server.server_address[1]
    try:
        with bench_run("wasmon-bench-policy-", args.keep) as (work, procs):
            plugdir = os.path.join(work, "plugins")
            os.makedirs(plugdir)
            for p in ("misbehave", "webhook"):
                shutil.copyfile(os.path.join(args.plugins, p + ".wasm"),
                                os.path.join(plugdir, p + ".wasm"))
            agent, base = start_agent(procs, binary, work, f"""\
[web]
listen_address = "{{{{LISTEN}}}}"
[storage]
path = "data"
[plugins]
dir = "plugins"
cache_dir = ""

[[receivers]]
name = "looping"
plugin = "misbehave"
timeout = "{args.timeout}"
config = {{ mode = "loop" }}

[[receivers]]
name = "fast"
plugin = "webhook"
allow_hosts = ["{hook}"]
config = {{ url = "http://{hook}/" }}

[route]
receiver = "fast"
group_by = ["id"]
group_wait = "0s"
group_interval = "{args.group_interval}"
repeat_interval = "1h"

[[route.routes]]
matchers = ['alertname="Bench"']
receiver = "looping"
continue = true

[[route.routes]]
matchers = ['alertname="Bench"']
receiver = "fast"
""")
            metrics = base + "/metrics"
            wait_for("2 plugins", lambda: metric_value(metrics, "wasmon_plugins_loaded") >= 2,
                     120, agent)
            sent = {}

            def post(i):
                body = json.dumps([{"labels": {"alertname": "Bench", "id": "a%d" % i}}]).encode()
                req = urllib.request.Request(base + "/api/v2/alerts", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
                # Noted before the POST: the notification may arrive
                # before the answer does.
                sent["a%d" % i] = time.time()
                urllib.request.urlopen(req, timeout=10).read()

            post(0)
            cpu0, t0 = proc_cpu_seconds(agent.pid), time.monotonic()
            i = 1
            while time.monotonic() - t0 < args.window:
                time.sleep(1.0)
                post(i)
                i += 1
            cpu1, t1 = proc_cpu_seconds(agent.pid), time.monotonic()
            time.sleep(2)

            def calls(result):
                page = http_get(metrics).decode()
                return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
                           if line.startswith("wasmon_plugin_calls_total{")
                           and 'instance="looping"' in line and 'result="%s"' % result in line)

            def refused():
                try:
                    return metric_value(metrics, "wasmon_plugin_short_circuited_calls_total")
                except RuntimeError:
                    return 0.0  # an agent without a failure policy
            lat = sorted(Hook.arrived[k] - sent[k] for k in sent if k in Hook.arrived)
            row = {
                "cpu": 100.0 * (cpu1 - cpu0) / (t1 - t0),
                "ran": calls("timeout"),
                "refused": refused(),
                "delivered": len(lat),
                "sent": len(sent),
                "p50": lat[len(lat) // 2] if lat else float("nan"),
                "max": lat[-1] if lat else float("nan"),
            }
            log("CPU %(cpu).1f%% of a core; looping calls ran %(ran)d, refused %(refused)d; "
                "webhook delivered %(delivered)d/%(sent)d, latency p50 %(p50).3f s max %(max).3f s"
                % row)
            return row
    finally:
        server.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", help="the wasmon binary (default: target/release, else target/debug)")
    ap.add_argument("--plugins", default=os.path.join(ROOT, "target", "plugins"),
                    help="where the built plugins are (default: target/plugins)")
    ap.add_argument("--large", help="the large component (default: PLUGINS/email.wasm)")
    ap.add_argument("--window", type=float, default=30.0, help="seconds of the policy run")
    ap.add_argument("--timeout", default="2s", help="the looping receiver's deadline")
    ap.add_argument("--group-interval", default="10s", help="the route's group_interval")
    ap.add_argument("--only", choices=["parallel", "policy"], help="run one measurement")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    args = ap.parse_args()
    args.large = args.large or os.path.join(args.plugins, "email.wasm")

    binary = wasmon_binary(args.bin)
    for p in ("noop", "misbehave", "webhook"):
        if not os.path.exists(os.path.join(args.plugins, p + ".wasm")):
            sys.exit("missing %s/%s.wasm: run `cargo xtask plugins`" % (args.plugins, p))

    raise_on_sigterm()
    print("binary: %s" % binary)
    print(host_line())
    if args.only in (None, "parallel"):
        rows = parallel(args, binary)
        print()
        print("| copied in together | file | size (KiB) | serves after (s) | its own load (ms) |")
        print("|---|---|---:|---:|---:|")
        for name, f, size, at, load_ms, error in rows:
            print("| %s | %s | %.0f | %.2f | %s |" % (
                name, f, size / 1024, at, "error: " + error if error else "%.0f" % (load_ms or 0)))
    if args.only in (None, "policy"):
        r = policy(args, binary)
        print()
        print("| %gs with a looping receiver (deadline %s, group_interval %s) | |"
              % (args.window, args.timeout, args.group_interval))
        print("|---|---:|")
        print("| agent CPU (%% of a core) | %.1f |" % r["cpu"])
        print("| looping calls run / refused by the circuit | %d / %d |" % (r["ran"], r["refused"]))
        print("| webhook: delivered, latency p50 / max (s) | %d/%d, %.3f / %.3f |"
              % (r["delivered"], r["sent"], r["p50"], r["max"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
