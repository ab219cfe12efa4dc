"""Shared helpers for the benchmark scripts: the FMA peak probe, timing, child processes, tables.

Nothing here imports NumPy, PyTorch or cpuformer at module level: a benchmark parses its thread settings
and starts its children (each with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS set) before
any library that reads them at import time is loaded. Children write their records as JSON to a file the
parent names; the parent merges them and prints one markdown table.
"""

from __future__ import annotations

import json
import math
import os
import platform
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# Used only when no C compiler is available to measure the peak: the per-core fp32 FMA figures
# measured on the development machine (Xeon, 2 FMA ports at 512 bits).
FALLBACK_PEAK_GFLOPS = {"zmm": 174.0, "ymm": 90.0}

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_threads(text: str) -> list[int]:
    """'1,2' -> [1, 2]; raises ValueError on anything that is not a list of integers >= 1."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        n = int(part)
        if n < 1:
            raise ValueError(f"thread counts must be >= 1, got {n}")
        if n not in out:
            out.append(n)
    if not out:
        raise ValueError(f"no thread count in {text!r}")
    return out


def thread_env(threads: int) -> dict:
    """A copy of the environment with every threading library sized to ``threads``."""
    env = dict(os.environ)
    for var in THREAD_ENV_VARS:
        env[var] = str(threads)
    return env


def git_commit() -> str:
    """Short hash of HEAD, with '+dirty' when the sources that build the package have local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        commit = head.stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "cpp", "python", "CMakeLists.txt", "pyproject.toml"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if status.returncode == 0 and status.stdout.strip():
            commit += "+dirty"
        return commit
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------------------------------------------------
# CPU information and the FMA peak probe


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> Optional[float]:
    """The 1-minute load average (runnable processes, ours included), or None where unknown."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# 12 independent accumulators: enough to cover FMA latency (4 cycles) times two FMA ports with margin,
# so the loop runs at the issue limit. All registers start at zero: 0 * 0 + 0 never produces denormals
# (which could trigger microcode assists). Timed by the thread's CPU clock, so time spent descheduled on
# this shared machine does not count; the best of several trials is reported.
_PROBE_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FMA12(R) \
    "vfmadd231ps %%" R "30,%%" R "31,%%" R "0\n\t"  "vfmadd231ps %%" R "30,%%" R "31,%%" R "1\n\t" \
    "vfmadd231ps %%" R "30,%%" R "31,%%" R "2\n\t"  "vfmadd231ps %%" R "30,%%" R "31,%%" R "3\n\t" \
    "vfmadd231ps %%" R "30,%%" R "31,%%" R "4\n\t"  "vfmadd231ps %%" R "30,%%" R "31,%%" R "5\n\t" \
    "vfmadd231ps %%" R "30,%%" R "31,%%" R "6\n\t"  "vfmadd231ps %%" R "30,%%" R "31,%%" R "7\n\t" \
    "vfmadd231ps %%" R "30,%%" R "31,%%" R "8\n\t"  "vfmadd231ps %%" R "30,%%" R "31,%%" R "9\n\t" \
    "vfmadd231ps %%" R "30,%%" R "31,%%" R "10\n\t" "vfmadd231ps %%" R "30,%%" R "31,%%" R "11\n\t"

#define ZERO12 \
    "vxorps %%xmm0,%%xmm0,%%xmm0\n\t" "vxorps %%xmm1,%%xmm1,%%xmm1\n\t" "vxorps %%xmm2,%%xmm2,%%xmm2\n\t" \
    "vxorps %%xmm3,%%xmm3,%%xmm3\n\t" "vxorps %%xmm4,%%xmm4,%%xmm4\n\t" "vxorps %%xmm5,%%xmm5,%%xmm5\n\t" \
    "vxorps %%xmm6,%%xmm6,%%xmm6\n\t" "vxorps %%xmm7,%%xmm7,%%xmm7\n\t" "vxorps %%xmm8,%%xmm8,%%xmm8\n\t" \
    "vxorps %%xmm9,%%xmm9,%%xmm9\n\t" "vxorps %%xmm10,%%xmm10,%%xmm10\n\t" "vxorps %%xmm11,%%xmm11,%%xmm11\n\t"

#define CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
    "xmm11", "cc"

__attribute__((target("avx512f"), noinline)) static void loop_zmm(long n) {
    __asm__ volatile(
        ZERO12
        "vpxord %%zmm30,%%zmm30,%%zmm30\n\t"
        "vpxord %%zmm31,%%zmm31,%%zmm31\n\t"
        "1:\n\t"
        FMA12("zmm")
        "dec %0\n\t"
        "jnz 1b\n\t"
        : "+r"(n)
        :
        : CLOBBERS, "xmm30", "xmm31");
}

/* VEX-encoded: ymm12/ymm13 as sources (ymm30/31 would need AVX-512VL). */
__attribute__((target("avx2,fma"), noinline)) static void loop_ymm(long n) {
    __asm__ volatile(
        ZERO12
        "vxorps %%xmm12,%%xmm12,%%xmm12\n\t"
        "vxorps %%xmm13,%%xmm13,%%xmm13\n\t"
        "1:\n\t"
        "vfmadd231ps %%ymm12,%%ymm13,%%ymm0\n\t" "vfmadd231ps %%ymm12,%%ymm13,%%ymm1\n\t"
        "vfmadd231ps %%ymm12,%%ymm13,%%ymm2\n\t" "vfmadd231ps %%ymm12,%%ymm13,%%ymm3\n\t"
        "vfmadd231ps %%ymm12,%%ymm13,%%ymm4\n\t" "vfmadd231ps %%ymm12,%%ymm13,%%ymm5\n\t"
        "vfmadd231ps %%ymm12,%%ymm13,%%ymm6\n\t" "vfmadd231ps %%ymm12,%%ymm13,%%ymm7\n\t"
        "vfmadd231ps %%ymm12,%%ymm13,%%ymm8\n\t" "vfmadd231ps %%ymm12,%%ymm13,%%ymm9\n\t"
        "vfmadd231ps %%ymm12,%%ymm13,%%ymm10\n\t" "vfmadd231ps %%ymm12,%%ymm13,%%ymm11\n\t"
        "dec %0\n\t"
        "jnz 1b\n\t"
        "vzeroupper\n\t"
        : "+r"(n)
        :
        : CLOBBERS, "xmm12", "xmm13");
}

static double cpu_seconds(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0) clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s zmm|ymm ITERATIONS TRIALS\n", argv[0]);
        return 2;
    }
    int zmm = strcmp(argv[1], "zmm") == 0;
    long n = atol(argv[2]);
    int trials = atoi(argv[3]);
    double lanes = zmm ? 16.0 : 8.0;
    double best = 0.0;
    if (zmm) loop_zmm(n / 10); else loop_ymm(n / 10); /* warm-up: frequency license, page-in */
    for (int t = 0; t < trials; ++t) {
        double t0 = cpu_seconds();
        if (zmm) loop_zmm(n); else loop_ymm(n);
        double dt = cpu_seconds() - t0;
        double gflops = 12.0 * lanes * 2.0 * (double)n / dt * 1e-9;
        if (gflops > best) best = gflops;
    }
    printf("%.3f\n", best);
    return 0;
}
"""


