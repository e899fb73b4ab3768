"""What run.py and profile_gateway.py share: servers started and stopped, a fresh database, the load
clients, and per-process measurements read from /proc (CPU time, RSS/PSS, connections).

Only the standard library and psycopg2 (a dependency of llm-api, so in .venv) are used, so that the
orchestrating process stays small and does not perturb what it measures.
"""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "scripts" / "bench"
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs"
VENV_BIN = ROOT / ".venv" / "bin"
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_LITELLM = Path("/work/bench-venvs/litellm/bin/litellm")
DEFAULT_PORTKEY = Path("/work/bench-node/node_modules/.bin/gateway")  # npm install @portkey-ai/gateway
UPSTREAM_MODEL = "bench-model"
GATEWAY_MODEL = "vllm/bench-model"  # the public id llm-api gives the fake's model
LITELLM_KEY = "sk-bench-master-key"
DEFAULT_MAX_TOKENS = 100  # above the fake's 20 words: run.py's answers are the fake's --chunks long
CLOCK_TICK = os.sysconf("SC_CLK_TCK")

# urllib must never go through a proxy from the environment: every target is on this machine.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- small helpers ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http(
    method: str,
    url: str,
    body: dict | None = None,
    token: str | None = None,
    timeout: float = 10,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict | str]:
    """(status, parsed JSON or text) of one request; (0, reason) when nothing answered."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with _http.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (OSError, urllib.error.URLError) as error:
        return 0, str(error)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def chat_body(model: str, *, stream: bool, conversation: str | None = None, max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    """The request every target gets: a short user message; streams ask for the usage chunk.
    The fake upstream answers ``min(max_tokens, its --chunks)`` words (content chunks when streamed)."""
    body: dict = {"model": model, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if conversation is not None:
        body["conversation"] = conversation
    return body


# --- /proc ------------------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces): state, ppid, ...; [] if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (0 when it is gone)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK if fields else 0.0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def memory_mb(pid: int) -> dict[str, float | None]:
    """RSS (what `ps` shows; pages shared with a forking parent count in full) and PSS (shared pages
    divided among their sharers: the fair share of a pre-forked worker), in MB."""
    rss = pss = None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    except OSError:
        pass
    return {"rss_mb": rss, "pss_mb": pss}


def postgres_backends(dbname: str) -> list[int]:
    """PostgreSQL's server processes for connections to ``dbname`` (their title names the database)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            title = cmdline(int(entry.name))
            if title.startswith("postgres: ") and f" {dbname} " in title:
                found.append(int(entry.name))
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICK


def established_connections(pids: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections to local ``port`` each process holds.

    With a shared listening socket, which worker accepts a connection is decided once, when it is
    opened: a client with few keep-alive connections can pin all its load on one worker. This shows it.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # ESTABLISHED, local port
                inodes.add(cols[9])
    counts = {}
    for pid in pids:
        count = 0
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    link = os.readlink(fd)
                except OSError:
                    continue
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    count += 1
        except OSError:
            pass
        counts[pid] = count
    return counts


# --- servers ----------------------------------------------------------------------------------------------------

# Helper processes some servers fork that serve no request (multiprocessing's resource tracker).
_HELPERS = re.compile(r"resource_tracker|semaphore_tracker|forkserver")


@dataclass
class Server:
    """A server process we started (in its own session, so its whole process group can be ended)."""

    name: str
    popen: subprocess.Popen
    port: int
    log_path: Path
    started_at: float
    healthy_after: float | None = None
    notes: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def workers(self) -> list[int]:
        """The processes that serve requests: the children that are not helpers, or the process itself."""
        served = [pid for pid in children(self.pid) if not _HELPERS.search(cmdline(pid))]
        return served or [self.pid]

    def processes(self) -> dict[int, str]:
        """Every process of the server with its role (master, worker or helper)."""
        roles = {pid: ("helper" if _HELPERS.search(cmdline(pid)) else "worker") for pid in children(self.pid)}
        return {self.pid: "master" if any(r == "worker" for r in roles.values()) else "worker", **roles}

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 15) -> None:
        """SIGTERM (servers drain and stop their workers); SIGKILL to the group after ``grace`` s."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # leftovers of this server's own group only
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait()


def stop_on_sigterm() -> None:
    """SIGTERM ends the script as Ctrl-C does, through its ``finally`` blocks: everything it started
    (servers, load clients, the scratch database) is stopped, not orphaned."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def start_process(name: str, argv: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None) -> Server:
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{name}.log"
    log = log_path.open("w")
    started = time.perf_counter()
    popen = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True
    )
    log.close()  # the child has its own descriptor
    return Server(name, popen, port, log_path, started)


