"""A fake Runloop API for contract tests and benches, on plain asyncio HTTP/1.1 (no extra dependencies).

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

Tunnels (``enable_tunnel``, ``serve``, ``crash_server``) go through a gateway on this server
(``fake_runloop_tunnels``); devboxes, executions and faults are in ``fake_runloop_state``.

Faults are queued per operation (``inject``) and consumed one per request. ``kill_next_execution``
makes the devbox of the next matching execution die while it runs; ``freeze_next_execution`` makes
an execution never report its end (a devbox agent that lost track of it). Every request is recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import tempfile
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from swarmlib import RunloopConfig, SandboxConfig

from .fake_runloop_routes import MUTATING, route
from .fake_runloop_state import (
    ApiError,
    FakeClock,
    FakeDevbox,
    FakeExecution,
    Fault,
    RecordedRequest,
    home_path,
    until_any,
    wait_execution,
)
from .fake_runloop_tunnels import TUNNEL_PREFIX, TunnelGateway
from .http1 import HttpRequest, HttpServer, send_bytes, send_json

__all__ = ["FakeClock", "FakeRunloopAPI", "Fault", "sandbox_config"]

DEVBOX_LONG_POLL_MAX_S = 30.0
EXEC_LONG_POLL_MAX_S = 25.0


def sandbox_config(fake: FakeRunloopAPI, *, cap: int = 4096, **runloop: Any) -> SandboxConfig:
    """A Runloop sandbox config aimed at ``fake``: small pool, few retries, ``runloop`` overriding."""
    settings: dict[str, Any] = {"pool_size": 1, "max_devboxes": 2, "max_retries": 2, **runloop}
    settings.setdefault("api_key", fake.api_key)
    settings.setdefault("base_url", fake.base_url)
    return SandboxConfig(backend="runloop", output_cap_bytes=cap, runloop=RunloopConfig(**settings))


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
        self._gateway = TunnelGateway(self)

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
        self._gateway.servers[port] = target_port

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
                execution.kill()

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
            return await self._gateway.relay(request, query, body, writer)
        op, params = route(request.method, parts.path)
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
                box.tunnel = self._gateway.open(box, args)
            return box.tunnel
        if op == "remove_tunnel":
            self._gateway.close(box)
            return {}
        if op == "read_file_contents":
            source = home_path(box, args.get("file_path"))
            if not source.is_file():
                raise ApiError(404, f"file {args.get('file_path')!r} not found")
            return source.read_bytes().decode("utf-8", "replace")
        if op == "write_file_contents":
            target = home_path(box, args.get("file_path"))
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
            execution.kill()
            execution.frozen = False
            if execution.collected and execution.status != "completed":
                execution.complete()
            await execution.done.wait()
            return execution.view(last_n)
        statuses = set(args.get("statuses") or [])
        if not statuses:
            raise ApiError(400, "statuses must not be empty")
        hold = min(float(args.get("timeout_seconds") or EXEC_LONG_POLL_MAX_S), EXEC_LONG_POLL_MAX_S)
        return await wait_execution(box, execution, statuses, hold, last_n, self._stopping, long_poll=True)

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
            box.tunnel = self._gateway.open(box, args["tunnel"])
        if self._boot_failures:
            box.failure_reason = self._boot_failures.popleft()
            self._later(self.provision_delay_s, box, "provisioning", "failure")
        else:
            self._later(self.provision_delay_s, box, "provisioning", "running")
        return box

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
            execution.kill()

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
        return await until_any(event, event, deadline, self._stopping)

    # -- executions ------------------------------------------------------------------------

    async def _execute(self, box: FakeDevbox, args: dict[str, Any], query: dict[str, str]) -> Any:
        command = args.get("command")
        if not isinstance(command, str) or not command:
            raise ApiError(400, "command is required")
        execution = FakeExecution(f"exe_{uuid.uuid4().hex[:12]}", box.id, command, args.get("command_id"))
        box.executions[execution.id] = execution
        await execution.start(box.home)
        for plan in self._sabotage:
            kind, match, after_s, reason = plan
            if match in command:
                self._sabotage.remove(plan)
                if kind == "kill":
                    self._spawn(self._die(box, execution, after_s, reason))
                else:
                    execution.frozen = True
                break
        self._spawn(execution.collect())
        optimistic = min(float(args.get("optimistic_timeout") or EXEC_LONG_POLL_MAX_S), EXEC_LONG_POLL_MAX_S)
        last_n = int(query.get("last_n", "100"))
        return await wait_execution(box, execution, {"completed"}, optimistic, last_n, self._stopping, long_poll=False)

    async def _die(self, box: FakeDevbox, execution: FakeExecution, after_s: float, reason: str) -> None:
        await asyncio.sleep(after_s)
        if box.status == "running":
            box.failure_reason = reason
            execution.kill()
            box.move("failure")


async def _respond(
    writer: asyncio.StreamWriter, status: int, payload: Any, keep_alive: bool, extra: dict[str, str]
) -> None:
    if isinstance(payload, str):
        await send_bytes(writer, status, "text/plain; charset=utf-8", payload.encode("utf-8"), keep_alive, extra)
    else:
        await send_json(writer, status, payload, keep_alive, extra)