def _peak_cache_path() -> str:
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"
    return os.path.join(tempfile.gettempdir(), f"cpuformer_bench_fma_peak_{host}.json")


def _run_probe() -> dict:
    """Compiles and runs the probe; {'zmm': GFLOP/s or None, 'ymm': ..., 'source': ...}."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return dict(FALLBACK_PEAK_GFLOPS, source="assumed (no C compiler found; constants, not measured)")
    with tempfile.TemporaryDirectory(prefix="cpuformer_fma_probe_") as tmp:
        src = os.path.join(tmp, "probe.c")
        exe = os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write(_PROBE_SOURCE)
        build = subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True, text=True, timeout=120)
        if build.returncode != 0:
            msg = (build.stderr.strip().splitlines() or ["?"])[0]
            return dict(FALLBACK_PEAK_GFLOPS, source=f"assumed (probe did not compile: {msg}; constants)")
        result = {}
        for reg in ("zmm", "ymm"):
            try:
                # ~40 ms per trial at the expected rate; best of 9.
                run = subprocess.run([exe, reg, "30000000", "9"], capture_output=True, text=True, timeout=120)
                result[reg] = float(run.stdout.strip()) if run.returncode == 0 else None  # SIGILL: no AVX-512
            except (subprocess.SubprocessError, ValueError):
                result[reg] = None
        result["source"] = f"measured (inline-asm probe, {cc})"
        return result


def fma_peak(refresh: bool = False) -> dict:
    """Per-core fp32 FMA peak in GFLOP/s for zmm and ymm, measured once per host and cached in a temp file."""
    path = _peak_cache_path()
    model = cpu_model()
    if not refresh:
        try:
            with open(path) as f:
                cached = json.load(f)
            if cached.get("cpu") == model and cached.get("version") == 1:
                cached["source"] += ", cached in " + path
                return cached
        except (OSError, ValueError):
            pass
    result = _run_probe()
    result.update(cpu=model, version=1)
    if result["source"].startswith("measured"):
        try:
            with open(path, "w") as f:
                json.dump(result, f)
        except OSError:
            pass
    return result


def per_core_peak(refresh: bool = False):
    """(peak dict, zmm used?, per-core GFLOP/s): the zmm peak where the probe could run AVX-512 (it
    records None for zmm where the CPU lacks it), else the ymm one."""
    peak = fma_peak(refresh=refresh)
    use_zmm = bool(peak.get("zmm"))
    return peak, use_zmm, peak["zmm"] if use_zmm else peak["ymm"]


# ---------------------------------------------------------------------------------------------------------
# Timing


def measure(
    fn: Callable[[], object],
    target_s: float,
    min_repeats: int,
    max_repeats: int = 100,
    warmup_s: float = 0.1,
    min_sample_s: float = 0.01,
) -> dict:
    """Times ``fn`` after a warm-up; per-call median and min over repeats.

    Calls that take less than ``min_sample_s`` are batched (``number`` calls per sample, as timeit does)
    so the clock's resolution and the loop overhead stay small; ``repeats`` is chosen so all samples take
    about ``target_s`` together, but never fewer than ``min_repeats``."""
    perf = time.perf_counter
    fn()
    t_end = perf() + warmup_s
    calls = 1
    while perf() < t_end or calls < 2:
        fn()
        calls += 1
    t0 = perf()
    fn()
    single = max(perf() - t0, 1e-9)
    number = max(1, math.ceil(min_sample_s / single))
    repeats = max(min_repeats, min(max_repeats, int(target_s / (single * number))))
    times = []
    for _ in range(repeats):
        t0 = perf()
        for _ in range(number):
            fn()
        times.append((perf() - t0) / number)
    return {"median_s": statistics.median(times), "min_s": min(times), "number": number, "repeats": repeats}


# ---------------------------------------------------------------------------------------------------------
# Children


def process_cpu_ns(pid: int) -> Optional[int]:
    """CPU time used so far by all threads of process ``pid``, in ns (Linux /proc); None where unknown."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # the thread ended meanwhile
    except OSError:
        return None
    return total


