#!/usr/bin/env python3
"""Bytes per sample of persisted blocks: wasmon vs Prometheus 2.42, side by side.

Both stores scrape the same synthetic targets (bench/synth_target.py, each
side through its own `?client=` so both see the very same values) on
127.0.0.1 at the same interval, with the same short block duration
(wasmon's `[storage] block_duration` = `max_block_duration`, Prometheus'
hidden `--storage.tsdb.min-block-duration` = `--storage.tsdb.max-block-duration`,
so neither merges blocks), until each has cut --blocks blocks.
Then both are stopped and every block is measured from its files:
meta.json numSamples, chunk files, index, total, bytes per sample; the
first block (which starts before the first sample: partial) is left out of
the steady-state average. Chunk bytes are also split by metric name and
type: wasmon's through `wasmon tsdb analyze --json` (which also gives the
bits of the timestamp and value streams), Prometheus' by reading its index
and chunk files here (format: prometheus/tsdb/docs/format/{index,chunks}.md).

Defaults: 10k series, 1 s scrapes, 8 min blocks: 480 samples per series per
block, as Prometheus' default 2 h blocks hold at a 15 s interval, so the
per-chunk and per-series costs are spread over as many samples as in
production; three blocks take 21-29 min depending on where the run starts
against the 8 min grid.

Python 3.11 standard library only. See bench/README.md.
"""
import argparse
import json
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time

from benchlib import (ROOT, bench_run, free_port, host_line, http_get, log, metric_value,
                      proc_cpu_seconds, raise_on_sigterm, wait_for, write)

# Metric names of bench/synth_target.py (and the scrape's own series) by type.
TYPES = [
    ("counter", lambda n: n == "http_requests_total"),
    ("gauge", lambda n: n == "queue_depth"),
    ("histogram _bucket", lambda n: n == "request_duration_seconds_bucket"),
    ("histogram _sum", lambda n: n == "request_duration_seconds_sum"),
    ("histogram _count", lambda n: n == "request_duration_seconds_count"),
    ("up, scrape_*", lambda n: n == "up" or n.startswith("scrape_")),
]


def metric_type(name):
    for t, match in TYPES:
        if match(name):
            return t
    return "other"


