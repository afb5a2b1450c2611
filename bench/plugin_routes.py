#!/usr/bin/env python3
"""Size, build time and agent compile time of a JavaScript or Python receiver
per build route: the routes `wasmon plugin build` takes and the options
measured against them (jco's engines, componentize-qjs and componentize-py
options, WASI stubbing, binaryen's wasm-opt).

    python3 bench/plugin_routes.py                 # every route (~10 min on a busy 2-core box)
    python3 bench/plugin_routes.py --only js --json /tmp/routes.json
    python3 bench/plugin_routes.py --list
    python3 bench/plugin_routes.py --with-wasm-opt --route wasm-opt

Per route it prints: the component's size; the build's wall time and CPU
time (user+sys of every process the build ran); whether the agent loads it
(`wasmon plugins list`, which compiles exactly as the agent does, in a
child process); the cold compile's wall and CPU time; the load from the
compile cache (what every later start pays); and whether outbound HTTP works
in that component. CPU time is the steadier figure on a shared machine:
Cranelift compiles in parallel, so on an idle 2-core box wall ~ CPU / 2.

The sources are the repository's examples (`examples/plugins/js-receiver`,
`js-fetch-receiver`, `python-receiver`) for the routes `plugin build` takes,
and a log-only receiver (written to the work dir) for the engine options:
those builds do not go through `plugin build`, which is what makes wasi:http
usable in QuickJS (see tooling/src/js.rs). Needs: a built `wasmon` (debug
by default, `--wasmon` for another), jco 1.34 with its componentize-qjs,
componentize-py 0.25; wasm-opt rows need binaryen (jco brings one).
Python 3.11 stdlib only; everything runs in a temp dir that is removed.
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, host_line, log  # noqa: E402
from blocks import uvarint  # noqa: E402  (unsigned LEB128: how wasm encodes sizes too)

LOG_ONLY_JS = """\
import { log } from 'wasmon:plugin/log@0.1.0';
import { instanceName } from 'wasmon:plugin/config@0.1.0';

export function notify(notification) {
  log('info', 'notification', [
    ['instance', instanceName()],
    ['alerts', String(notification.alerts.length)],
  ]);
}
"""

LOG_ONLY_PY = """\
import wit_world
from wit_world.imports import config, log, types


class WitWorld(wit_world.WitWorld):
    def notify(self, notification: types.Notification) -> None:
        log.log(log.Level.INFO, "notification",
                [("instance", config.instance_name()), ("alerts", str(len(notification.alerts)))])
