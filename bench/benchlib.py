"""What the bench drivers share (compare.py, blocks.py): process handling
that never leaves a server behind, polling, and small /proc and HTTP helpers.

Every server is started through Procs: in its own session (Ctrl-C reaches
only the driver, which then stops them in order), with PR_SET_PDEATHSIG so
the kernel stops it even if the driver is SIGKILLed. Python 3.11 stdlib only.
"""
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def wait_for(what, fn, timeout, proc=None):
    """Poll fn() until it returns truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s: process exited with %s" % (what, proc.returncode))
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
        time.sleep(0.3)
    raise RuntimeError("%s: not ready after %ss (last error: %s)" % (what, timeout, last))


def metric_value(url, name):
    """Sum of the samples of metric `name` (any labels) on a /metrics page."""
    total, seen = 0.0, False
    for line in http_get(url).decode().splitlines():
        if line.startswith("#"):
            continue
        key, _, rest = line.partition(" ")
        if key == name or key.startswith(name + "{"):
            total += float(rest.split()[0])
            seen = True
    if not seen:
        raise RuntimeError("%s: no metric %s" % (url, name))
    return total


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK



def die_with_parent():
    """Runs in the child before exec: the kernel sends it SIGTERM when the
    driver dies, even by SIGKILL, so no server outlives the bench (the
    children are in their own sessions so that Ctrl-C reaches only the
    driver, which then stops them in order)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Procs:
    """Every process the bench started; stopped in reverse order, by pid."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv, cwd=None):
        logf = open(os.path.join(self.workdir, name + ".log"), "wb")
        p = subprocess.Popen(argv, cwd=cwd, stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True,
                             preexec_fn=die_with_parent)
        p.bench_name = name
        p.bench_log = logf.name
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 15
        for p in reversed(self.procs):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def log_tails(self):
        """On a failed run: the end of each process' log, before stop_all forgets them."""
        for p in self.procs:
            log("--- %s log tail (%s):\n%s" % (p.bench_name, p.bench_log, tail(p.bench_log)))


@contextlib.contextmanager
def bench_run(prefix, keep=False):
    """A work directory and the Procs of a run: on the way out every process
    is stopped (with the end of each log shown when the run failed) and the
    directory removed, unless `keep`."""
    work = tempfile.mkdtemp(prefix=prefix)
    procs = Procs(work)
    try:
        yield work, procs
    except BaseException:
        procs.log_tails()
        raise
    finally:
        procs.stop_all()
        if keep:
            log("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def tail(path, n=15):
    with contextlib.suppress(OSError), open(path, "rb") as f:
        return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
    return ""


def write(path, text):
    with open(path, "w") as f:
        f.write(text)




def wasmon_binary(given=None):
    """The wasmon binary to run: `given` (--bin), else target/release, else
    target/debug; exits with what to do when there is none."""
    binary = given
    if binary is None:
        for profile in ("release", "debug"):
            candidate = os.path.join(ROOT, "target", profile, "wasmon")
            if os.path.exists(candidate):
                binary = candidate
                break
    if binary is None or not os.path.exists(binary):
        sys.exit("no wasmon binary: build one (cargo build --release -p wasmon) or pass --bin")
    return os.path.abspath(binary)


def raise_on_sigterm():
    """SIGTERM behaves like Ctrl-C: the driver unwinds through the finally
    blocks that stop every process."""
    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)


def host_line():
    """CPU count, load average and time: the conditions a run had."""
    return "host: %d CPUs, load average %s; %s" % (
        os.cpu_count(), " ".join("%.1f" % x for x in os.getloadavg()),
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