def started(server: Server, url: str, timeout: float) -> Server:
    """``server`` once ``url`` answers 200; stopped when it does not (nor on Ctrl-C): never left behind."""
    try:
        wait_healthy(server, url, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_healthy(server: Server, url: str, timeout: float) -> float:
    """Seconds from the server's start to the first 200 from ``url``; raises when it dies or times out."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if server.popen.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.popen.returncode}:\n{server.log_tail()}")
        status, _ = http("GET", url, timeout=1)
        if status == 200:
            server.healthy_after = time.perf_counter() - server.started_at
            return server.healthy_after
        time.sleep(0.01)
    raise RuntimeError(f"{server.name} not healthy at {url} after {timeout} s:\n{server.log_tail()}")


def start_fake_upstream(
    port: int, workers: int = 1, chunks: int = 20, name: str = "fake-upstream", chunk_interval: float = 0.0
) -> Server:
    server = start_process(
        name,
        [
            sys.executable,
            str(BENCH / "fake_upstream.py"),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--chunks",
            str(chunks),
            "--chunk-interval",
            str(chunk_interval),
        ],
        port,
    )
    return started(server, f"http://127.0.0.1:{port}/v1/models", timeout=10)


def _gateway_variables() -> set[str]:
    """Names of llm-api's settings, so that none leaks in from the caller's environment."""
    try:
        from llm_api.config import Settings

        return {f.alias for f in Settings.model_fields.values() if f.alias}
    except Exception:
        return set()


def gateway_env(*, port: int, dsn: str, secret: str, upstream_port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """llm-api's default settings but for what the benchmark needs: an external database, the fake
    upstream as the vLLM provider, quiet logs, and a rate limit that is on but never reached."""
    drop = _gateway_variables()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in drop
        and not k.lower().endswith("_proxy")
        and not k.startswith(("OPENAI_", "ANTHROPIC_", "VLLM_", "OLLAMA_", "OTEL_", "KEYCLOAK_", "DB_", "LLM_API_"))
    }
    env.update(
        {
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
            "DB_POSTGRESQL_WRITE_DSN": dsn,
            "LLM_API_SECRET_KEY": secret,
            "VLLM_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
            "LOG_LEVEL": "warning",
            "RATE_LIMIT_PER_MINUTE": "100000000",
        }
    )
    env.update(extra or {})
    return env


def start_gateway(
    env: dict[str, str],
    workers: int,
    name: str = "llm-api",
    wrapper: list[str] | None = None,
    health_timeout: float = 60,
    executable: Path | None = None,
) -> Server:
    """``llm-api serve --workers N``; returns once /v1/healthz answers (``healthy_after`` is set).
    ``executable``: another build's ``llm-api`` (an older checkout's virtualenv) instead of this one's."""
    argv = [str(executable or VENV_BIN / "llm-api"), "serve", "--workers", str(workers)]
    if wrapper:  # e.g. a profiler that runs the module itself
        argv = [*wrapper, "-m", "llm_api", "serve", "--workers", str(workers)]
    server = start_process(name, argv, int(env["HTTP_PORT"]), env=env, cwd=LOGS)
    return started(server, f"http://127.0.0.1:{server.port}/v1/healthz", timeout=health_timeout)


def build_label(executable: Path) -> str:
    """``llm-api@<short commit>`` of the checkout an ``llm-api`` executable runs (an editable install):
    its interpreter tells where the package is, git which commit that is (``+dirty`` if edited)."""
    python = executable.with_name("python")
    if not python.exists():
        return "llm-api@baseline"
    found = subprocess.run(
        [str(python), "-c", "import llm_api, os; print(os.path.dirname(llm_api.__file__))"],
        check=False,
        capture_output=True,
        text=True,
        cwd="/",
    )
    return "llm-api@" + (git_commit(Path(found.stdout.strip())) if found.returncode == 0 else "baseline")


def git_commit(where: Path) -> str:
    """Short commit of the repository ``where`` is in, ``+dirty`` when llm_api/ has changes; "unknown" outside one."""

    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(where), *argv], check=False, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    top = git("rev-parse", "--show-toplevel")
    edited = top and git("status", "--porcelain", "--untracked-files=no", "--", f"{top}/llm_api")
    return commit + ("+dirty" if edited else "")


def login_guests(base: str, count: int) -> list[tuple[str, str]]:
    """(access token, conversation id) of ``count`` new guests of the llm-api at ``base``."""
    principals = []
    for _ in range(count):
        status, answer = http("POST", f"{base}/auth/guest-login")
        if status != 201:
            raise RuntimeError(f"guest login answered {status}: {answer}")
        token = answer["access_token"]
        status, conversation = http("POST", f"{base}/v1/conversations", {"title": "bench"}, token)
        if status not in (200, 201):
            raise RuntimeError(f"creating a conversation answered {status}: {conversation}")
        principals.append((token, conversation["id"]))
    return principals