# A child is idle once its threads use less than this share of one core over a poll interval.
IDLE_SHARE, IDLE_POLL_S, IDLE_MAX_WAIT_S = 0.05, 0.002, 2.0


def wait_until_idle(pids: list) -> float:
    """Waits (at most IDLE_MAX_WAIT_S) until the processes ``pids`` stop using CPU; returns the seconds waited.

    A thread pool may spin for a while after its call returned (libgomp's for a spin count; ONNX
    Runtime's workers kept the CPU busy for 34 ms after the base encoder's warm-up call): spinning beside
    the next implementation's call, it would take cores from it."""
    start = time.perf_counter()
    last = [process_cpu_ns(p) for p in pids]
    if not pids or any(x is None for x in last):
        return 0.0
    while time.perf_counter() - start < IDLE_MAX_WAIT_S:
        t0 = time.perf_counter()
        time.sleep(IDLE_POLL_S)
        now = [process_cpu_ns(p) for p in pids]
        if any(x is None for x in now):
            break
        busy_ns = sum(b - a for a, b in zip(last, now))
        if busy_ns < IDLE_SHARE * (time.perf_counter() - t0) * 1e9:
            break
        last = now
    return time.perf_counter() - start


class Child:
    """One implementation at one thread count, in its own interpreter, answering requests in turn.

    Started with ``script --child CONFIG`` and the thread variables set in its environment. The protocol is
    one JSON line per message on its stdout: first ``{"info": ...}`` (or ``{"error": ...}`` when the
    implementation cannot be imported), then one reply per request line written to its stdin. Only one
    child computes at a time: a request is sent once every other live child has stopped using CPU
    (wait_until_idle: thread pools that spin after a call would take cores from this one), so the parent
    can interleave implementations shape by shape and a busy spell on the machine hits them alike.
    stderr goes to a temporary file (quoted when the child fails) or, with ``verbose``, to ours."""

    _live: list = []  # every child not yet closed, of every benchmark in this process

    def __init__(self, script: str, impl: str, threads: int, config: dict, verbose: bool = False):
        self.impl, self.threads = impl, threads
        self.error: Optional[str] = None
        self.info: dict = {}
        self._log = None if verbose else tempfile.TemporaryFile(mode="w+")
        cmd = [sys.executable, script, "--child", json.dumps({"impl": impl, "threads": threads, **config})]
        self._proc = subprocess.Popen(
            cmd, env=thread_env(threads), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, text=True, bufsize=1,
        )
        Child._live.append(self)
        hello = self._read(timeout=300.0)
        if hello is None:
            self.close()
        elif hello.get("error"):
            self.error = hello["error"]
            self.close()
        else:
            self.info = hello.get("info", {})

    @property
    def alive(self) -> bool:
        return self.error is None and self._proc.poll() is None

    def _stderr_tail(self) -> str:
        if self._log is None:
            return "see stderr above"
        try:
            self._log.seek(0)
            lines = [ln for ln in self._log.read().strip().splitlines() if ln.strip()]
            return lines[-1] if lines else "no message"
        except (OSError, ValueError):
            return "no message"

    def _read(self, timeout: float) -> Optional[dict]:
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if ready else ""
        if not ready:
            self.error = f"no answer within {timeout:.0f} s"
            return None
        if not line:
            code = self._proc.wait()
            self.error = f"exited with code {code} ({self._stderr_tail()})"
            return None
        try:
            return json.loads(line)
        except ValueError:
            self.error = f"unreadable reply {line[:80]!r}"
            return None

    def request(self, message: dict, timeout: float = 600.0) -> Optional[dict]:
        """Sends one request; the reply, or None (and ``self.error`` set) when the child failed."""
        if not self.alive:
            return None
        wait_until_idle([c._proc.pid for c in Child._live if c is not self and c._proc.poll() is None])
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except OSError:
            self._proc.wait()
            self.error = f"exited with code {self._proc.returncode} ({self._stderr_tail()})"
            return None
        reply = self._read(timeout)
        if reply is None:
            self.close()
        return reply

    def close(self) -> None:
        if self in Child._live:
            Child._live.remove(self)
        proc = self._proc
        if proc.poll() is None:
            try:
                proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                proc.stdin.flush()
                proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        for f in (proc.stdin, proc.stdout, self._log):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        self._log = None


