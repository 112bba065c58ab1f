"""A fake Runloop API for contract tests, on plain asyncio HTTP/1.1 (no extra dependencies).

The real service boots VMs in seconds to minutes and its failures (5xx, 429, a devbox dying
mid-execution, slow provisioning) cannot be provoked on demand, so the sandbox is tested against
this server through the real ``runloop_api_client`` SDK. It serves the routes the SDK 3.0.0 sends,
shaped as the SDK reads them:

* bearer auth on every request (401 otherwise; the key is never echoed back);
* ``x-request-id`` is the SDK's idempotency header: a mutating request that repeats a key which
  already succeeded gets the stored answer again instead of acting twice;
* ``wait_for_status`` long-polls: it answers as soon as the devbox (or execution) reaches one of
  the requested statuses, or 408 when ``timeout_seconds`` (clamped like the server does) runs out;
* each devbox has a state machine (provisioning -> running -> suspending -> suspended -> resuming
  -> running -> shutdown, or failure) and a home directory in a temporary folder where commands
  really run (``bash -c``), so outputs and exit statuses are real. Isolation is not the point here.

Tunnels: ``enable_tunnel`` (or a ``tunnel`` given at create) returns a ``TunnelView`` whose
``tunnel_key`` addresses the devbox's ports. A real tunnel is a host name
(``https://{port}-{tunnel_key}.tunnel.runloop.ai``) that needs DNS; here it is a path on this
server, ``tunnel_url`` is the template that forms it, and the gateway forwards each request to a
local server standing in for what listens on that port inside the devbox (``serve``; e.g. a fake
OpenAI server). The gateway answers 502 while the devbox is not running, while nothing listens
on the port (``crash_server``) or before ``server_start_delay_s`` has passed since the devbox came
up, as a tunnel in front of a model server still loading would.

Faults are queued per operation (``inject``) and consumed one per request. ``kill_next_execution``
makes the devbox of the next matching execution die while it runs; ``freeze_next_execution`` makes
an execution never report its end (a devbox agent that lost track of it). Every request is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from swarm_bench.http1 import HttpRequest, HttpServer, send_bytes, send_json
from swarmlib import RunloopConfig, SandboxConfig

BOOTING = ("provisioning", "initializing")
DEVBOX_LONG_POLL_MAX_S = 30.0
EXEC_LONG_POLL_MAX_S = 25.0
MUTATING = frozenset(
    {
        "create",
        "suspend",
        "resume",
        "shutdown",
        "execute",
        "kill",
        "write_file_contents",
        "enable_tunnel",
        "remove_tunnel",
    }
)
TUNNEL_PREFIX = "/tunnel/"
_TUNNEL_PATH = re.compile(r"/tunnel/(?P<port>\d+)-(?P<key>[^/]+)(?P<rest>/.*)?")
_HOP_BY_HOP = frozenset({"host", "connection", "keep-alive", "x-runloop-tunnel-authorization"})

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"/v1/devboxes"), "list"),
    ("POST", re.compile(r"/v1/devboxes"), "create"),
    ("GET", re.compile(r"/v1/devboxes/(?P<id>[^/]+)"), "retrieve"),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/wait_for_status"), "wait_for_status"),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/(?P<op>suspend|resume|shutdown)"), ""),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/execute"), "execute"),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/(?P<op>write_file_contents|read_file_contents)"), ""),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/(?P<op>enable_tunnel|remove_tunnel)"), ""),
    ("GET", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/executions/(?P<eid>[^/]+)"), "retrieve_execution"),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/executions/(?P<eid>[^/]+)/wait_for_status"), "wait_for_command"),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/executions/(?P<eid>[^/]+)/kill"), "kill"),
]


class ApiError(Exception):
    """An error answer: status and message, shaped like the API's JSON errors."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class FakeClock:
    """A clock the pool reads instead of ``time.monotonic``; tests move it forward by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sandbox_config(fake: FakeRunloopAPI, *, cap: int = 4096, **runloop: Any) -> SandboxConfig:
    """A Runloop sandbox config aimed at ``fake``: small pool, few retries, ``runloop`` overriding."""
    settings: dict[str, Any] = {"pool_size": 1, "max_devboxes": 2, "max_retries": 2, **runloop}
    settings.setdefault("api_key", fake.api_key)
    settings.setdefault("base_url", fake.base_url)
    return SandboxConfig(backend="runloop", output_cap_bytes=cap, runloop=RunloopConfig(**settings))


@dataclass(frozen=True)
class Fault:
    """One injected failure. ``after`` acts first and loses the answer (the client must retry)."""

    status: int
    retry_after: str | None = "0.01"
    after: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it and what it answered."""

    method: str
    path: str
    op: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int
    replayed: bool = False

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("x-request-id")

    @property
    def devbox_id(self) -> str | None:
        match = re.match(r"/v1/devboxes/([^/]+)", self.path)
        return match.group(1) if match and self.op not in ("list", "create") else None