def wait_model_listed(base: str, token: str, server: Server, timeout: float = 30) -> float:
    """Seconds from the gateway's start until /v1/models lists the fake's model (read at start-up)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        status, answer = http("GET", f"{base}/v1/models", token=token)
        if status == 200 and any(m.get("id") == GATEWAY_MODEL for m in answer.get("data", [])):
            return time.perf_counter() - server.started_at
        time.sleep(0.05)
    raise RuntimeError(f"{GATEWAY_MODEL} not listed by llm-api after {timeout} s")


def start_litellm(binary: Path, port: int, upstream_port: int, workers: int) -> Server:
    """LiteLLM proxy with the fake upstream as ``openai/bench-model``, no database, a master key."""
    config = LOGS / "litellm-config.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {UPSTREAM_MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{UPSTREAM_MODEL}\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: sk-fake-upstream\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    # No network here: the bundled cost map instead of a download that would time out at start-up.
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"})
    server = start_process(
        "litellm",
        [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", str(workers)],
        port,
        env=env,
        cwd=LOGS,
    )
    return started(server, f"http://127.0.0.1:{port}/health/liveliness", timeout=180)


def portkey_headers(upstream_port: int) -> dict[str, str]:
    """What routes a request through Portkey's gateway to the fake: it has no configuration file here,
    each request names its provider and where that provider is (and a bearer, passed on)."""
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": f"http://127.0.0.1:{upstream_port}/v1"}


def start_portkey(executable: Path, port: int) -> Server:
    """Portkey's open-source gateway (npm @portkey-ai/gateway) on Node: one process, it has no worker
    option. ``--headless``: without its log-viewer UI."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}  # it reads HTTP(S)_PROXY
    server = start_process("portkey", [str(executable), f"--port={port}", "--headless"], port, env=env, cwd=LOGS)
    return started(server, f"http://127.0.0.1:{port}/", timeout=60)


# --- the database -----------------------------------------------------------------------------------------------


def _admin(dsn: str, statement: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@contextmanager
def fresh_database(admin_dsn: str) -> Iterator[str]:
    """A new empty database next to ``admin_dsn`` for as long as the block runs; its DSN (key=value form)."""
    from psycopg2.extensions import make_dsn

    name = f"bench_{secrets.token_hex(4)}"
    _admin(admin_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield make_dsn(admin_dsn, dbname=name)
    finally:
        _admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- load clients -----------------------------------------------------------------------------------------------


def write_requests(path: Path, lines: list[tuple[str, dict]], headers: dict[str, str] | None = None) -> Path:
    """The request file of wrk_chat.lua and loadgen.py: ``<token><TAB><JSON body>`` per line, then
    ``<TAB><name>: <value>`` for each extra header (compact JSON holds no tab, so the split is safe)."""
    extra = "".join(f"\t{name}: {value}" for name, value in (headers or {}).items())
    path.write_text("".join(f"{token}\t{json.dumps(body, separators=(',', ':'))}{extra}\n" for token, body in lines))
    return path


@dataclass
class Load:
    """A load client running in its own process."""

    kind: str  # "wrk" or "python"
    popen: subprocess.Popen
    duration: int

    def stop(self) -> None:
        """End it if it still runs (the measuring script failed or was interrupted): none is left behind."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.communicate()

    def result(self) -> dict:
        """Wait for it; its summary in one shape for both clients (milliseconds, error counts by kind)."""
        out, err = self.popen.communicate()
        if self.popen.returncode != 0:
            raise RuntimeError(f"{self.kind} load client failed ({self.popen.returncode}): {err.strip()[-2000:]}")
        if self.kind == "python":
            return json.loads(out)
        line = next((printed for printed in out.splitlines() if printed.startswith("BENCH_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary:\n{out}\n{err}")
        raw = json.loads(line[len("BENCH_JSON ") :])
        errors = {k: v for k, v in raw["errors"].items() if v}
        ok = raw["requests"] - raw["errors"]["status"]  # wrk counts answers >= 400 as requests too
        duration = raw["duration_us"] / 1e6
        return {
            "requests": ok,
            "errors": errors,
            "duration_s": duration,
            "rps": ok / duration,
            "latency_ms": {k: raw["latency_us"][k] / 1000 for k in ("p50", "p90", "p99")},
            "ttfc_ms": None,
        }


def start_load(kind: str, url: str, requests_file: Path, concurrency: int, duration: int) -> Load:
    if kind == "wrk":
        # Two threads at most: the machine the targets were set for has two cores, shared with the servers.
        threads = min(concurrency, 2)
        argv = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(concurrency),
            "-d",
            f"{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / "wrk_chat.lua"),
            url,
        ]
        env = {**os.environ, "BENCH_REQUESTS": str(requests_file)}
    else:
        argv = [
            sys.executable,
            str(BENCH / "loadgen.py"),
            "--url",
            url,
            "--requests-file",
            str(requests_file),
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
        ]
        env = None
    popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return Load(kind, popen, duration)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def children_cpu_seconds() -> float:
    """CPU time of the children this process has waited for: the load clients (servers are still running)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