def child_channel():
    """For a child: a private text stream on the original stdout for protocol messages, with fd 1 pointed
    at stderr so that anything a library prints cannot corrupt the protocol."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def send(proto, message: dict) -> None:
    proto.write(json.dumps(message) + "\n")
    proto.flush()


def start_child(proto, impl: str, threads: int, setup):
    """For a child: runs setup() (which returns a tuple ending in the implementation's info dict) and tells
    the parent how it went. Returns setup's result, or None once the parent has been told why not (a
    library that is not installed, a model that does not load): the other implementations go on."""
    try:
        result = setup()
    except ImportError as e:
        send(proto, {"error": f"not available ({e})"})
        return None
    except Exception as e:  # noqa: BLE001  (say so; the parent shows n/a)
        send(proto, {"error": f"setup failed: {type(e).__name__}: {e}"})
        return None
    info = result[-1]
    if info.get("active_threads") not in (None, threads):
        print(f"warning: {impl} runs {info['active_threads']} threads, asked for {threads}", file=sys.stderr)
    return result


# ---------------------------------------------------------------------------------------------------------
# Tables


def markdown_table(header: list, rows: list, align: Optional[list] = None) -> str:
    align = align or ["l"] * len(header)
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def fmt(row):
        return "| " + " | ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([fmt(cells[0]), sep] + [fmt(r) for r in cells[1:]])


def fmt_num(x: Optional[float], digits: int = 1) -> str:
    if x is None:
        return "n/a"
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


# ---------------------------------------------------------------------------------------------------------
# Memory


def peak_rss_mb() -> Optional[float]:
    """This process's peak resident set size (ru_maxrss) in MiB, or None where unknown."""
    try:
        import resource
    except ImportError:
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0  # bytes on macOS, KiB on Linux
