"""Profile one llm-api worker under load, to compare before and after a change.

    .venv/bin/python scripts/bench/profile_gateway.py --label before [--duration 10] [--tool pyinstrument|py-spy]
        [--stream] [--conversation] [--concurrency 1]

Starts the fake upstream, a fresh database and ``llm-api serve --workers 1`` (the settings of run.py),
logs in a guest, warms up for 2 s, then profiles the worker while driving ``--duration`` seconds of
load (non-streamed at c=1 by default: the per-request cost, with nothing queued):

* ``--tool pyinstrument`` (default): pyinstrument inside the worker (serve_profiled.py), switched on
  for the load only. Writes results/profile-<label>.txt (the call tree; time in ``select`` is the
  event loop waiting: idle), .html (interactive) and .pyisession (re-render with
  ``.venv/bin/pyinstrument --load FILE -r text --show-all`` to see inside libraries).
* ``--tool py-spy``: py-spy attached to the worker for the load only (sampling from outside the
  process: no overhead in it, native frames folded away, idle waits left out). Writes
  results/profile-<label>-pyspy.txt (the functions with most samples, self and inclusive) and
  -pyspy.collapsed (the raw stacks; any flame-graph tool, e.g. speedscope, reads them).

The load's own figures (rps, p50) are printed and put at the top of the text file: a profiler slows
the worker, so compare profiles with profiles and take speed from run.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h


def start_profiled_gateway(env: dict[str, str], tool: str, out: Path) -> h.Server:
    if tool == "pyinstrument":
        argv = [sys.executable, str(h.BENCH / "serve_profiled.py")]
        env = {**env, "BENCH_PROFILE_OUT": str(out)}
    else:
        argv = [str(h.VENV_BIN / "llm-api"), "serve", "--workers", "1"]
    server = h.start_process("llm-api-profiled", argv, int(env["HTTP_PORT"]), env=env, cwd=h.LOGS)
    h.wait_healthy(server, f"http://127.0.0.1:{server.port}/v1/healthz", timeout=60)
    return server


def profile_load(server: h.Server, tool: str, out: Path, run_load) -> dict:
    """Run the load with the profiler on; the load's summary."""
    if tool == "pyinstrument":
        for suffix in (".txt", ".html", ".pyisession"):
            Path(str(out) + suffix).unlink(missing_ok=True)
        os.kill(server.pid, signal.SIGUSR1)
        result = run_load()
        os.kill(server.pid, signal.SIGUSR2)
        _wait_for(Path(str(out) + ".txt"), server)
        return result
    spy = shutil.which("py-spy") or str(h.VENV_BIN / "py-spy")
    collapsed = Path(str(out) + "-pyspy.collapsed")
    recorder = subprocess.Popen(
        [spy, "record", "--pid", str(server.pid), "--rate", "1000", "--format", "raw", "--output", str(collapsed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # attaching takes a moment
    result = run_load()
    recorder.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    _, err = recorder.communicate(timeout=60)
    if not collapsed.exists():
        raise RuntimeError(f"py-spy wrote nothing: {err.strip()[-1000:]}")
    return result


def _wait_for(path: Path, server: h.Server, timeout: float = 120) -> None:
    deadline = time.perf_counter() + timeout
    while not path.exists():
        if time.perf_counter() > deadline or server.popen.poll() is not None:
            raise RuntimeError(f"no profile written to {path}:\n{server.log_tail()}")
        time.sleep(0.1)
    time.sleep(0.2)  # the file is written in one call; let it finish


def summarise_collapsed(collapsed: Path, top: int = 40) -> str:
    """The functions with most samples, self (the leaf frame) and inclusive (anywhere in the stack)."""
    own, inclusive, total = Counter(), Counter(), 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [
        f"{total} samples at 1 kHz (py-spy leaves out most idle waits; what remains in select() is the event loop waiting)",
        "",
        "self:",
    ]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = _parser().parse_args()
    h.RESULTS.mkdir(parents=True, exist_ok=True)
    out = h.RESULTS / f"profile-{args.label}"
    kind = "python" if args.stream else "wrk"

    with ExitStack() as stack:
        upstream = h.start_fake_upstream(h.free_port())
        stack.callback(upstream.stop)
        dsn = stack.enter_context(h.fresh_database(args.dsn))
        env = h.gateway_env(port=h.free_port(), dsn=dsn, secret="bench-" + "k" * 40, upstream_port=upstream.port)
        server = start_profiled_gateway(env, args.tool, out)
        stack.callback(server.stop)

        base = f"http://127.0.0.1:{server.port}"
        status, login = h.http("POST", f"{base}/auth/guest-login")
        if status != 201:
            raise RuntimeError(f"guest login answered {status}: {login}")
        token = login["access_token"]
        conversation = None
        if args.conversation:
            conversation = h.http("POST", f"{base}/v1/conversations", {"title": "profile"}, token)[1]["id"]
        requests = h.write_requests(
            h.LOGS / "requests-profile.tsv",
            [(token, h.chat_body(h.GATEWAY_MODEL, stream=args.stream, conversation=conversation))],
        )
        url = f"{base}/v1/chat/completions"
        h.start_load(kind, url, requests, args.concurrency, 2).result()  # warm-up, not profiled

        result = profile_load(
            server, args.tool, out, lambda: h.start_load(kind, url, requests, args.concurrency, args.duration).result()
        )

    header = (
        f"# llm-api profile '{args.label}' ({args.tool}): {'streamed' if args.stream else 'non-streamed'}, "
        f"c={args.concurrency}, {'with' if args.conversation else 'without'} conversation, {args.duration} s\n"
        f"# load under the profiler: {result['rps']:.0f} rps, p50 {result['latency_ms']['p50']:.3f} ms, "
        f"p99 {result['latency_ms']['p99']:.3f} ms, errors {result['errors'] or 0}\n\n"
    )
    if args.tool == "pyinstrument":
        text_path = Path(str(out) + ".txt")
        text_path.write_text(header + text_path.read_text())
        written = [text_path, Path(str(out) + ".html"), Path(str(out) + ".pyisession")]
    else:
        collapsed = Path(str(out) + "-pyspy.collapsed")
        text_path = Path(str(out) + "-pyspy.txt")
        text_path.write_text(header + summarise_collapsed(collapsed))
        written = [text_path, collapsed]
    print(header.strip())
    print("written: " + ", ".join(str(p) for p in written))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="names the output: results/profile-<label>.*")
    parser.add_argument("--duration", type=int, default=10, help="seconds of profiled load (default 10)")
    parser.add_argument("--tool", choices=["pyinstrument", "py-spy"], default="pyinstrument")
    parser.add_argument("--stream", action="store_true", help="streamed requests (loadgen.py) instead of plain ones (wrk)")
    parser.add_argument("--conversation", action="store_true", help="store each exchange in a conversation")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--dsn", default=h.DEFAULT_ADMIN_DSN, help="where to create the scratch database")
    return parser


if __name__ == "__main__":
    main()