def parse_duration(text):
    """Seconds of a Prometheus-style duration: 8m, 1h30m, 90s."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    total, num = 0, ""
    for ch in text:
        if ch.isdigit():
            num += ch
        elif ch in units and num:
            total, num = total + int(num) * units[ch], ""
        else:
            raise argparse.ArgumentTypeError("not a duration: %r" % text)
    if num or total <= 0:
        raise argparse.ArgumentTypeError("not a duration: %r (use s/m/h units)" % text)
    return total


# --- Prometheus block files -------------------------------------------------

def uvarint(b, pos):
    x = shift = 0
    while True:
        c = b[pos]
        pos += 1
        x |= (c & 0x7F) << shift
        if c < 0x80:
            return x, pos
        shift += 7


def varint(b, pos):
    u, pos = uvarint(b, pos)
    return (u >> 1) ^ -(u & 1), pos


def prom_block_metrics(block):
    """Chunk bytes, chunks, samples and series per metric name of one
    Prometheus block (index format v2, XOR chunks)."""
    with open(os.path.join(block, "index"), "rb") as f:
        ix = f.read()
    if ix[:4] != b"\xba\xaa\xd7\x00" or ix[4] != 2:
        raise RuntimeError("%s: not a v2 index" % block)
    toc = struct.unpack(">6Q", ix[-52:-4])
    symbols_off, postings_table_off = toc[0], toc[5]
    # Symbols: referenced by their position in the table.
    n = struct.unpack(">I", ix[symbols_off + 4:symbols_off + 8])[0]
    pos, symbols = symbols_off + 8, []
    for _ in range(n):
        ln, pos = uvarint(ix, pos)
        symbols.append(ix[pos:pos + ln].decode())
        pos += ln
    # The all-series postings list is the entry ("", "") of the table.
    n = struct.unpack(">I", ix[postings_table_off + 4:postings_table_off + 8])[0]
    pos, all_off = postings_table_off + 8, None
    for _ in range(n):
        _, pos = uvarint(ix, pos)  # n = 2
        ln, pos = uvarint(ix, pos)
        name = ix[pos:pos + ln]
        pos += ln
        ln, pos = uvarint(ix, pos)
        value = ix[pos:pos + ln]
        pos += ln
        off, pos = uvarint(ix, pos)
        if name == b"" and value == b"":
            all_off = off
            break
    if all_off is None:
        raise RuntimeError("%s: no all-series postings" % block)
    count = struct.unpack(">I", ix[all_off + 4:all_off + 8])[0]
    refs = struct.unpack(">%dI" % count, ix[all_off + 8:all_off + 8 + 4 * count])

    seg_files = sorted(os.listdir(os.path.join(block, "chunks")))
    segs = []
    for name in seg_files:
        with open(os.path.join(block, "chunks", name), "rb") as f:
            segs.append(f.read())
    out = {}
    for ref in refs:
        pos = ref * 16
        _, pos = uvarint(ix, pos)  # len
        nl, pos = uvarint(ix, pos)
        name = ""
        for _ in range(nl):
            k, pos = uvarint(ix, pos)
            v, pos = uvarint(ix, pos)
            if symbols[k] == "__name__":
                name = symbols[v]
        nc, pos = uvarint(ix, pos)
        m = out.setdefault(name, {"name": name, "series": 0, "chunks": 0, "samples": 0,
                                  "chunk_bytes": 0})
        m["series"] += 1
        cref = 0
        for i in range(nc):
            if i == 0:
                _, pos = varint(ix, pos)
                _, pos = uvarint(ix, pos)
                cref, pos = uvarint(ix, pos)
            else:
                _, pos = uvarint(ix, pos)
                _, pos = uvarint(ix, pos)
                d, pos = varint(ix, pos)
                cref += d
            seg, off = segs[cref >> 32], cref & 0xFFFFFFFF
            ln, p = uvarint(seg, off)
            # encoding byte, then the chunk: a 2-byte sample count first.
            m["samples"] += struct.unpack(">H", seg[p + 1:p + 3])[0]
            m["chunks"] += 1
            m["chunk_bytes"] += (p - off) + 1 + ln + 4
    return sorted(out.values(), key=lambda m: m["name"])


def wasmon_metrics(wasmon_bin, data_dir):
    """`wasmon tsdb analyze --json` of every block: ulid -> metric list."""
    out = subprocess.run([wasmon_bin, "tsdb", "analyze", "--json", data_dir],
                         check=True, capture_output=True, timeout=600)
    return {r["ulid"]: r["metrics"] for r in json.loads(out.stdout)}


def file_bytes(path):
    """Apparent size of a file or of every file under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for d, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    return total


def block_dirs(data):
    """Completed blocks (ULID directories with a meta.json), by min time."""
    out = []
    if not os.path.isdir(data):
        return out
    for name in os.listdir(data):
        meta = os.path.join(data, name, "meta.json")
        if len(name) == 26 and os.path.isfile(meta):
            with open(meta) as f:
                out.append((json.load(f), os.path.join(data, name)))
    return sorted(out, key=lambda x: x[0]["minTime"])


def measure_blocks(data, metrics_of):
    """Per block: meta figures, file sizes and per-metric chunk bytes."""
    blocks = []
    for meta, path in block_dirs(data):
        st = meta["stats"]
        blocks.append({
            "ulid": meta["ulid"], "min_time": meta["minTime"], "max_time": meta["maxTime"],
            "samples": st.get("numSamples", 0), "series": st.get("numSeries", 0),
            "chunks": st.get("numChunks", 0),
            "chunks_bytes": file_bytes(os.path.join(path, "chunks")),
            "index_bytes": file_bytes(os.path.join(path, "index")),
            "total_bytes": file_bytes(path),
            "metrics": metrics_of(meta["ulid"], path),
        })
    return blocks


# --- the run ----------------------------------------------------------------

