#!/usr/bin/env python3
"""The canary-rollback demo's two small servers (standard library only).

  app.py app PORT    a service with a good (v1) and a bad (v2) version behind
                     a switch: /metrics (each scrape counts 100 requests; v2
                     fails 30% of them), POST /deploy?version=V, and
                     POST /switch?version=V (what wasmon's http-action calls).
  app.py sink PORT   prints every Alertmanager webhook notification it gets.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

state = {"version": "v1", "ok": 0, "errors": 0}
lock = threading.Lock()
BAD = {"v2"}


class App(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/metrics":
            return self.reply(404, "not found\n")
        with lock:
            state["ok"] += 70 if state["version"] in BAD else 100
            if state["version"] in BAD:
                state["errors"] += 30
            text = (
                "# TYPE http_requests_total counter\n"
                f'http_requests_total{{code="200"}} {state["ok"]}\n'
                f'http_requests_total{{code="500"}} {state["errors"]}\n'
                "# TYPE app_build_info gauge\n"
                f'app_build_info{{version="{state["version"]}"}} 1\n'
            )
        self.reply(200, text)

    def do_POST(self):
        url = urlparse(self.path)
        version = parse_qs(url.query).get("version", [""])[0]
        body = read_body(self).decode()
        if url.path not in ("/deploy", "/switch") or not version:
            return self.reply(400, "POST /deploy?version=V or /switch?version=V\n")
        with lock:
            before, state["version"] = state["version"], version
        who = "wasmon rollback" if url.path == "/switch" else "deploy"
        print(f"[app] {who}: {before} -> {version} {body}", flush=True)
        self.reply(200, f"now serving {version}\n")


def read_body(h):
    """The request body, Content-Length or chunked (wasi:http sends chunked)."""
    if h.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return h.rfile.read(int(h.headers.get("Content-Length") or 0))
    body = b""
    while True:
        size = int(h.rfile.readline().split(b";")[0].strip(), 16)
        if size == 0:
            h.rfile.readline()
            return body
        body += h.rfile.read(size)
        h.rfile.readline()


class Sink(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        n = json.loads(read_body(self))
        for a in n["alerts"]:
            labels = a["labels"]
            print(
                f'[notification] {n["status"].upper()} {labels.get("alertname")} '
                f'rollout={labels.get("rollout", "-")} version={labels.get("version", "-")}: '
                f'{a["annotations"].get("summary", "")}',
                flush=True,
            )
        self.send_response(200)
        self.end_headers()


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    handler = App if mode == "app" else Sink
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
