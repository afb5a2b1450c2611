#!/usr/bin/env python3
"""Peak memory of the agent scraping a gzip bomb (issue 17, item 8).

A target on 127.0.0.1 answers every scrape with N MiB of zeros gzipped
(Content-Encoding: gzip, ~1/1000 of the size on the wire). The agent
scrapes it a few times with the given `body_size_limit` (or the default);
the driver prints the agent's peak RSS (VmHWM) before the first scrape and
after the last, and the target's lastError.

    python3 bench/gzip_bomb.py                                 # default limit, 1 GiB bomb
    python3 bench/gzip_bomb.py --limit 256MiB --bomb-mib 1024
    python3 bench/gzip_bomb.py --wasmon /tmp/wasmon-old --limit 0 --bomb-mib 512

Python 3.11 stdlib only; every process is stopped on exit (benchlib.Procs).
"""
import argparse
import gzip
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def bomb(mib):
    buf = bytearray()
    with gzip.GzipFile(fileobj=_Sink(buf), mode="wb", compresslevel=9) as gz:
        zeros = bytes(1 << 20)
        for _ in range(mib):
            gz.write(zeros)
    return bytes(buf)


class _Sink:
    def __init__(self, buf):
        self.buf = buf

    def write(self, b):
        self.buf += b
        return len(b)

    def flush(self):
        pass


def serve(body):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the agent stopped reading at its limit

        def log_message(self, *_):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s in /proc/%d/status" % (field, pid))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wasmon", default=None,
                    help="agent binary (default: target/release/wasmon, else target/debug/wasmon)")
    ap.add_argument("--limit", default=None,
                    help="body_size_limit for the job, e.g. 64MiB or 0 (default: the agent's default)")
    ap.add_argument("--bomb-mib", type=int, default=1024, help="decompressed size of the bomb")
    ap.add_argument("--scrapes", type=int, default=3)
    args = ap.parse_args()
    exe = args.wasmon
    if exe is None:
        for p in ("target/release/wasmon", "target/debug/wasmon"):
            if os.path.exists(os.path.join(benchlib.ROOT, p)):
                exe = os.path.join(benchlib.ROOT, p)
                break
    exe = os.path.abspath(exe)
    benchlib.log("building a %d MiB gzip bomb" % args.bomb_mib)
    body = bomb(args.bomb_mib)
    srv = serve(body)
    target = "127.0.0.1:%d" % srv.server_address[1]
    port = benchlib.free_port()
    work = tempfile.mkdtemp(prefix="wasmon-bench-bomb-")
    limit = "" if args.limit is None else 'body_size_limit = "%s"\n' % args.limit
    benchlib.write(os.path.join(work, "wasmon.toml"), """
[global]
scrape_interval = "3s"
scrape_timeout = "2900ms"
[web]
listen_address = "127.0.0.1:%d"
[storage]
path = "data"
[[scrape_configs]]
job_name = "bomb"
%sstatic_configs = [{ targets = ["%s"] }]
""" % (port, limit, target))
    procs = benchlib.Procs(work)
    benchlib.raise_on_sigterm()
    try:
        agent = procs.start("wasmon", [exe, "run", "--config", os.path.join(work, "wasmon.toml")], cwd=work)
        base = "http://127.0.0.1:%d" % port
        benchlib.wait_for("wasmon ready", lambda: benchlib.http_get(base + "/-/ready"), 60, agent)
        hwm0 = status_kib(agent.pid, "VmHWM")

        def done():
            r = json.loads(benchlib.http_get(base + "/api/v1/query?query=count_over_time(up[10m])"))
            res = r["data"]["result"]
            return res and float(res[0]["value"][1]) >= args.scrapes

        benchlib.wait_for("%d scrapes" % args.scrapes, done, 60 + 20 * args.scrapes, agent)
        hwm = status_kib(agent.pid, "VmHWM")
        rss = status_kib(agent.pid, "VmRSS")
        t = json.loads(benchlib.http_get(base + "/api/v1/targets"))["data"]["activeTargets"][0]
        print("binary: %s" % exe)
        print("bomb: %d MiB of zeros, %d bytes gzipped; body_size_limit: %s" % (
            args.bomb_mib, len(body), args.limit or "default"))
        print("peak RSS before the first scrape: %.1f MiB" % (hwm0 / 1024))
        print("peak RSS after %d scrapes:        %.1f MiB (RSS now %.1f MiB)" % (
            args.scrapes, hwm / 1024, rss / 1024))
        print("target: health=%s lastError=%r" % (t["health"], t["lastError"]))
        print(benchlib.host_line())
    except BaseException:
        procs.log_tails()
        raise
    finally:
        procs.stop_all()
        srv.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