@dataclass(eq=False)
class FakeExecution:
    """One command running (or finished) in a devbox's home."""

    id: str
    devbox_id: str
    command: str
    command_id: str | None
    process: asyncio.subprocess.Process | None = None
    status: str = "running"
    exit_status: int | None = None
    stdout: str = ""
    stderr: str = ""
    frozen: bool = False
    collected: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def complete(self) -> None:
        self.status = "completed"
        self.done.set()

    def view(self, last_n: int) -> dict[str, Any]:
        out: dict[str, Any] = {"devbox_id": self.devbox_id, "execution_id": self.id, "status": self.status}
        if self.status == "completed":
            stdout, cut_out = _last_lines(self.stdout, last_n)
            stderr, cut_err = _last_lines(self.stderr, last_n)
            out |= {
                "exit_status": self.exit_status,
                "stdout": stdout,
                "stderr": stderr,
                "stdout_truncated": cut_out,
                "stderr_truncated": cut_err,
            }
        return out


@dataclass(eq=False)
class FakeDevbox:
    """A devbox: status with its history, a home directory, and the executions it ran."""

    id: str
    home: Path
    blueprint_id: str | None
    blueprint_name: str | None
    name: str | None
    metadata: dict[str, str]
    status: str = "provisioning"
    failure_reason: str | None = None
    shutdown_reason: str | None = None
    create_time_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    end_time_ms: int | None = None
    transitions: list[dict[str, Any]] = field(default_factory=list)
    executions: dict[str, FakeExecution] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    tunnel: dict[str, Any] | None = None
    # Servers inside this devbox: port -> local port standing in for it (None: nothing listens).
    ports: dict[int, int | None] = field(default_factory=dict)
    running_since: float | None = None  # time.monotonic() when it last came up

    def move(self, status: str) -> None:
        """Change status, record the transition and wake every long-poll waiting on this devbox."""
        self.status = status
        self.running_since = time.monotonic() if status == "running" else None
        self.transitions.append({"status": status, "transition_time_ms": int(time.time() * 1000)})
        if status in ("shutdown", "failure"):
            self.end_time_ms = int(time.time() * 1000)
        self.changed.set()
        self.changed = asyncio.Event()

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "capabilities": [],
            "create_time_ms": self.create_time_ms,
            "end_time_ms": self.end_time_ms,
            "launch_parameters": {},
            "metadata": self.metadata,
            "state_transitions": self.transitions,
            "blueprint_id": self.blueprint_id,
            "name": self.name,
            "failure_reason": self.failure_reason,
            "shutdown_reason": self.shutdown_reason,
            "tunnel": self.tunnel,
        }