def configs(work, args, targets, ports):
    timeout = "%ds" % max(1, int(args.scrape_interval * 0.9))
    for d in ("wasmon", "prom"):
        os.makedirs(os.path.join(work, d), exist_ok=True)
    os.makedirs(os.path.join(work, "wasmon", "plugins"), exist_ok=True)
    write(os.path.join(work, "wasmon", "wasmon.toml"), f"""\
[global]
scrape_interval = "{args.scrape_interval}s"
scrape_timeout = "{timeout}"

[web]
listen_address = "127.0.0.1:{ports['wasmon']}"

[storage]
path = "{work}/wasmon/data"
block_duration = "{args.block_duration}s"
max_block_duration = "{args.block_duration}s"

[plugins]
dir = "{work}/wasmon/plugins"
cache_dir = ""
watch = false

[[scrape_configs]]
job_name = "synth"
params = {{ client = ["wasmon"] }}
static_configs = [{{ targets = {json.dumps(targets)} }}]
""")
    write(os.path.join(work, "prom", "prometheus.yml"), f"""\
global:
  scrape_interval: {args.scrape_interval}s
  scrape_timeout: {timeout}
scrape_configs:
  - job_name: synth
    params:
      client: [prometheus]
    static_configs:
      - targets: {json.dumps(targets)}
""")


def run(args):
    with bench_run("wasmon-blocks-%d-" % args.series, args.keep) as (work, procs):
        return _run(args, work, procs)


def _run(args, work, procs):
    n_targets = max(1, math.ceil(args.series / args.series_per_target))
    per_target = args.series // n_targets
    synth = os.path.join(ROOT, "bench", "synth_target.py")
    ports = [free_port() for _ in range(n_targets)]
    tprocs = [procs.start("target-%d" % i, [sys.executable, synth, str(p), str(per_target)])
              for i, p in enumerate(ports)]
    for p, tp in zip(ports, tprocs):
        # Probed without ?client=, which leaves the clients' states alone.
        wait_for("target 127.0.0.1:%d" % p, lambda p=p: http_get(
            "http://127.0.0.1:%d/metrics" % p, timeout=10), 30, tp)
    targets = ["127.0.0.1:%d" % p for p in ports]
    sport = {"wasmon": free_port(), "prom": free_port()}
    configs(work, args, targets, sport)
    wdata = os.path.join(work, "wasmon", "data")
    pdata = os.path.join(work, "prom", "data")
    dur = "%ds" % args.block_duration
    wasmon = procs.start("wasmon", [args.wasmon, "--log.level", "info", "run", "--config",
                                    os.path.join(work, "wasmon", "wasmon.toml")],
                         cwd=os.path.join(work, "wasmon"))
    prom = procs.start("prometheus", [
        args.prometheus, "--config.file", os.path.join(work, "prom", "prometheus.yml"),
        "--storage.tsdb.path", pdata,
        "--storage.tsdb.min-block-duration", dur, "--storage.tsdb.max-block-duration", dur,
        "--web.listen-address", "127.0.0.1:%d" % sport["prom"], "--log.level", "info"])
    wbase = "http://127.0.0.1:%d" % sport["wasmon"]
    pbase = "http://127.0.0.1:%d" % sport["prom"]
    wait_for("wasmon ready", lambda: http_get(wbase + "/-/ready", 5), 120, wasmon)
    wait_for("prometheus ready", lambda: http_get(pbase + "/-/ready", 5), 120, prom)
    t_start = time.time()

    # Every synthetic series on both sides (the scrape's own series come on top).
    synth_series = n_targets * synth_series_count(per_target)
    log("%d synthetic series on %d target(s), %ds scrapes, %ds blocks; waiting for both heads"
        % (synth_series, n_targets, args.scrape_interval, args.block_duration))
    wait_for("wasmon head series >= %d" % synth_series, lambda: metric_value(
        wbase + "/metrics", "wasmon_tsdb_head_series") >= synth_series, 300, wasmon)
    wait_for("prometheus head series >= %d" % synth_series, lambda: metric_value(
        pbase + "/metrics", "prometheus_tsdb_head_series") >= synth_series, 300, prom)

    servers = {"wasmon": wasmon, "prometheus": prom}
    cpu0 = {k: proc_cpu_seconds(p.pid) for k, p in servers.items()}
    loads = []
    deadline = time.monotonic() + args.timeout
    complete = False
    last = None
    while time.monotonic() < deadline:
        for k, p in servers.items():
            if p.poll() is not None:
                raise RuntimeError("%s exited with %s" % (k, p.returncode))
        loads.append(os.getloadavg()[0])
        have = {"wasmon": len(block_dirs(wdata)), "prometheus": len(block_dirs(pdata))}
        if have != last:
            log("blocks: wasmon %d, prometheus %d (want %d each; %.0f min so far)" % (
                have["wasmon"], have["prometheus"], args.blocks, (time.time() - t_start) / 60))
            last = have
        if min(have.values()) >= args.blocks:
            complete = True
            break
        time.sleep(10)
    cpu = {k: proc_cpu_seconds(p.pid) - cpu0[k] for k, p in servers.items()}
    elapsed = time.time() - t_start
    samples_appended = {
        "wasmon": metric_value(wbase + "/metrics", "wasmon_tsdb_samples_appended_total"),
        "prometheus": metric_value(pbase + "/metrics",
                                   "prometheus_tsdb_head_samples_appended_total"),
    }
    # Stop the writers before reading their blocks (retention or a late
    # compaction must not move files under the reader).
    procs.stop_all()
    if not complete:
        log("timed out after %ds: reporting the blocks there are" % args.timeout)

    wmetrics = wasmon_metrics(args.wasmon, wdata) if block_dirs(wdata) else {}
    result = {
        "series": args.series, "synth_series": synth_series, "targets": n_targets,
        "scrape_interval_s": args.scrape_interval, "block_duration_s": args.block_duration,
        "blocks_wanted": args.blocks, "complete": complete, "elapsed_s": round(elapsed),
        "load1": {"min": min(loads), "mean": statistics.mean(loads), "max": max(loads)}
        if loads else None,
        "cpus": os.cpu_count(), "cpu_s": cpu, "samples_appended": samples_appended,
        "host": host_line(),
        "wasmon": measure_blocks(wdata, lambda ulid, _: wmetrics.get(ulid, [])),
        "prometheus": measure_blocks(pdata, lambda _, path: prom_block_metrics(path)),
    }
    return result


