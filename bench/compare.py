#!/usr/bin/env python3
"""wasmon vs Prometheus 2.42 + Alertmanager 0.25 on the same targets and rules.

For each series count (default 10k and 100k active series) it starts, all on
127.0.0.1:

  * synthetic targets (bench/synth_target.py: counters, gauges and a classic
    histogram with service/pod/path/method/status labels), the series split
    over ceil(N / --series-per-target) processes, plus one tiny "switch"
    target serving only `synth_error_ratio{round="K"}`;
  * a recording HTTP server (in this process) standing in for both
    receivers: /wasmon for wasmon's webhook plugin, /alertmanager for
    Alertmanager's webhook_config;
  * wasmon (target/release/wasmon) with the webhook receiver plugin from
    target/plugins;
  * Debian's prometheus with the same scrape jobs and the same rule file,
    alerting to prometheus-alertmanager with the same route timers.

Then, for a bounded time, it samples RSS (VmRSS) and CPU (utime+stime from
/proc/PID/stat) of every server, counts the samples each store appended
(wasmon_tsdb_samples_appended, prometheus_tsdb_head_samples_appended_total;
both include rule outputs), flips the error gauge above the alert threshold
--alert-rounds times and records when each receiver got the firing
notification, and after the window runs a fixed query set against both HTTP
APIs. It prints one table per series count. Everything it started is
stopped on exit, on errors and on Ctrl-C.

Python 3.11 standard library only. See bench/README.md.
"""
import argparse
import contextlib
import datetime
import http.server
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from benchlib import (ROOT, Procs, free_port, host_line, http_get, log, metric_value,
                      proc_cpu_seconds, raise_on_sigterm, wait_for, write)

PAGE = os.sysconf("SC_PAGE_SIZE")

# The alert every round crosses: the same expression, `for`, evaluation
# interval (group interval) and route timers on both sides.
ALERT_FOR = "5s"
ALERT_EVAL = "1s"
GROUP_WAIT = "1s"
GROUP_INTERVAL = "5s"

RULES = """\
groups:
  # Realistic load: recording rules over the synthetic series.
  - name: synth-recording
    interval: {rec_interval}
    rules:
      - record: service:http_requests:rate1m
        expr: sum by (service) (rate(http_requests_total[1m]))
      - record: service_status:http_requests:rate1m
        expr: sum by (service, status) (rate(http_requests_total[1m]))
      - record: service:request_duration_seconds:p99_1m
        expr: histogram_quantile(0.99, sum by (service, le) (rate(request_duration_seconds_bucket[1m])))
      - record: service:queue_depth:max
        expr: max by (service) (queue_depth)
      - alert: QueueBacklog
        expr: max by (service) (queue_depth) > 10000
        for: 1m
  # The alert whose end-to-end latency is measured.
  - name: synth-alert
    interval: {alert_eval}
    rules:
      - alert: BenchErrorRate
        expr: synth_error_ratio > 0.05
        for: {alert_for}
        labels:
          severity: page
        annotations:
          summary: "error ratio {{{{ $value }}}} in round {{{{ $labels.round }}}}"
"""

# Evaluated at one fixed timestamp (the end of the window) on both sides.
INSTANT_QUERIES = [
    "sum(rate(http_requests_total[1m]))",
    'sum by (service) (rate(http_requests_total{status="500"}[1m]))',
    "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[1m])))",
    "topk(5, queue_depth)",
    'count({__name__=~"http_requests_total|queue_depth"})',
    'http_requests_total{pod="pod-7",method="POST"}',
]
# Over the last --range-seconds of the window.
RANGE_QUERIES = [
    "sum by (service) (rate(http_requests_total[1m]))",
    "histogram_quantile(0.99, sum by (service, le) (rate(request_duration_seconds_bucket[1m])))",
    "max_over_time(queue_depth[1m])",
]


def proc_rss_bytes(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * PAGE


def disk_bytes(path):
    """Allocated bytes (st_blocks) of every file under path: what the data
    really occupies, whether files are preallocated, sparse or growing."""
    total = 0
    for d, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(d, name)).st_blocks * 512
    return total


def disk_breakdown(path):
    """disk_bytes per top-level entry of a data dir (wal, chunks_head, ...)."""
    out = {}
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if os.path.isdir(full):
                out[name] = disk_bytes(full)
            else:
                out["files"] = out.get("files", 0) + os.lstat(full).st_blocks * 512
    return out