"""


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv, cwd=None, env=None):
    """Runs argv; returns (wall s, cpu s, output). Raises with the output on failure."""
    cpu0, t0 = children_cpu(), time.monotonic()
    p = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL)
    wall, cpu = time.monotonic() - t0, children_cpu() - cpu0
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(map(str, argv)), p.returncode, out[-3000:]))
    return wall, cpu, out


def find_tool(name, *candidates):
    for c in candidates:
        if c and os.path.isfile(c):
            return c
    return shutil.which(name)


class Tools:
    def __init__(self, wasmon):
        self.wasmon = wasmon
        self.jco = shutil.which("jco")
        jco_pkg = os.path.dirname(os.path.dirname(os.path.realpath(self.jco))) if self.jco else None
        nested = lambda *p: os.path.join(jco_pkg, "node_modules", *p) if jco_pkg else None  # noqa: E731
        self.qjs = find_tool("componentize-qjs", os.environ.get("WASMON_COMPONENTIZE_QJS"),
                             nested("componentize-qjs", "bin", "componentize-qjs"))
        self.cpy = shutil.which("componentize-py")
        self.wasm_opt = find_tool("wasm-opt", nested("binaryen", "bin", "wasm-opt"))


# ---------------------------------------------------------------- components

def enc_leb(n):
    out = bytearray()
    while True:
        x, n = n & 0x7F, n >> 7
        out.append(x | 0x80 if n else x)
        if not n:
            return bytes(out)


def optimize_modules(src, dst, wasm_opt, flags, workdir, min_size=1 << 20):
    """Runs wasm-opt on every top-level core module of component `src` larger
    than `min_size` and writes the component with the results to `dst`."""
    b = open(src, "rb").read()
    out = bytearray(b[:8])
    i = 8
    while i < len(b):
        sid = b[i]
        size, j = uvarint(b, i + 1)
        body = b[j:j + size]
        if sid == 1 and size > min_size:  # a core module section
            m_in, m_out = os.path.join(workdir, "m.wasm"), os.path.join(workdir, "m.opt.wasm")
            open(m_in, "wb").write(body)
            subprocess.run([wasm_opt, "-all", *flags, m_in, "-o", m_out], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            body = open(m_out, "rb").read()
        out += bytes([sid]) + enc_leb(len(body)) + body
        i = j + size
    open(dst, "wb").write(out)


# -------------------------------------------------------------------- routes

def plugin_build(tools, example):
    def build(work):
        out = os.path.join(work, "out")
        os.makedirs(out, exist_ok=True)
        wall, cpu, _ = timed([tools.wasmon, "plugin", "build", os.path.join(ROOT, "examples/plugins", example),
                              "--out", out])
        return os.path.join(out, example + ".wasm"), wall, cpu
    return build


def log_only(work, lang):
    """A directory with the log-only receiver in `lang` (js or py) and the contract."""
    d = os.path.join(work, "logonly-" + lang)
    os.makedirs(os.path.join(d, "wit"), exist_ok=True)
    open(os.path.join(d, "app." + lang), "w").write(LOG_ONLY_JS if lang == "js" else LOG_ONLY_PY)
    shutil.copy(os.path.join(ROOT, "wit/plugin.wit"), os.path.join(d, "wit"))
    return d


def jco_all_off(tools):
    def build(work):
        d = log_only(work, "js")
        out = os.path.join(work, "sm-all-off.wasm")
        wall, cpu, _ = timed([tools.jco, "componentize", "app.js", "--wit", "wit", "--world-name", "receiver",
                              "-d", "all", "-o", out], cwd=d)
        return out, wall, cpu
    return build


def qjs(tools, *flags):
    def build(work):
        d = log_only(work, "js")
        out = os.path.join(work, "qjs%s.wasm" % "".join(flags).replace("--", "-"))
        wall, cpu, _ = timed([tools.qjs, "--wit", "wit", "--world", "receiver", "--js", "app.js",
                              *flags, "--output", out], cwd=d)
        return out, wall, cpu
    return build


def cpy(tools, *flags):
    def build(work):
        d = log_only(work, "py")
        out = os.path.join(work, "py%s.wasm" % "".join(flags).replace("--", "-"))
        wall, cpu, _ = timed([tools.cpy, "-d", "wit", "-w", "receiver", "componentize", "app", "-p", ".",
                              *flags, "-o", out], cwd=d)
        return out, wall, cpu
    return build


def wasm_opt_of(tools, base, flags):
    """The component of route `base`, its large core modules through wasm-opt."""
    def build(work):
        src, wall0, cpu0 = base(work)
        out = src.replace(".wasm", ".opt%s.wasm" % "".join(flags))
        cpu1, t1 = children_cpu(), time.monotonic()
        optimize_modules(src, out, tools.wasm_opt, flags, work)
        return out, wall0 + time.monotonic() - t1, cpu0 + children_cpu() - cpu1
    return build


def routes(tools, with_wasm_opt=False):
    """(name, language, what the route is, HTTP in the component, build function, needs)."""
    r = [
        ("js quickjs (plugin build default)", "js",
         "componentize-qjs --sync --opt-size, wasi:http relabelled", "yes: http from 'wasmon' (sync)",
         plugin_build(tools, "js-receiver"), [tools.qjs]),
        ("js starlingmonkey (plugin build, engine)", "js",
         "jco componentize --bundle, http+clocks+random on", "yes: fetch",
         plugin_build(tools, "js-fetch-receiver"), [tools.jco]),
        ("js starlingmonkey -d all (old route)", "js", "jco componentize -d all", "no: fetch traps",
         jco_all_off(tools), [tools.jco]),
        ("js quickjs async runtime", "js", "componentize-qjs (jco --backend quickjs)", "-",
         qjs(tools), [tools.qjs]),
        ("js quickjs --sync", "js", "componentize-qjs --sync", "-", qjs(tools, "--sync"), [tools.qjs]),
        ("js quickjs --sync --opt-size", "js", "componentize-qjs --sync --opt-size", "-",
         qjs(tools, "--sync", "--opt-size"), [tools.qjs]),
        ("js quickjs --sync --opt-size --stub-wasi", "js", "componentize-qjs, WASI stubbed", "no: stubbed",
         qjs(tools, "--sync", "--opt-size", "--stub-wasi"), [tools.qjs]),
        ("python (plugin build default)", "python", "componentize-py + wasmon package",
         "yes: wasmon.http", plugin_build(tools, "python-receiver"), [tools.cpy]),
        ("python log-only", "python", "componentize-py, contract world only", "-", cpy(tools), [tools.cpy]),
        ("python --stub-wasi", "python", "componentize-py --stub-wasi", "no: stubbed", cpy(tools, "--stub-wasi"),
         [tools.cpy]),
    ]
    if with_wasm_opt:
        r.append(("python + wasm-opt -Oz", "python", "plugin build, then binaryen wasm-opt -Oz on modules > 1 MB",
                  "yes: wasmon.http", wasm_opt_of(tools, plugin_build(tools, "python-receiver"), ["-Oz"]),
                  [tools.cpy, tools.wasm_opt]))
        r.append(("js starlingmonkey + wasm-opt -Oz", "js", "engine starlingmonkey, then wasm-opt -Oz on modules > 1 MB",
                  "yes: fetch", wasm_opt_of(tools, plugin_build(tools, "js-fetch-receiver"), ["-Oz"]),
                  [tools.jco, tools.wasm_opt]))
    return r


# ------------------------------------------------------------------- measure

def load(tools, wasm, work):
    """Cold compile through `wasmon plugins list` (no cache), then the load
    from a warmed compile cache."""
    d = os.path.join(work, "load")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "plugins"))
    shutil.copy(wasm, os.path.join(d, "plugins", "p.wasm"))
    cfg = os.path.join(d, "wasmon.toml")
    open(cfg, "w").write('[web]\nlisten_address = "127.0.0.1:1"\n[plugins]\ndir = "plugins"\ncache_dir = "cache"\n')
    res = {}
    try:
        wall, cpu, out = timed([tools.wasmon, "plugins", "list", "--config", cfg])
    except RuntimeError as e:
        m = re.search(r"ERROR: (.*)", str(e))
        res["loads"] = "no: " + (m.group(1)[:90] if m else "see output")
        return res
    res.update(loads="yes", compile_wall_s=round(wall, 2), compile_cpu_s=round(cpu, 2))
    _, _, out = timed([tools.wasmon, "plugins", "list", "--config", cfg])
    m = re.search(r"from_cache=true load_ms=([0-9.]+)", out)
    res["cached_load_ms"] = round(float(m.group(1)), 1) if m else None
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.path.join(ROOT, "target/debug/wasmon")
    ap.add_argument("--wasmon", default=default, help="the wasmon binary (default: %(default)s)")
    ap.add_argument("--only", choices=["js", "python"], help="only this language's routes")
    ap.add_argument("--route", action="append", help="only routes whose name contains this (repeatable)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--list", action="store_true", help="list the routes and exit")
    ap.add_argument("--with-wasm-opt", action="store_true",
                    help="add the wasm-opt rows (binaryen's JS build: 10+ minutes per large module)")
    args = ap.parse_args()
    tools = Tools(os.path.abspath(args.wasmon))
    todo = [r for r in routes(tools, args.with_wasm_opt)
            if (not args.only or r[1] == args.only) and (not args.route or any(s in r[0] for s in args.route))]
    if args.list:
        for name, _, what, http, _, _ in todo:
            print("%-44s %-58s HTTP %s" % (name, what, http))
        return 0
    if not os.path.isfile(tools.wasmon):
        sys.exit("%s: no such binary (cargo build -p wasmon, or --wasmon)" % tools.wasmon)
    log(host_line())
    results = []
    with tempfile.TemporaryDirectory(prefix="wasmon-bench-routes-") as work:
        for name, lang, what, http, build, needs in todo:
            row = {"route": name, "lang": lang, "what": what, "http": http}
            if not all(needs):
                row["error"] = "tool missing"
                log("%s: skipped (a tool is missing)" % name)
                results.append(row)
                continue
            rwork = os.path.join(work, re.sub(r"[^a-z0-9]+", "-", name.lower()))
            os.makedirs(rwork)
            try:
                log("%s: building" % name)
                wasm, wall, cpu = build(rwork)
                row.update(size_mb=round(os.path.getsize(wasm) / 1e6, 2), build_wall_s=round(wall, 1),
                           build_cpu_s=round(cpu, 1))
                log("%s: %.2f MB, built in %.1fs; compiling" % (name, row["size_mb"], wall))
                row.update(load(tools, wasm, rwork))
            except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
                row["error"] = str(e).splitlines()[0][:120]
                log("%s: %s" % (name, e))
            results.append(row)
    print(host_line())
    print("wasmon: %s\n" % tools.wasmon)
    print("| route | size MB | build s (CPU s) | agent loads | cold compile s (CPU s) | cached load ms | HTTP |")
    print("|---|---:|---:|---|---:|---:|---|")
    for r in results:
        if "error" in r and "size_mb" not in r:
            print("| %s | | | %s | | | %s |" % (r["route"], r["error"], r["http"]))
            continue
        compile_ = ("%.1f (%.1f)" % (r["compile_wall_s"], r["compile_cpu_s"])) if "compile_wall_s" in r else ""
        print("| %s | %.2f | %.1f (%.1f) | %s | %s | %s | %s |" % (
            r["route"], r["size_mb"], r["build_wall_s"], r["build_cpu_s"], r.get("loads", r.get("error", "")),
            compile_, r.get("cached_load_ms") or "", r["http"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"host": host_line(), "wasmon": tools.wasmon, "routes": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
