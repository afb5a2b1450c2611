#!/usr/bin/env python3
"""A synthetic Prometheus target on 127.0.0.1 for benchmarks.

Serves N active series in the Prometheus text format: counters
(http_requests_total by service/pod/path/method/status), gauges
(process/queue figures) and a classic histogram (~10 buckets), with values
that move on every scrape the way real ones do (counters grow by a random
rate, gauges wander). Usage: synth_target.py PORT SERIES

A scrape of `/metrics?client=NAME` gets its own copy of the series, seeded
alike: the k-th scrape of every client gets the same page, whenever it
comes. bench/blocks.py points wasmon (`client=wasmon`) and Prometheus
(`client=prometheus`) at the same target that way, so both stores see the
very same values (without `client`, every scrape advances one shared state,
and two scrapers would each see every other step).

SERIES 0 serves only `synth_error_ratio{round="K"}`, a gauge that
bench/compare.py switches with `POST /error?round=K&ratio=R` to cross an
alert threshold at a known instant (every target serves that endpoint).
"""
import http.server
import random
import sys
import threading
import urllib.parse

BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]


def build(series):
    if series == 0:
        return [], [], []
    rnd = random.Random(42)
    counters, gauges, hists = [], [], []
    n_counter = series * 6 // 10
    n_gauge = series * 2 // 10
    n_hist_groups = max(1, (series - n_counter - n_gauge) // (len(BUCKETS) + 2))
    for i in range(n_counter):
        labels = 'service="svc-%d",pod="pod-%d",path="/api/v1/item/%d",method="%s",status="%s"' % (
            i % 50, i % 500, i, ("GET", "POST")[i % 2], ("200", "404", "500")[i % 3])
        counters.append(["http_requests_total{%s}" % labels, rnd.randint(0, 10000), rnd.random() * 5])
    for i in range(n_gauge):
        labels = 'service="svc-%d",pod="pod-%d",queue="q-%d"' % (i % 50, i % 500, i)
        gauges.append(["queue_depth{%s}" % labels, rnd.random() * 100])
    for i in range(n_hist_groups):
        base = 'service="svc-%d",pod="pod-%d",handler="h-%d"' % (i % 50, i % 500, i)
        hists.append([base, [0] * len(BUCKETS), 0.0, rnd.random() * 10])
    return counters, gauges, hists


def render(state, rnd, error):
    counters, gauges, hists = state
    out = []
    if error is not None:
        out.append("# TYPE synth_error_ratio gauge")
        out.append('synth_error_ratio{round="%s"} %s' % error)
    if not counters and not gauges and not hists:
        return ("\n".join(out) + "\n").encode()
    out.append("# TYPE http_requests_total counter")
    for c in counters:
        c[1] += int(c[2] * rnd.random() * 15)
        out.append("%s %d" % (c[0], c[1]))
    out.append("# TYPE queue_depth gauge")
    for g in gauges:
        g[1] = max(0.0, g[1] + rnd.uniform(-2, 2))
        out.append("%s %.3f" % (g[0], g[1]))
    out.append("# TYPE request_duration_seconds histogram")
    for h in hists:
        n = int(h[3] * 15 * rnd.random()) + 1
        for _ in range(min(n, 20)):
            k = min(int(rnd.expovariate(1.0)), len(BUCKETS) - 1)
            for j in range(k, len(BUCKETS)):
                h[1][j] += 1
            h[2] += float(BUCKETS[k]) if BUCKETS[k] != "+Inf" else 5.0
        for j, b in enumerate(BUCKETS):
            out.append('request_duration_seconds_bucket{%s,le="%s"} %d' % (h[0], b, h[1][j]))
        out.append("request_duration_seconds_sum{%s} %.3f" % (h[0], h[2]))
        out.append("request_duration_seconds_count{%s} %d" % (h[0], h[1][-1]))
    return ("\n".join(out) + "\n").encode()


def main():
    port, series = int(sys.argv[1]), int(sys.argv[2])
    state = build(series)
    rnd = random.Random(7)
    # client name -> (state, rng), each seeded as the shared one.
    clients = {}
    lock = threading.Lock()
    # (round, ratio) of the switchable error gauge; None = not served (a
    # target with SERIES > 0 serves it only once switched).
    error = [("0", "0") if series == 0 else None]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            try:
                error[0] = (str(int(q["round"][0])), repr(float(q["ratio"][0])))
            except (KeyError, ValueError) as e:
                self.send_error(400, "POST /error?round=INT&ratio=FLOAT: %s" % e)
                return
            self.send_response(204)
            self.end_headers()

        def do_GET(self):
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            name = q.get("client", [None])[0]
            # ThreadingHTTPServer: one render at a time, so a state is never
            # advanced by two requests at once.
            with lock:
                if name is None:
                    body = render(state, rnd, error[0])
                else:
                    if name not in clients:
                        clients[name] = (build(series), random.Random(7))
                    body = render(*clients[name], error[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