def synth_series_count(per_target):
    """Series one synth_target.py with SERIES = per_target serves (as its
    build() lays them out: counters, gauges, histograms of 10 buckets +
    _sum + _count)."""
    counters = per_target * 6 // 10
    gauges = per_target * 2 // 10
    hists = max(1, (per_target - counters - gauges) // 12)
    return counters + gauges + hists * 12


# --- the report -------------------------------------------------------------

def steady(blocks):
    """The blocks after the first: the first starts before the first sample."""
    return blocks[1:]


def by_type(blocks):
    """Per metric type over `blocks`: samples, chunk bytes, stream bits."""
    out = {}
    for b in blocks:
        for m in b["metrics"]:
            t = out.setdefault(metric_type(m["name"]), {
                "samples": 0, "chunk_bytes": 0, "time_bits": 0, "value_bits": 0,
                "value_codes": {}})
            t["samples"] += m["samples"]
            t["chunk_bytes"] += m["chunk_bytes"]
            t["time_bits"] += m.get("time_bits", 0)
            t["value_bits"] += m.get("value_bits", 0)
            for code, n in m.get("value_codes", {}).items():
                t["value_codes"][code] = t["value_codes"].get(code, 0) + n
    return out


def fmt_report(r):
    lines = []
    utc = lambda ms: time.strftime("%H:%M:%S", time.gmtime(ms / 1000))  # noqa: E731
    lines.append("#### %d series (%d synthetic on %d target(s)), %d s scrapes, %d s blocks" % (
        r["series"], r["synth_series"], r["targets"], r["scrape_interval_s"],
        r["block_duration_s"]))
    lines.append("")
    ld = r.get("load1")
    lines.append("Run: %.0f min%s; load average (1 min) during the run min %.1f / mean %.1f / "
                 "max %.1f on %d CPUs; CPU seconds wasmon %.0f, prometheus %.0f." % (
                     r["elapsed_s"] / 60, "" if r["complete"] else
                     " (TIMED OUT before %d blocks each)" % r["blocks_wanted"],
                     ld["min"], ld["mean"], ld["max"], r["cpus"],
                     r["cpu_s"]["wasmon"], r["cpu_s"]["prometheus"]))
    lines.append("")
    lines.append("| side | block (UTC) | series | samples | samples/series | chunks B | index B "
                 "| total B | B/sample (chunks + index + meta) |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for side in ("wasmon", "prometheus"):
        for i, b in enumerate(r[side]):
            lines.append("| %s | %s–%s%s | %d | %d | %.0f | %d | %d | %d | %.3f |" % (
                side, utc(b["min_time"]), utc(b["max_time"]),
                " (first, partial)" if i == 0 else "", b["series"], b["samples"],
                b["samples"] / max(1, b["series"]), b["chunks_bytes"], b["index_bytes"],
                b["total_bytes"], b["total_bytes"] / max(1, b["samples"])))
    lines.append("")

    def avg(side, key):
        bs = steady(r[side])
        s = sum(b["samples"] for b in bs)
        return sum(b[key] for b in bs) / s if s else float("nan")
    lines.append("Steady state (all blocks but the first, bytes summed / samples summed):")
    lines.append("")
    lines.append("| B/sample | wasmon | prometheus 2.42 | wasmon / prometheus |")
    lines.append("|---|---:|---:|---:|")
    for label, key in (("total", "total_bytes"), ("chunks", "chunks_bytes"),
                       ("index", "index_bytes")):
        w, p = avg("wasmon", key), avg("prometheus", key)
        lines.append("| %s | %.3f | %.3f | %.2f |" % (label, w, p, w / p if p else float("nan")))
    lines.append("")
    wt, pt = by_type(steady(r["wasmon"])), by_type(steady(r["prometheus"]))
    lines.append("Chunk bytes per sample by metric type (steady-state blocks; framing included, "
                 "index excluded); wasmon's timestamp and value stream bits per sample:")
    lines.append("")
    lines.append("| type | samples | wasmon B/sample | prometheus B/sample | wasmon t bits | "
                 "wasmon v bits | wasmon value codes (chunks) |")
    lines.append("|---|---:|---:|---:|---:|---:|---|")
    for t, _ in TYPES + [("other", None)]:
        if t not in wt and t not in pt:
            continue
        w, p = wt.get(t), pt.get(t)
        ws = w["samples"] if w else 0
        codes = ", ".join("%s %d" % kv for kv in sorted(
            (w or {}).get("value_codes", {}).items(), key=lambda kv: -kv[1]))
        lines.append("| %s | %d | %s | %s | %s | %s | %s |" % (
            t, ws or (p["samples"] if p else 0),
            "%.3f" % (w["chunk_bytes"] / ws) if ws else "-",
            "%.3f" % (p["chunk_bytes"] / p["samples"]) if p and p["samples"] else "-",
            "%.2f" % (w["time_bits"] / ws) if ws else "-",
            "%.2f" % (w["value_bits"] / ws) if ws else "-", codes))
    lines.append("")
    lines.append("(%s)" % r["host"])
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=10000,
                    help="synthetic series (default 10000)")
    ap.add_argument("--scrape-interval", type=int, default=1,
                    help="scrape interval, seconds (default 1)")
    ap.add_argument("--block-duration", type=parse_duration, default=8 * 60,
                    help="block duration on both sides, e.g. 8m (default 8m: 480 samples "
                         "per series per block at 1 s)")
    ap.add_argument("--blocks", type=int, default=3,
                    help="run until each side has this many blocks (default 3: the partial "
                         "first one and two steady-state ones)")
    ap.add_argument("--timeout", type=int, default=45 * 60,
                    help="give up after this many seconds, reporting what there is "
                         "(default 2700)")
    ap.add_argument("--series-per-target", type=int, default=25000)
    ap.add_argument("--no-build", action="store_true",
                    help="use target/release/wasmon as it is")
    ap.add_argument("--wasmon", default=os.path.join(ROOT, "target", "release", "wasmon"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--from-json", metavar="FILE", help="only print the report of a saved --json")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            print(fmt_report(json.load(f)))
        return
    if args.block_duration < 60:
        sys.exit("bench: --block-duration must be at least 1m (wasmon's minimum)")
    if not args.no_build:
        log("cargo build --release -p wasmon")
        subprocess.run(["cargo", "build", "--release", "-p", "wasmon"], cwd=ROOT, check=True)
    for what, path in (("wasmon binary", args.wasmon), ("prometheus", args.prometheus)):
        if not os.path.exists(path):
            sys.exit("bench: %s not found at %s (see bench/README.md)" % (what, path))
    raise_on_sigterm()
    try:
        r = run(args)
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; every process stopped")
    if args.json:
        write(args.json, json.dumps(r, indent=1))
    print(fmt_report(r), flush=True)


if __name__ == "__main__":
    main()