def parse_rfc3339(text):
    """Seconds since the epoch of an RFC 3339 time (Go prints up to 9
    fractional digits; fromisoformat takes 6)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not m:
        raise ValueError("not an RFC 3339 time: %r" % text)
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    return datetime.datetime.fromisoformat("%s.%s%s" % (m.group(1), frac, tz)).timestamp()


def active_at(base, round_no):
    """activeAt (pending since) of the round's BenchErrorRate alert on a
    Prometheus-style /api/v1/alerts, or None."""
    doc = json.loads(http_get(base + "/api/v1/alerts", 10))
    for a in doc["data"]["alerts"]:
        lbl = a.get("labels", {})
        if lbl.get("alertname") == "BenchErrorRate" and lbl.get("round") == str(round_no):
            return parse_rfc3339(a["activeAt"])
    return None


def pct(values, p):
    s = sorted(values)
    k = (len(s) - 1) * p
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def read_body(handler):
    """The request body, Content-Length or chunked (wasi:http, and so the
    webhook plugin, streams its body chunked)."""
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()  # CRLF after each chunk
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


class Recorder:
    """The receiver both stacks notify: records (path, arrival time, body)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                now = time.time()
                body = read_body(self)
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = None
                with rec.lock:
                    rec.events.append((self.path, now, doc))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def first_firing(self, path, round_no, since):
        """Arrival time of the first firing notification for round_no at path."""
        with self.lock:
            for p, t, doc in self.events:
                if p != path or t < since or not isinstance(doc, dict):
                    continue
                for a in doc.get("alerts", []):
                    lbl = a.get("labels", {})
                    if (a.get("status") == "firing" and lbl.get("alertname") == "BenchErrorRate"
                            and lbl.get("round") == str(round_no)):
                        return t
        return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def configs(work, args, target_ports, switch_port, rec_port, ports):
    targets = ["127.0.0.1:%d" % p for p in target_ports]
    switch = "127.0.0.1:%d" % switch_port
    rules = RULES.format(rec_interval=args.rule_interval, alert_eval=ALERT_EVAL,
                         alert_for=ALERT_FOR)
    for d in ("wasmon", "prom", "am"):
        os.makedirs(os.path.join(work, d), exist_ok=True)
    write(os.path.join(work, "wasmon", "rules.yml"), rules)
    write(os.path.join(work, "prom", "rules.yml"), rules)
    timeout = "%ds" % max(1, int(args.scrape_interval * 0.9))
    write(os.path.join(work, "wasmon", "wasmon.toml"), f"""\
rule_files = ["rules.yml"]

[global]
scrape_interval = "{args.scrape_interval}s"
scrape_timeout = "{timeout}"
evaluation_interval = "{ALERT_EVAL}"

[web]
listen_address = "127.0.0.1:{ports['wasmon']}"

[storage]
path = "{work}/wasmon/data"

[plugins]
dir = "{work}/wasmon/plugins"
cache_dir = "{work}/wasmon/plugin-cache"
watch = false

[[scrape_configs]]
job_name = "synth"
static_configs = [{{ targets = {json.dumps(targets)} }}]

[[scrape_configs]]
job_name = "switch"
scrape_interval = "1s"
scrape_timeout = "900ms"
static_configs = [{{ targets = ["{switch}"] }}]

[[receivers]]
name = "bench"
plugin = "webhook"
allow_hosts = ["127.0.0.1:{rec_port}"]
config = {{ url = "http://127.0.0.1:{rec_port}/wasmon" }}

[route]
receiver = "bench"
group_by = ["alertname", "round"]
group_wait = "{GROUP_WAIT}"
group_interval = "{GROUP_INTERVAL}"
repeat_interval = "1h"
""")
    write(os.path.join(work, "prom", "prometheus.yml"), f"""\
global:
  scrape_interval: {args.scrape_interval}s
  scrape_timeout: {timeout}
  evaluation_interval: {ALERT_EVAL}
rule_files: ["rules.yml"]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{ports['am']}"]
scrape_configs:
  - job_name: synth
    static_configs:
      - targets: {json.dumps(targets)}
  - job_name: switch
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs:
      - targets: ["{switch}"]
""")
    write(os.path.join(work, "am", "alertmanager.yml"), f"""\
route:
  receiver: bench
  group_by: [alertname, round]
  group_wait: {GROUP_WAIT}
  group_interval: {GROUP_INTERVAL}
  repeat_interval: 1h
receivers:
  - name: bench
    webhook_configs:
      - url: http://127.0.0.1:{rec_port}/alertmanager
        send_resolved: true
""")