@dataclass
class FakeRunloopAPI(HttpServer):
    """The Runloop devbox API on 127.0.0.1 (ephemeral port), as far as the sandbox uses it.

    ``provision_delay_s``, ``suspend_delay_s`` and ``resume_delay_s`` are how long the devbox
    stays in each transitional state; ``devbox_long_poll_s`` clamps a devbox ``wait_for_status``
    (30 s on the real server) so tests can see the SDK retry after a 408.
    """

    api_key: str = "rl_fake_secret_4c1d9e7a2b"
    provision_delay_s: float = 0.02
    suspend_delay_s: float = 0.01
    resume_delay_s: float = 0.01
    devbox_long_poll_s: float = DEVBOX_LONG_POLL_MAX_S
    server_start_delay_s: float = 0.0
    requests: list[RecordedRequest] = field(default_factory=list)
    devboxes: dict[str, FakeDevbox] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._faults: dict[str, deque[Fault]] = {}
        self._answers: dict[tuple[str, str], tuple[int, Any]] = {}
        self._sabotage: list[tuple[str, str, float, str]] = []  # (kind, command substring, after_s, reason)
        self._boot_failures: deque[str] = deque()
        self._background: set[asyncio.Task[None]] = set()
        self._root = Path(tempfile.mkdtemp(prefix="fake-runloop-"))
        self._ids = itertools.count(1)
        self._servers: dict[int, int] = {}  # devbox port -> local port, for every devbox
        self._tunnels: dict[str, str] = {}  # tunnel key -> devbox id

    # -- test controls ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tunnel_url(self) -> str:
        """The tunnel URL template (``{port}``, ``{tunnel_key}``) pointing at this server's gateway."""
        return f"http://127.0.0.1:{self.port}{TUNNEL_PREFIX}{{port}}-{{tunnel_key}}"

    def serve(self, port: int, target_port: int) -> None:
        """Every devbox, now and later, has a server on ``port``: the one listening on local ``target_port``."""
        self._servers[port] = target_port

    def crash_server(self, box_id: str, port: int) -> None:
        """Nothing listens on ``port`` in devbox ``box_id`` any more, though the devbox keeps running."""
        self.devboxes[box_id].ports[port] = None

    def inject(self, op: str, *faults: Fault) -> None:
        """Answer the next requests of ``op`` (e.g. ``create``, ``execute``) with these faults."""
        self._faults.setdefault(op, deque()).extend(faults)

    def kill_next_execution(self, match: str = "", after_s: float = 0.05, reason: str = "execution_failed") -> None:
        """The devbox running the next execution whose command contains ``match`` dies ``after_s`` into it."""
        self._sabotage.append(("kill", match, after_s, reason))

    def fail_next_boot(self, reason: str = "health_check_failed") -> None:
        """The next devbox created ends its provisioning in ``failure`` instead of ``running``."""
        self._boot_failures.append(reason)

    def freeze_next_execution(self, match: str = "") -> None:
        """The next execution whose command contains ``match`` runs but never reports completion."""
        self._sabotage.append(("freeze", match, 0.0, ""))

    def executions(self, match: str = "") -> list[FakeExecution]:
        """Every execution on any devbox whose command contains ``match``."""
        return [e for box in self.devboxes.values() for e in box.executions.values() if match in e.command]

    def calls(self, op: str, devbox_id: str | None = None) -> list[RecordedRequest]:
        """Recorded requests of one operation, optionally on one devbox."""
        return [r for r in self.requests if r.op == op and (devbox_id is None or r.devbox_id == devbox_id)]

    async def until_status(self, box_id: str, status: str) -> None:
        """Return once devbox ``box_id`` is in ``status``."""
        box = self.devboxes[box_id]
        while box.status != status:
            await box.changed.wait()

    def statuses(self) -> dict[str, str]:
        return {box.id: box.status for box in self.devboxes.values()}

    def live(self) -> list[FakeDevbox]:
        """Devboxes not shut down and not failed."""
        return [box for box in self.devboxes.values() if box.status not in ("shutdown", "failure")]

    # -- lifecycle -------------------------------------------------------------------------

    def wake(self) -> None:
        """End long-polls and kill every command still running."""
        for task in list(self._background):
            task.cancel()
        for box in self.devboxes.values():
            box.changed.set()
            for execution in box.executions.values():
                _kill(execution)

    async def stop(self) -> None:
        """Stop listening, end long-polls, kill every command still running and remove the devboxes' homes."""
        await super().stop()
        shutil.rmtree(self._root, ignore_errors=True)

    # -- HTTP ------------------------------------------------------------------------------

    async def handle(self, request: HttpRequest, writer: asyncio.StreamWriter) -> bool:
        parts = urlsplit(request.path)
        query = dict(parse_qsl(parts.query))
        try:
            body: Any = json.loads(request.body) if request.body else None
        except ValueError:
            body = request.body.decode("utf-8", "replace")
        if parts.path.startswith(TUNNEL_PREFIX):
            return await self._tunnel(request, query, body, writer)
        op, params = _route(request.method, parts.path)
        key = request.headers.get("x-request-id")
        status, payload, extra, replayed = await self._answer(op, params, query, body, request, key)
        self.requests.append(
            RecordedRequest(request.method, parts.path, op, query, dict(request.headers), body, status, replayed)
        )
        if self._stopping.is_set():
            return False
        await _respond(writer, status, payload, request.keep_alive, extra)
        return request.keep_alive

    async def _answer(
        self,
        op: str,
        params: dict[str, str],
        query: dict[str, str],
        body: Any,
        request: HttpRequest,
        key: str | None,
    ) -> tuple[int, Any, dict[str, str], bool]:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": "missing or invalid bearer token"}, {}, False
        if not op:
            return 404, {"error": f"no route {request.method} {urlsplit(request.path).path}"}, {}, False
        if key is not None and op in MUTATING and (op, key) in self._answers:
            status, payload = self._answers[(op, key)]
            return status, payload, {}, True
        queue = self._faults.get(op)
        fault = queue.popleft() if queue else None
        extra = {"Retry-After": fault.retry_after} if fault and fault.retry_after is not None else {}
        if fault is not None and not fault.after:
            return fault.status, {"error": f"injected HTTP {fault.status}"}, extra, False
        try:
            status, payload = 200, await self._dispatch(op, params, query, body)
        except ApiError as exc:
            status, payload = exc.status, {"error": str(exc)}
        if key is not None and op in MUTATING and status == 200:
            self._answers[(op, key)] = (status, payload)
        if fault is not None:
            return fault.status, {"error": f"injected HTTP {fault.status} after acting"}, extra, False
        return status, payload, {}, False

    async def _dispatch(self, op: str, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        args = body if isinstance(body, dict) else {}
        if op == "list":
            boxes = [b.view() for b in self.devboxes.values()]
            limit = int(query.get("limit", "20"))
            return {"devboxes": boxes[:limit], "has_more": len(boxes) > limit, "total_count": len(boxes)}
        if op == "create":
            return self._create(args).view()
        box = self.devboxes.get(params["id"])
        if box is None:
            raise ApiError(404, f"devbox {params['id']} not found")
        if op == "retrieve":
            return box.view()
        if op == "wait_for_status":
            return await self._wait_devbox(box, args)
        if op in ("suspend", "resume", "shutdown"):
            return self._transition(box, op, query).view()
        if box.status != "running":
            raise ApiError(400, f"devbox {box.id} is not running (status {box.status})")
        if op == "enable_tunnel":
            if box.tunnel is None:  # one tunnel per devbox: enabling again returns it
                box.tunnel = self._new_tunnel(box, args)
            return box.tunnel
        if op == "remove_tunnel":
            if box.tunnel is not None:
                self._tunnels.pop(box.tunnel["tunnel_key"], None)
                box.tunnel = None
            return {}
        if op == "read_file_contents":
            source = _home_path(box, args.get("file_path"))
            if not source.is_file():
                raise ApiError(404, f"file {args.get('file_path')!r} not found")
            return source.read_bytes().decode("utf-8", "replace")
        if op == "write_file_contents":
            target = _home_path(box, args.get("file_path"))
            if not target.parent.is_dir():
                raise ApiError(400, f"directory of {args.get('file_path')!r} does not exist")
            target.write_text(str(args.get("contents", "")), encoding="utf-8")
            return {"devbox_id": box.id, "exit_status": 0, "stdout": "", "stderr": ""}
        if op == "execute":
            return await self._execute(box, args, query)
        execution = box.executions.get(params["eid"])
        if execution is None:
            raise ApiError(404, f"execution {params['eid']} not found")
        last_n = int(query.get("last_n", "100"))
        if op == "retrieve_execution":
            return execution.view(last_n)
        if op == "kill":
            _kill(execution)
            execution.frozen = False
            if execution.collected and execution.status != "completed":
                execution.complete()
            await execution.done.wait()
            return execution.view(last_n)
        statuses = set(args.get("statuses") or [])
        if not statuses:
            raise ApiError(400, "statuses must not be empty")
        hold = min(float(args.get("timeout_seconds") or EXEC_LONG_POLL_MAX_S), EXEC_LONG_POLL_MAX_S)
        return await self._wait_execution(box, execution, statuses, hold, last_n, long_poll=True)

    # -- devboxes --------------------------------------------------------------------------

    def _create(self, args: dict[str, Any]) -> FakeDevbox:
        box_id = f"dbx_{next(self._ids):04d}{uuid.uuid4().hex[:8]}"
        home = self._root / box_id
        home.mkdir()
        box = FakeDevbox(
            id=box_id,
            home=home,
            blueprint_id=args.get("blueprint_id"),
            blueprint_name=args.get("blueprint_name"),
            name=args.get("name"),
            metadata=dict(args.get("metadata") or {}),
        )
        box.move("provisioning")
        self.devboxes[box_id] = box
        if isinstance(args.get("tunnel"), dict):
            box.tunnel = self._new_tunnel(box, args["tunnel"])
        if self._boot_failures:
            box.failure_reason = self._boot_failures.popleft()
            self._later(self.provision_delay_s, box, "provisioning", "failure")
        else:
            self._later(self.provision_delay_s, box, "provisioning", "running")
        return box

    def _new_tunnel(self, box: FakeDevbox, args: dict[str, Any]) -> dict[str, Any]:
        """A ``TunnelView``: open unless ``auth_mode`` asks for a bearer token."""
        key = f"tk{uuid.uuid4().hex}"
        self._tunnels[key] = box.id
        auth_mode = args.get("auth_mode") or "open"
        if auth_mode not in ("open", "authenticated"):
            raise ApiError(400, f"auth_mode {auth_mode!r} must be open or authenticated")
        keep_alive, wake = args.get("http_keep_alive"), args.get("wake_on_http")
        view: dict[str, Any] = {
            "auth_mode": auth_mode,
            "create_time_ms": int(time.time() * 1000),
            "http_keep_alive": True if keep_alive is None else bool(keep_alive),
            "tunnel_key": key,
            "wake_on_http": bool(wake),
        }
        if auth_mode == "authenticated":
            view["auth_token"] = f"tt_{uuid.uuid4().hex}"
        return view

    def _transition(self, box: FakeDevbox, op: str, query: dict[str, str]) -> FakeDevbox:
        if op == "shutdown":
            if box.status == "suspending" and query.get("force") != "true":
                raise ApiError(409, f"devbox {box.id} has a snapshot in progress; shut down with force=true")
            if box.status not in ("shutdown", "failure"):
                box.shutdown_reason = "api_shutdown"
                self._stop_all(box)
                box.move("shutdown")
            return box
        wanted, middle, final, delay = {
            "suspend": ("running", "suspending", "suspended", self.suspend_delay_s),
            "resume": ("suspended", "resuming", "running", self.resume_delay_s),
        }[op]
        if box.status != wanted:
            raise ApiError(400, f"cannot {op} devbox {box.id} in status {box.status}")
        if op == "suspend":
            self._stop_all(box)  # memory is not part of the snapshot
        box.move(middle)
        self._later(delay, box, middle, final)
        return box

    def _later(self, delay: float, box: FakeDevbox, expected: str, status: str) -> None:
        async def move() -> None:
            await asyncio.sleep(delay)
            if box.status == expected:
                box.move(status)

        self._spawn(move())

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _stop_all(self, box: FakeDevbox) -> None:
        for execution in box.executions.values():
            _kill(execution)

    async def _wait_devbox(self, box: FakeDevbox, args: dict[str, Any]) -> Any:
        statuses = set(args.get("statuses") or [])
        if not statuses:
            raise ApiError(400, "statuses must not be empty")
        hold = min(float(args.get("timeout_seconds") or self.devbox_long_poll_s), self.devbox_long_poll_s)
        deadline = asyncio.get_running_loop().time() + hold
        while box.status not in statuses:
            if not await self._until(box.changed, deadline):
                raise ApiError(408, f"devbox {box.id} did not reach {sorted(statuses)} in {hold:g}s")
        return box.view()

    async def _until(self, event: asyncio.Event, deadline: float) -> bool:
        """Wait for ``event`` until ``deadline``; False on timeout or when the server stops."""
        return await self._until_any(event, event, deadline)

    # -- tunnels ---------------------------------------------------------------------------

    async def _tunnel(
        self, request: HttpRequest, query: dict[str, str], body: Any, writer: asyncio.StreamWriter
    ) -> bool:
        """Forward one request through a tunnel to the server on the devbox's port, or say why not."""
        path = urlsplit(request.path).path
        status, message, target = self._tunnel_target(path, request.headers)
        record = RecordedRequest(request.method, path, "tunnel", query, dict(request.headers), body, status)
        if target is None:
            self.requests.append(record)
            await _respond(writer, status, {"error": message}, request.keep_alive, {})
            return request.keep_alive
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            self.requests.append(dataclasses.replace(record, status=502))
            await _respond(writer, 502, {"error": "connection refused by the devbox's server"}, request.keep_alive, {})
            return request.keep_alive
        try:
            status = await self._forward(request, target, upstream_reader, upstream, writer)
        finally:
            upstream.close()
            with contextlib.suppress(Exception):
                await upstream.wait_closed()
        self.requests.append(dataclasses.replace(record, status=status))
        return False  # the answer was relayed until the server closed: close the client's connection too

    def _tunnel_target(self, path: str, headers: dict[str, str]) -> tuple[int, str, int | None]:
        """(status, reason, local port): a port when the request can be forwarded, else an error status."""
        match = _TUNNEL_PATH.fullmatch(path)
        box = self.devboxes.get(self._tunnels.get(match["key"], "")) if match else None
        if match is None or box is None or box.tunnel is None:
            return 404, "no such tunnel", None
        token = box.tunnel.get("auth_token")
        if token and headers.get("x-runloop-tunnel-authorization") != f"Bearer {token}":
            return 401, "missing or invalid tunnel token", None
        if box.status != "running" or box.running_since is None:
            return 502, f"devbox is not running (status {box.status})", None
        port = int(match["port"])
        target = box.ports[port] if port in box.ports else self._servers.get(port)
        if target is None or time.monotonic() - box.running_since < self.server_start_delay_s:
            return 502, f"nothing listens on port {port} in the devbox", None
        return 200, "", target

    async def _forward(
        self,
        request: HttpRequest,
        target: int,
        upstream_reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
        writer: asyncio.StreamWriter,
    ) -> int:
        """Send the request upstream (one per connection) and relay the answer; returns its status."""
        match = _TUNNEL_PATH.fullmatch(urlsplit(request.path).path)
        assert match is not None
        query = urlsplit(request.path).query
        rest = (match["rest"] or "/") + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in request.headers.items() if k not in _HOP_BY_HOP]
        head = [f"{request.method} {rest} HTTP/1.1", f"host: 127.0.0.1:{target}", "connection: close"]
        head += [f"{k}: {v}" for k, v in headers]
        upstream.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + request.body)
        await upstream.drain()
        status = 0
        while data := await upstream_reader.read(65536):
            if not status:
                status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 502
            writer.write(data)
            await writer.drain()
        if not status:
            await _respond(writer, 502, {"error": "the devbox's server closed the connection"}, False, {})
            return 502
        return status

    # -- executions ------------------------------------------------------------------------

    async def _execute(self, box: FakeDevbox, args: dict[str, Any], query: dict[str, str]) -> Any:
        command = args.get("command")
        if not isinstance(command, str) or not command:
            raise ApiError(400, "command is required")
        execution = FakeExecution(f"exe_{uuid.uuid4().hex[:12]}", box.id, command, args.get("command_id"))
        box.executions[execution.id] = execution
        env = {
            "HOME": str(box.home),
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
        }
        execution.process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            cwd=box.home,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        for plan in self._sabotage:
            kind, match, after_s, reason = plan
            if match in command:
                self._sabotage.remove(plan)
                if kind == "kill":
                    self._spawn(self._die(box, execution, after_s, reason))
                else:
                    execution.frozen = True
                break
        self._spawn(self._collect(execution))
        optimistic = min(float(args.get("optimistic_timeout") or EXEC_LONG_POLL_MAX_S), EXEC_LONG_POLL_MAX_S)
        last_n = int(query.get("last_n", "100"))
        return await self._wait_execution(box, execution, {"completed"}, optimistic, last_n, long_poll=False)

    async def _collect(self, execution: FakeExecution) -> None:
        assert execution.process is not None
        out, err = await execution.process.communicate()
        execution.stdout = out.decode("utf-8", "replace")
        execution.stderr = err.decode("utf-8", "replace")
        execution.exit_status = execution.process.returncode
        if execution.exit_status is not None and execution.exit_status < 0:
            execution.exit_status = 128 - execution.exit_status  # as a shell reports a signal
        execution.collected = True
        if not execution.frozen:
            execution.complete()

    async def _die(self, box: FakeDevbox, execution: FakeExecution, after_s: float, reason: str) -> None:
        await asyncio.sleep(after_s)
        if box.status == "running":
            box.failure_reason = reason
            _kill(execution)
            box.move("failure")

    async def _wait_execution(
        self,
        box: FakeDevbox,
        execution: FakeExecution,
        statuses: set[str],
        hold: float,
        last_n: int,
        *,
        long_poll: bool,
    ) -> Any:
        """Answer once the execution is in ``statuses``; after ``hold``, 408 for a long-poll, else as is."""
        deadline = asyncio.get_running_loop().time() + hold
        while True:
            if box.status != "running":
                raise ApiError(400, f"devbox {box.id} is not running (status {box.status})")
            if execution.status in statuses:
                return execution.view(last_n)
            if not await self._until_any(execution.done, box.changed, deadline):
                if long_poll:
                    raise ApiError(408, f"execution {execution.id} still {execution.status} after {hold:g}s")
                return execution.view(last_n)

    async def _until_any(self, first: asyncio.Event, second: asyncio.Event, deadline: float) -> bool:
        """Wait until either event is set or ``deadline``; False on timeout or when the server stops."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0 or self._stopping.is_set():
            return False
        waiters = {asyncio.ensure_future(e.wait()) for e in (first, second, self._stopping)}
        try:
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return (first.is_set() or second.is_set()) and not self._stopping.is_set()


def _route(method: str, path: str) -> tuple[str, dict[str, str]]:
    for route_method, pattern, op in _ROUTES:
        match = pattern.fullmatch(path)
        if route_method == method and match:
            params = match.groupdict()
            return op or params.pop("op"), params
    return "", {}


def _home_path(box: FakeDevbox, raw: object) -> Path:
    """A path relative to the devbox's home; absolute or escaping paths would touch the host."""
    if not isinstance(raw, str) or not raw or raw.startswith("/") or ".." in Path(raw).parts:
        raise ApiError(400, f"file_path {raw!r} must be relative to the home directory")
    target = box.home / raw
    if target.is_dir():
        raise ApiError(400, f"{raw!r} is a directory")
    return target


def _last_lines(text: str, n: int) -> tuple[str, bool]:
    lines = text.splitlines(keepends=True)
    return "".join(lines[-n:]), len(lines) > n


def _kill(execution: FakeExecution) -> None:
    process = execution.process
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


async def _respond(
    writer: asyncio.StreamWriter, status: int, payload: Any, keep_alive: bool, extra: dict[str, str]
) -> None:
    if isinstance(payload, str):
        await send_bytes(writer, status, "text/plain; charset=utf-8", payload.encode("utf-8"), keep_alive, extra)
    else:
        await send_json(writer, status, payload, keep_alive, extra)
