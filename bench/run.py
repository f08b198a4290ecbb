"""`make bench`: the real HTTP API under wrk, next to the ceilings it is measured against, in one run.

Four targets run side by side (all started first, then measured in interleaved rounds, so background load on a
shared machine hits them alike):
  1. bare      — bench.bare: a minimal FastAPI charge endpoint (pydantic body), same uvicorn settings;
  2. embedded  — `python -m payments_embedded`: POST /api/v1/payments/charge on the sandbox, end to end;
  3. broker    — bench.bare's endpoint doing one request/reply over RabbitMQ to a worker that answers at once;
  4. services  — `python -m payments_gateway` + `python -m payments_transactions` over RabbitMQ, one SQLite file.
Each figure is the median of `--runs` wrk runs (c=32). Then embedded and services are driven at half their
measured peak by wrk with a pacing Lua script (bench/charge_paced.lua) for the p99 at half peak. RabbitMQ
targets use a fresh virtual host, deleted afterwards. Prints a Markdown table (the README's Performance section).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import idle
from tests.support.rabbitmq import fresh_vhost

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python")
CHARGE_PATH = "/api/v1/payments/charge"
CHARGE_BODY = b'{"amount":1099,"currency":"usd","payment_method":"pm_card_visa"}'
JWT_SECRET = "bench-secret-" + uuid.uuid4().hex  # this run's own; never a real one
WORKSPACE = "ws_bench"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672"
READY_TIMEOUT_S = 60.0
WRK_THREADS = 2
# Targets on this 2-core machine (issue 10).
TARGET_EMBEDDED_RATIO = 0.40
TARGET_SERVICES_RATIO = 0.70
TARGET_HALF_PEAK_P99_MS = 50.0
TARGET_RSS_MB = 150.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Process:
    name: str
    pid: int
    popen: subprocess.Popen[bytes] | None = None  # None: not ours, only watched (RabbitMQ)

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def peak_rss_mb(self) -> float:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return float("nan")
        found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        return int(found.group(1)) / 1024 if found else float("nan")


@dataclass
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu: dict[str, float]  # share of one core per process during the run
    wrk_cpu: float
    machine_busy: float  # share of all cores busy (every process on the machine)
    late: int = 0
    lag_max_ms: float = 0.0


@dataclass
class Target:
    key: str
    title: str
    port: int
    processes: list[Process] = field(default_factory=list)
    watched: list[Process] = field(default_factory=list)  # not ours, but its CPU share tells what bounds a run
    runs: list[Run] = field(default_factory=list)
    half_peak: list[Run] = field(default_factory=list)

    def median(self, attribute: str, runs: Sequence[Run] | None = None) -> float:
        values = [getattr(run, attribute) for run in (self.runs if runs is None else runs)]
        return statistics.median(values) if values else float("nan")


# ---- processes -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_process(name: str, arguments: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log = (log_dir / f"{name}.log").open("wb")
    popen = subprocess.Popen(arguments, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Process(name, popen.pid, popen)


def rabbitmq_process() -> Process | None:
    """The local RabbitMQ node, watched for its CPU share during the broker-bound runs: the oldest Erlang VM
    (each `rabbitmqctl` call, ours or another user's, briefly runs one of its own)."""
    found: list[tuple[int, int]] = []  # (start time, pid)
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if comm.read_text().strip() == "beam.smp":
                stat = (comm.parent / "stat").read_text().rsplit(")", 1)[1].split()
                found.append((int(stat[19]), int(comm.parent.name)))
    return Process("rabbitmq", min(found)[1]) if found else None


def stop(processes: Sequence[Process]) -> None:
    ours = [process.popen for process in reversed(processes) if process.popen is not None]
    for popen in ours:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
    for popen in ours:
        try:
            popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def base_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PAYMENTS_", "RATE_LIMIT_"))}
    env.update(
        PAYMENTS_JWT_SECRET=JWT_SECRET,
        # The write budget is a per-workspace business limit (120/minute by default); the bench lifts it so
        # that it measures throughput, not the limiter (which still runs on every request).
        RATE_LIMIT_WRITE="1000000/second",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def mint_token() -> str:
    result = subprocess.run(
        [str(VENV_BIN / "payments-ops"), "token", "create", "--workspace", WORKSPACE, "--permissions",
         "payments:admin", "--sub", "bench", "--ttl", "7200"],
        env=base_env(), capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return result.stdout.strip()


def charge_once(port: int, token: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{CHARGE_PATH}",
        data=CHARGE_BODY,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": f"bench-ready-{uuid.uuid4().hex}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def wait_ready(target: Target, token: str) -> None:
    """Ready = a charge answered 201 (so the worker behind it consumes too)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for process in target.processes:
            if process.popen is not None and process.popen.poll() is not None:
                raise SystemExit(f"bench: {process.name} exited with {process.popen.returncode} (see its log)")
        if charge_once(target.port, token) == 201:
            return
        time.sleep(0.3)
    raise SystemExit(f"bench: {target.title} did not answer a charge with 201 within {READY_TIMEOUT_S:.0f}s")


def start_targets(workdir: Path, broker_url: str, started: list[Process]) -> list[Target]:
    """Every target's processes, each also put on `started` as soon as it runs (so a failure stops it)."""
    logs = workdir / "logs"
    logs.mkdir()

    def start(name: str, arguments: list[str], env: dict[str, str], log_dir: Path) -> Process:
        started.append(start_process(name, arguments, env, log_dir))
        return started[-1]

    bare = Target("bare", "1. bare ceiling (FastAPI + pydantic)", free_port())
    bare.processes.append(start("bare", [PYTHON, "-m", "bench.bare", "serve"], base_env(PORT=str(bare.port)), logs))

    embedded = Target("embedded", "2. embedded mode (charge, end to end)", free_port())
    embedded_dir = workdir / "embedded"
    embedded_env = base_env(PORT=str(embedded.port), DATA_DIR=str(embedded_dir), BROKER_URL="memory://")
    embedded_env.pop("EVENTSTORE_URI", None)
    embedded.processes.append(start("embedded", [PYTHON, "-m", "payments_embedded"], embedded_env, logs))

    broker = Target("broker", "3. broker ceiling (RPC over RabbitMQ)", free_port())
    broker_env = base_env(PORT=str(broker.port), BROKER_URL=broker_url)
    broker.processes.append(start("echo-worker", [PYTHON, "-m", "bench.bare", "worker"], broker_env, logs))
    broker.processes.append(start("rpc-endpoint", [PYTHON, "-m", "bench.bare", "rpc"], broker_env, logs))

    services = Target("services", "4. services mode (gateway + transactions)", free_port())
    services_dir = workdir / "services"
    services_dir.mkdir()
    store = f"sqlite:///{services_dir / 'events.db'}"
    common = {"DATA_DIR": str(services_dir), "BROKER_URL": broker_url, "EVENTSTORE_URI": store}
    worker_env = base_env(PORT=str(free_port()), **common)
    services.processes.append(start("transactions", [PYTHON, "-m", "payments_transactions"], worker_env, logs))
    gateway_env = base_env(PORT=str(services.port), **common)
    services.processes.append(start("gateway", [PYTHON, "-m", "payments_gateway"], gateway_env, logs))
    rabbitmq = rabbitmq_process()
    if rabbitmq is not None:
        broker.watched.append(rabbitmq)
        services.watched.append(rabbitmq)
    return [bare, embedded, broker, services]


# ---- measuring -------------------------------------------------------------------------------------------------


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all cores, from /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_wrk(output: str) -> dict[str, int]:
    line = next((line for line in output.splitlines() if line.startswith("BENCH ")), None)
    if line is None:
        raise SystemExit(f"bench: wrk printed no summary:\n{output}")
    return {key: int(value) for key, value in (pair.split("=") for pair in line.split()[1:])}


def wrk(target: Target, token: str, seconds: int, connections: int, rate: float | None = None) -> Run:
    script = "charge_paced.lua" if rate else "charge.lua"
    env = dict(os.environ, BENCH_TOKEN=token, BENCH_THREADS=str(WRK_THREADS), BENCH_RATE=str(rate or 0))
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
               "-s", str(BENCH_DIR / script), f"http://127.0.0.1:{target.port}/"]  # fmt: skip
    observed = target.processes + target.watched
    cpu_before = {process.name: process.cpu_seconds() for process in observed}
    busy_before, total_before = machine_ticks()
    wrk_before, started = children_cpu_seconds(), time.monotonic()
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        exited = [p.name for p in target.processes if p.popen is not None and p.popen.poll() is not None]
        raise SystemExit(f"bench: wrk failed on {target.key} (exit {finished.returncode}; exited processes: "
                         f"{exited or 'none'}):\n{finished.stdout}{finished.stderr}")  # fmt: skip
    output = finished.stdout
    elapsed = time.monotonic() - started
    busy_after, total_after = machine_ticks()
    figures = parse_wrk(output)
    errors = sum(figures[key] for key in ("non2xx", "connect", "read", "write", "timeout"))
    return Run(
        rate=figures["requests"] / (figures["duration_us"] / 1e6),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        errors=errors,
        cpu={p.name: (p.cpu_seconds() - cpu_before[p.name]) / elapsed for p in observed},
        wrk_cpu=(children_cpu_seconds() - wrk_before) / elapsed,
        machine_busy=(busy_after - busy_before) / max(1, total_after - total_before),
        late=figures.get("late", 0),
        lag_max_ms=figures.get("lag_max_us", 0) / 1000,
    )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(targets: list[Target], token: str, args: argparse.Namespace) -> None:
    for target in targets:
        wrk(target, token, args.warmup, args.connections)  # warm-up: connections, caches, first file growth
    for round_number in range(1, args.runs + 1):
        for target in targets:
            run = wrk(target, token, args.duration, args.connections)
            target.runs.append(run)
            log(f"bench: round {round_number} {target.key:9s} {run.rate:7.0f} req/s  p50 {run.p50_ms:6.1f} ms  "
                f"p99 {run.p99_ms:6.1f} ms  errors {run.errors}  machine busy {run.machine_busy:.0%}")  # fmt: skip
    for target in targets:
        if target.key not in ("embedded", "services"):
            continue
        half = target.median("rate") / 2
        for _ in range(args.runs):
            run = wrk(target, token, args.duration, args.connections, rate=half)
            target.half_peak.append(run)
            log(f"bench: half peak {target.key:9s} at {half:5.0f}/s: got {run.rate:5.0f}/s  p99 {run.p99_ms:6.1f} ms  "
                f"late sends {run.late} (max lag {run.lag_max_ms:.1f} ms)")  # fmt: skip


# ---- the report ------------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def cpu_text(target: Target) -> str:
    names = [process.name for process in target.processes + target.watched]
    parts = [f"{name} {statistics.median(run.cpu[name] for run in target.runs):.0%}" for name in names]
    parts.append(f"wrk {statistics.median(run.wrk_cpu for run in target.runs):.0%}")
    return ", ".join(parts)


def cpu_ms_per_request(name: str, runs: Sequence[Run]) -> float:
    """Median CPU milliseconds `name` spent per request answered, over `runs`."""
    return statistics.median(1000 * run.cpu[name] / run.rate for run in runs if run.rate > 0)


def cpu_per_request_lines(targets: Sequence[Target]) -> list[str]:
    """What one request costs each process at full load and at half peak: the gap is what lighter load loses to
    smaller group commits and batches, more event-loop turns and thread wake-ups per request."""
    lines = ["| CPU ms per request | full load | half peak | |", "|---|---:|---:|---:|"]
    for target in targets:
        for process in target.processes + target.watched:
            full = cpu_ms_per_request(process.name, target.runs)
            half = cpu_ms_per_request(process.name, target.half_peak)
            ratio = f"{half / full:.1f}×" if full > 0 else "–"  # a watched process may use no measurable CPU
            lines.append(f"| {target.key}: {process.name} | {full:.2f} | {half:.2f} | {ratio} |")
    return lines


def report(targets: dict[str, Target], args: argparse.Namespace) -> str:
    lines = [
        f"wrk -t{WRK_THREADS} -c{args.connections} -d{args.duration}s, median of {args.runs} runs "
        f"(`make bench`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores)",
        "",
        "| mode | req/s | p50 ms | p99 ms | runs (req/s) | CPU per process (1 core = 100%) | peak RSS MB |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for target in targets.values():
        runs = " / ".join(f"{run.rate:.0f}" for run in target.runs)
        errors = sum(run.errors for run in target.runs)
        rss = ", ".join(f"{p.name} {p.peak_rss_mb():.0f}" for p in target.processes)
        lines.append(
            f"| {target.title}{f' ({errors} errors!)' if errors else ''} | {target.median('rate'):.0f} | "
            f"{target.median('p50_ms'):.1f} | {target.median('p99_ms'):.1f} | {runs} | {cpu_text(target)} | {rss} |"
        )
    bare, embedded, broker, services = (targets[key] for key in ("bare", "embedded", "broker", "services"))
    embedded_ratio = embedded.median("rate") / bare.median("rate")
    services_ratio = services.median("rate") / broker.median("rate")
    lines += ["", "| figure | measured | target | |", "|---|---:|---:|---|"]
    lines.append(f"| embedded / bare (2/1) | {embedded_ratio:.2f} | ≥ {TARGET_EMBEDDED_RATIO:.2f} | "
                 f"{verdict(embedded_ratio >= TARGET_EMBEDDED_RATIO)} |")  # fmt: skip
    lines.append(f"| services / broker (4/3) | {services_ratio:.2f} | ≥ {TARGET_SERVICES_RATIO:.2f} | "
                 f"{verdict(services_ratio >= TARGET_SERVICES_RATIO)} |")  # fmt: skip
    for target in (embedded, services):
        p99 = target.median("p99_ms", target.half_peak)
        got = target.median("rate", target.half_peak)
        late = sum(run.late for run in target.half_peak)
        lines.append(
            f"| {target.key}: p99 at half peak ({got:.0f} req/s; {late} late sends) | {p99:.1f} ms | "
            f"≤ {TARGET_HALF_PEAK_P99_MS:.0f} ms | {verdict(p99 <= TARGET_HALF_PEAK_P99_MS)} |"
        )
    worst = max((p for t in targets.values() if t.key in ("embedded", "services") for p in t.processes),
                key=lambda p: p.peak_rss_mb())  # fmt: skip
    lines.append(f"| largest peak RSS of the system's processes ({worst.name}) | {worst.peak_rss_mb():.0f} MB | "
                 f"≤ {TARGET_RSS_MB:.0f} MB | {verdict(worst.peak_rss_mb() <= TARGET_RSS_MB)} |")  # fmt: skip
    lines += ["", *cpu_per_request_lines([embedded, services])]
    busy = statistics.median(run.machine_busy for t in targets.values() for run in t.runs)
    lines += ["", f"Machine CPU busy during the runs (all processes, median): {busy:.0%}. "
              "Absolute figures vary with the machine's load; the ratios are taken within one run."]  # fmt: skip
    lines += ["", idle.report_line()]
    return "\n".join(lines)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per target (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, SQLite files)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_arguments(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is not installed (bench/run.sh installs it: apt-get install -y wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="payments-bench-"))
    token = mint_token()
    processes: list[Process] = []
    try:
        with fresh_vhost(RABBITMQ, prefix="bench") as broker_url:
            targets = start_targets(workdir, broker_url, processes)
            for target in targets:
                wait_ready(target, token)
            log(f"bench: every target answers; working directory {workdir}")
            measure(targets, token, args)
            table = report({target.key: target for target in targets}, args)
            stop(processes)
    finally:
        stop(processes)
        if args.keep:
            log(f"bench: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table)


if __name__ == "__main__":
    main()