def query(base, path, params):
    url = "%s%s?%s" % (base, path, urllib.parse.urlencode(params))
    t0 = time.perf_counter()
    body = http_get(url, timeout=60)
    dt = time.perf_counter() - t0
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise RuntimeError("%s: %s" % (url, body[:300]))
    return dt, len(doc["data"]["result"])


def run_one(series, args, wasmon_bin, plugin):
    work = tempfile.mkdtemp(prefix="wasmon-bench-%d-" % series)
    procs = Procs(work)
    rec = Recorder()
    try:
        return _run_one(series, args, wasmon_bin, plugin, work, procs, rec)
    except BaseException:
        procs.log_tails()
        raise
    finally:
        procs.stop_all()
        rec.close()
        if args.keep:
            log("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run_one(series, args, wasmon_bin, plugin, work, procs, rec):
    n_targets = max(1, math.ceil(series / args.series_per_target))
    per_target = series // n_targets
    synth = os.path.join(ROOT, "bench", "synth_target.py")
    target_ports = [free_port() for _ in range(n_targets)]
    switch_port = free_port()
    for i, port in enumerate(target_ports):
        procs.start("target-%d" % i, [sys.executable, synth, str(port), str(per_target)])
    switch_proc = procs.start("switch", [sys.executable, synth, str(switch_port), "0"])
    for port in target_ports + [switch_port]:
        wait_for("target 127.0.0.1:%d" % port, lambda port=port: http_get(
            "http://127.0.0.1:%d/metrics" % port, timeout=10), 30, switch_proc)

    ports = {"wasmon": free_port(), "prom": free_port(), "am": free_port()}
    configs(work, args, target_ports, switch_port, rec.port, ports)
    os.makedirs(os.path.join(work, "wasmon", "plugins"), exist_ok=True)
    shutil.copy(plugin, os.path.join(work, "wasmon", "plugins", "webhook.wasm"))

    wasmon = procs.start("wasmon", [wasmon_bin, "--log.level", "warn", "run", "--config",
                                    os.path.join(work, "wasmon", "wasmon.toml")],
                         cwd=os.path.join(work, "wasmon"))
    am = procs.start("alertmanager", [
        args.alertmanager, "--config.file", os.path.join(work, "am", "alertmanager.yml"),
        "--storage.path", os.path.join(work, "am", "data"),
        "--web.listen-address", "127.0.0.1:%d" % ports["am"],
        "--cluster.listen-address=", "--log.level", "warn"])
    prom = procs.start("prometheus", [
        args.prometheus, "--config.file", os.path.join(work, "prom", "prometheus.yml"),
        "--storage.tsdb.path", os.path.join(work, "prom", "data"),
        "--web.listen-address", "127.0.0.1:%d" % ports["prom"], "--log.level", "warn"])
    wbase = "http://127.0.0.1:%d" % ports["wasmon"]
    pbase = "http://127.0.0.1:%d" % ports["prom"]
    abase = "http://127.0.0.1:%d" % ports["am"]
    wait_for("wasmon ready", lambda: http_get(wbase + "/-/ready", 5), 120, wasmon)
    wait_for("prometheus ready", lambda: http_get(pbase + "/-/ready", 5), 120, prom)
    wait_for("alertmanager ready", lambda: http_get(abase + "/-/ready", 5), 60, am)

    def head_series(base, name):
        return metric_value(base + "/metrics", name)

    # Warm up until both heads hold the whole target set (series creation is
    # a one-off cost the per-sample figures should not carry), then the
    # fixed --warmup on top so the rate() windows fill.
    log("%d series: %d targets; waiting for both heads to fill" % (series, n_targets))
    wait_for("wasmon head series >= %d" % series,
             lambda: head_series(wbase, "wasmon_tsdb_head_series") >= series, 300, wasmon)
    wait_for("prometheus head series >= %d" % series,
             lambda: head_series(pbase, "prometheus_tsdb_head_series") >= series, 300, prom)
    time.sleep(args.warmup)

    servers = {"wasmon": wasmon, "prometheus": prom, "alertmanager": am}
    samples = {
        "wasmon": lambda: metric_value(wbase + "/metrics", "wasmon_tsdb_samples_appended_total"),
        "prometheus": lambda: metric_value(
            pbase + "/metrics", "prometheus_tsdb_head_samples_appended_total"),
    }
    cpu0 = {k: proc_cpu_seconds(p.pid) for k, p in servers.items()}
    smp0 = {k: f() for k, f in samples.items()}
    t0 = time.monotonic()
    rss = {k: [] for k in servers}

    # Alert rounds, spread over the window; RSS sampled every second.
    rounds = []
    round_at = [t0 + args.duration * (i + 1) / (args.alert_rounds + 1)
                for i in range(args.alert_rounds)]
    current = None  # (round, wall time of the flip)
    switch = "http://127.0.0.1:%d/error" % switch_port
    next_round = 1
    log("measuring for %ds (%d alert rounds)" % (args.duration, args.alert_rounds))
    rss_log = open(args.rss_log, "a") if args.rss_log else None
    if rss_log:
        rss_log.write("series,elapsed_s,%s\n" % ",".join("%s_rss_bytes" % k for k in servers))
    while time.monotonic() - t0 < args.duration or current is not None:
        for k, p in servers.items():
            if p.poll() is not None:
                raise RuntimeError("%s exited with %s" % (k, p.returncode))
            rss[k].append(proc_rss_bytes(p.pid))
        if rss_log and len(rss["wasmon"]) % 10 == 1:
            rss_log.write("%d,%.0f,%s\n" % (series, time.monotonic() - t0,
                                            ",".join(str(rss[k][-1]) for k in servers)))
            rss_log.flush()
        now = time.monotonic()
        if current is None and round_at and now >= round_at[0]:
            round_at.pop(0)
            # A random phase against the 1 s scrape and evaluation ticks, so
            # the rounds sample the tick alignment instead of repeating one.
            time.sleep(random.uniform(0, 1))
            req = urllib.request.Request("%s?round=%d&ratio=0.5" % (switch, next_round),
                                         method="POST")
            urllib.request.urlopen(req, timeout=10).read()
            current = (next_round, time.time())
            next_round += 1
        if current is not None:
            r, flipped = current
            got = {k: rec.first_firing("/" + k, r, flipped) for k in ("wasmon", "alertmanager")}
            timed_out = time.time() - flipped > args.alert_timeout
            if all(got.values()) or timed_out:
                rnd = {k: (v - flipped if v else None) for k, v in got.items()}
                # Split off the scrape/evaluation phase: from the evaluation
                # that first saw the crossing (activeAt) to the receiver is
                # `for` + group_wait + each implementation's own delays.
                for k, base in (("wasmon", wbase), ("alertmanager", pbase)):
                    try:
                        act = active_at(base, r)
                    except (OSError, ValueError, KeyError) as e:
                        log("%s: /api/v1/alerts: %s" % (k, e))
                        act = None
                    rnd[k + "_from_active"] = got[k] - act if got[k] and act else None
                rounds.append(rnd)
                # Back under the threshold in a new round: the old series goes
                # stale and the alert resolves on both sides.
                req = urllib.request.Request("%s?round=%d&ratio=0" % (switch, next_round),
                                             method="POST")
                urllib.request.urlopen(req, timeout=10).read()
                next_round += 1
                current = None
        time.sleep(1)
    elapsed = time.monotonic() - t0
    if rss_log:
        rss_log.close()
    cpu1 = {k: proc_cpu_seconds(p.pid) for k, p in servers.items()}
    smp1 = {k: f() for k, f in samples.items()}
    total_samples = dict(smp1)
    disk = {"wasmon": disk_bytes(os.path.join(work, "wasmon", "data")),
            "prometheus": disk_bytes(os.path.join(work, "prom", "data"))}
    disk_parts = {"wasmon": disk_breakdown(os.path.join(work, "wasmon", "data")),
                  "prometheus": disk_breakdown(os.path.join(work, "prom", "data"))}
    hs = {"wasmon": head_series(wbase, "wasmon_tsdb_head_series"),
          "prometheus": head_series(pbase, "prometheus_tsdb_head_series")}

    # Query latency: the same queries at the same evaluation time, the two
    # servers interleaved so background noise hits both alike.
    t_eval = time.time()
    qres = []
    queries = [("instant", q) for q in INSTANT_QUERIES] + [("range", q) for q in RANGE_QUERIES]
    log("query set: %d queries x %d runs" % (len(queries), args.query_runs))
    for kind, q in queries:
        if kind == "instant":
            path, params = "/api/v1/query", {"query": q, "time": "%.3f" % t_eval}
        else:
            path, params = "/api/v1/query_range", {
                "query": q, "start": "%.3f" % (t_eval - args.range_seconds),
                "end": "%.3f" % t_eval, "step": "15"}
        times = {"wasmon": [], "prometheus": []}
        nres = {}
        for _ in range(args.query_runs):
            for k, base in (("wasmon", wbase), ("prometheus", pbase)):
                dt, n = query(base, path, params)
                times[k].append(dt)
                nres[k] = n
        qres.append({"kind": kind, "query": q, "results": nres,
                     "median_ms": {k: statistics.median(v) * 1e3 for k, v in times.items()},
                     "p90_ms": {k: pct(v, 0.9) * 1e3 for k, v in times.items()}})

    return {
        "series": series, "targets": n_targets, "duration_s": round(elapsed, 1),
        "head_series": hs,
        "rss_peak_mib": {k: max(v) / 2**20 for k, v in rss.items()},
        "rss_end_mib": {k: v[-1] / 2**20 for k, v in rss.items()},
        "rss_mean_mib": {k: statistics.mean(v) / 2**20 for k, v in rss.items()},
        "cpu_s": {k: cpu1[k] - cpu0[k] for k in servers},
        "samples": {k: smp1[k] - smp0[k] for k in samples},
        "samples_total": total_samples,
        "disk_bytes": disk,
        "disk_parts": disk_parts,
        "alert_rounds": rounds,
        "queries": qres,
    }


def fmt_table(r):
    w, p = "wasmon", "prometheus"
    lines = []

    def row(name, a, b, note=""):
        lines.append("| %s | %s | %s | %s |" % (name, a, b, note))

    ms = lambda s: "%.2f M" % (s / 1e6)  # noqa: E731
    lines.append("#### %d active series (%d synth targets, %.0f s window)" % (
        r["series"], r["targets"], r["duration_s"]))
    lines.append("")
    lines.append("| | wasmon | prometheus 2.42 + alertmanager 0.25 | |")
    lines.append("|---|---:|---:|---|")
    row("head series", "%d" % r["head_series"][w], "%d" % r["head_series"][p])
    row("samples appended in window", ms(r["samples"][w]), ms(r["samples"][p]),
        "scrapes + rule outputs")
    row("RSS peak (MiB)", "%.0f" % r["rss_peak_mib"][w],
        "%.0f + %.0f" % (r["rss_peak_mib"][p], r["rss_peak_mib"]["alertmanager"]),
        "prometheus + alertmanager")
    row("RSS at end (MiB)", "%.0f" % r["rss_end_mib"][w],
        "%.0f + %.0f" % (r["rss_end_mib"][p], r["rss_end_mib"]["alertmanager"]))
    if "rss_mean_mib" in r:
        row("RSS mean over the window (MiB)", "%.0f" % r["rss_mean_mib"][w],
            "%.0f + %.0f" % (r["rss_mean_mib"][p], r["rss_mean_mib"]["alertmanager"]))
        per = lambda k, which: r[which][k] * 2**20 / r["head_series"][k]  # noqa: E731
        row("RSS per head series: mean / peak (B)",
            "%.0f / %.0f" % (per(w, "rss_mean_mib"), per(w, "rss_peak_mib")),
            "%.0f / %.0f" % (per(p, "rss_mean_mib"), per(p, "rss_peak_mib")),
            "whole process (baseline included) / head series; prometheus without alertmanager")
    row("CPU seconds in window", "%.1f" % r["cpu_s"][w],
        "%.1f + %.1f" % (r["cpu_s"][p], r["cpu_s"]["alertmanager"]))
    cps = lambda k, extra=0: (r["cpu_s"][k] + extra) / (r["samples"][k] / 1e6)  # noqa: E731
    row("CPU s per million samples", "%.2f" % cps(w),
        "%.2f (%.2f with AM)" % (cps(p), cps(p, r["cpu_s"]["alertmanager"])))
    row("bytes on disk per sample", "%.2f" % (r["disk_bytes"][w] / r["samples_total"][w]),
        "%.2f" % (r["disk_bytes"][p] / r["samples_total"][p]),
        "data dir (WAL + head chunks; no block cut yet) / all samples appended")
    def parts(k):
        d = r.get("disk_parts", {}).get(k, {})
        big = ", ".join("%s %.1f" % (n, b / 2**20) for n, b in d.items() if b >= 2**20 / 10)
        return "%.1f (%s)" % (r["disk_bytes"][k] / 2**20, big) if big else \
            "%.1f" % (r["disk_bytes"][k] / 2**20)
    row("data dir (MiB)", parts(w), parts(p))
    lat = {k: [x[k] for x in r["alert_rounds"] if x[k] is not None]
           for k in ("wasmon", "alertmanager")}
    missed = {k: sum(1 for x in r["alert_rounds"] if x[k] is None) for k in lat}

    def lat_s(k):
        v = lat[k]
        if not v:
            return "none received"
        s = "median %.2f s (%s)" % (statistics.median(v), ", ".join("%.2f" % x for x in v))
        if missed[k]:
            s += ", %d missed" % missed[k]
        return s
    row("alert e2e (flip -> receiver)", lat_s("wasmon"), lat_s("alertmanager"),
        "for %s, eval %s, group_wait %s, switch scraped every 1s" % (
            ALERT_FOR, ALERT_EVAL, GROUP_WAIT))
    fa = {k: [x.get(k + "_from_active") for x in r["alert_rounds"]
              if x.get(k + "_from_active") is not None] for k in ("wasmon", "alertmanager")}
    if fa["wasmon"] or fa["alertmanager"]:
        f = lambda v: "median %.2f s (%s)" % (  # noqa: E731
            statistics.median(v), ", ".join("%.2f" % x for x in v)) if v else "n/a"
        row("alert activeAt -> receiver", f(fa["wasmon"]), f(fa["alertmanager"]),
            "without the scrape/eval phase; floor = for + group_wait")
    lines.append("")
    lines.append("| query (ms, median / p90) | wasmon | prometheus | result series w/p |")
    lines.append("|---|---:|---:|---|")
    for q in r["queries"]:
        lines.append("| %s `%s` | %.1f / %.1f | %.1f / %.1f | %d / %d |" % (
            q["kind"], q["query"].replace("|", "\\|"), q["median_ms"][w], q["p90_ms"][w],
            q["median_ms"][p], q["p90_ms"][p], q["results"][w], q["results"][p]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, nargs="+", default=[10000, 100000],
                    help="active series counts to run (default: 10000 100000)")
    ap.add_argument("--duration", type=int, default=180,
                    help="measurement window per series count, seconds (default 180)")
    ap.add_argument("--warmup", type=int, default=30,
                    help="seconds after both heads hold every series (default 30)")
    ap.add_argument("--scrape-interval", type=int, default=10,
                    help="synthetic targets' scrape interval, seconds (default 10)")
    ap.add_argument("--rule-interval", default="10s", help="recording rules' interval")
    ap.add_argument("--series-per-target", type=int, default=25000)
    ap.add_argument("--alert-rounds", type=int, default=5)
    ap.add_argument("--alert-timeout", type=int, default=60,
                    help="give up on a round's notification after this many seconds")
    ap.add_argument("--query-runs", type=int, default=10)
    ap.add_argument("--range-seconds", type=int, default=120)
    ap.add_argument("--no-build", action="store_true",
                    help="use target/release/wasmon as it is")
    ap.add_argument("--wasmon", default=os.path.join(ROOT, "target", "release", "wasmon"))
    ap.add_argument("--plugin", default=os.path.join(ROOT, "target", "plugins", "webhook.wasm"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--alertmanager", default=shutil.which("prometheus-alertmanager")
                    or "/usr/bin/prometheus-alertmanager")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--rss-log", metavar="FILE",
                    help="append each process' RSS every 10 s of the window (CSV)")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    ap.add_argument("--from-json", metavar="FILE",
                    help="only print the tables of a saved --json file")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            for r in json.load(f):
                print(fmt_table(r) + "\n")
        return

    if not args.no_build:
        log("cargo build --release -p wasmon")
        subprocess.run(["cargo", "build", "--release", "-p", "wasmon"], cwd=ROOT, check=True)
    for what, path in (("wasmon binary", args.wasmon), ("webhook plugin", args.plugin),
                       ("prometheus", args.prometheus), ("alertmanager", args.alertmanager)):
        if not os.path.exists(path):
            sys.exit("bench: %s not found at %s (see bench/README.md)" % (what, path))

    raise_on_sigterm()

    results = []
    try:
        for n in args.series:
            r = run_one(n, args, args.wasmon, args.plugin)
            results.append(r)
            print(fmt_table(r) + "\n", flush=True)
            if args.json:
                write(args.json, json.dumps(results, indent=1))
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; every process stopped")
    print("(%s)" % host_line())


if __name__ == "__main__":
    main()
