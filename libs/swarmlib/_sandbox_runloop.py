"""Run one untrusted Python program on a Runloop devbox, behind the same ``Sandbox`` interface.

An execution borrows a devbox from the warm pool, writes ``main.py`` and its files into a fresh
directory there, runs ``python3 -I main.py`` under ``timeout -s KILL`` with the local backend's
limits (CPU seconds, address space, file size, a cleared environment), and reads back stdout and
stderr capped at ``output_cap_bytes`` (the script is ``_runloop_script``). Removing the directory
and making the next one happen after the result is returned, before the devbox goes back to the pool.

Not enforced here, unlike bubblewrap: ``max_processes`` (RLIMIT_NPROC counts every process of the
devbox user) and ``tmp_size_mb``. The devbox itself is the isolation boundary; a program that
escapes ``timeout``'s process group lives until the devbox is retired.

The API key lives in the SDK client only: never in a log line, a message, a span attribute or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shlex
import time
from collections.abc import Mapping

import httpx
from opentelemetry import trace
from runloop_api_client import APIStatusError, AsyncRunloop, DefaultAsyncHttpxClient
from runloop_api_client.types import DevboxAsyncExecutionDetailView

from ._errors import SandboxUnavailableError
from ._runloop import REQUEST_TIMEOUT_S, Clock, api_errors, idempotency_key, open_client
from ._runloop_pool import Devbox, DevboxPool
from ._runloop_result import hung, parse_trailer, result
from ._runloop_script import ERR, OUT, new_workdir, run_script, workdir_command
from ._sandbox import ExecResult, SandboxConfig, plain_files
from ._tasks import BackgroundTasks

log = logging.getLogger(__name__)

BACKEND = "runloop"
NO_KEY = "the Runloop API key is not set: set RUNLOOP_API_KEY to use SWARM_SANDBOX=runloop"
_LONG_POLL_S = 25  # the API holds an execution long-poll at most this long


class _DevboxDied(Exception):
    def __init__(self, box_id: str, status: str, failure: str | None) -> None:
        detail = f"status {status}" + (f", {failure}" if failure else "")
        super().__init__(f"devbox {box_id} died during the execution ({detail}); it was replaced")


class RunloopSandbox:
    """Executes programs on pooled Runloop devboxes, one execution per devbox at a time.

    ``clock`` (the pool's idle time), ``maintenance`` (the periodic idle policy and health checks)
    and ``tracer`` are there for tests; ``open_sandbox`` uses the defaults.
    """

    def __init__(
        self,
        config: SandboxConfig,
        *,
        clock: Clock = time.monotonic,
        maintenance: bool = True,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._config = config
        self._rl = config.runloop
        self._clock = clock
        self._maintenance = maintenance
        self._tracer = tracer or trace.get_tracer(__name__)
        self._client: AsyncRunloop | None = None
        self._poller: AsyncRunloop | None = None
        self._pool: DevboxPool | None = None
        self._prepared: dict[str, str] = {}  # devbox id -> an empty working directory made ahead
        self._recycling = BackgroundTasks(log)  # finished executions' devboxes being cleaned
        self._maintainer: asyncio.Task[None] | None = None
        self._unavailable: str | None = None
        self._closed = False

    def __repr__(self) -> str:
        where = self._rl.base_url or "default"
        return f"RunloopSandbox(base_url={where!r}, pool_size={self._rl.pool_size}, max={self._rl.max_devboxes})"

    @property
    def backend(self) -> str:
        return BACKEND

    @property
    def unavailable_reason(self) -> str | None:
        """Why the last probe failed, or None when the API answered (or was not probed)."""
        return self._unavailable

    @property
    def pool(self) -> DevboxPool:
        """The devbox pool (made on first use); tests drive its idle policy through ``maintain``."""
        return self._ensure_pool()

    async def probe(self) -> None:
        """Check the key is set and the API accepts it, then start warming the pool."""
        self._unavailable = None
        try:
            pool = self._ensure_pool()
            assert self._client is not None
            with api_errors("list devboxes", self._rl.max_retries):
                await self._client.devboxes.list(limit=1)
        except SandboxUnavailableError as exc:
            self._unavailable = str(exc)
            raise
        pool.start_warming()

    async def warm_up(self) -> None:
        """Boot the pool's devboxes now and wait for them (benches; the service warms in the background)."""
        await self._ensure_pool().warm()

    async def wait_idle(self) -> None:
        """Wait until finished executions' devboxes are back in the pool and no boot is in flight."""
        await self._recycling.settle()
        if self._pool is not None:
            await self._pool.settle()

    async def run(self, program: str, timeout_s: float, files: Mapping[str, str] | None = None) -> ExecResult:
        """Run ``program`` as ``main.py`` with ``files`` beside it on a pooled devbox."""
        contents = {**plain_files(files), "main.py": program}
        pool = self._ensure_pool()
        box = await pool.acquire()
        with self._tracer.start_as_current_span("sandbox.runloop.run") as span:
            span.set_attribute("swarm.sandbox.backend", BACKEND)
            span.set_attribute("runloop.devbox_id", box.id)
            workdir = self._prepared.pop(box.id, None)
            try:
                if workdir is None:
                    workdir = new_workdir()
                    await self._shell(box.id, workdir_command(make=workdir), "make a working directory")
                result = await self._execute(box.id, workdir, contents, timeout_s)
            except _DevboxDied as died:
                await pool.discard(box, str(died))
                result = ExecResult(None, False, str(died), "", "", 0.0)
            except BaseException:
                self._recycle(box, workdir, healthy=False)
                raise
            else:
                self._recycle(box, workdir, healthy=result.exit_code is not None)
            span.set_attribute("swarm.sandbox.exit_code", -1 if result.exit_code is None else result.exit_code)
            span.set_attribute("swarm.sandbox.timed_out", result.timed_out)
            span.set_attribute("swarm.sandbox.reason", result.reason)
        return result

    async def aclose(self) -> None:
        """Stop maintenance and shut down every devbox this sandbox created."""
        self._closed = True
        if self._maintainer is not None:
            self._maintainer.cancel()
            await asyncio.gather(self._maintainer, return_exceptions=True)
        await self._recycling.aclose()
        if self._pool is not None:
            await self._pool.aclose()
        for client in (self._poller, self._client):
            if client is not None:
                await client.close()

    # -- set-up ----------------------------------------------------------------------------

    def _ensure_pool(self) -> DevboxPool:
        if self._closed:
            raise SandboxUnavailableError("the Runloop sandbox is closed")
        if self._pool is not None:
            return self._pool
        if not self._rl.api_key:
            self._unavailable = NO_KEY
            raise SandboxUnavailableError(NO_KEY)
        # One HTTP client for both SDK clients, sized for every devbox's calls at once.
        http = DefaultAsyncHttpxClient(
            timeout=REQUEST_TIMEOUT_S,
            limits=httpx.Limits(max_connections=max(20, 4 * self._rl.max_devboxes), max_keepalive_connections=10),
        )
        self._client = open_client(self._rl.api_key, self._rl.base_url, self._rl.max_retries, http)
        # Long-polls answer 408 when nothing happened yet; that is not worth a backoff and retry.
        self._poller = self._client.with_options(max_retries=0, http_client=http)
        self._pool = DevboxPool(self._client, self._rl, clock=self._clock, on_ready=self._prepare)
        if self._maintenance:
            self._maintainer = asyncio.ensure_future(self._pool.maintain_forever())
        return self._pool

    async def _prepare(self, box_id: str) -> None:
        """Make the first working directory as soon as a devbox boots, off any execution's path."""
        workdir = new_workdir()
        try:
            await self._shell(box_id, workdir_command(make=workdir), "make a working directory")
        except _DevboxDied as died:
            raise SandboxUnavailableError(f"devbox {box_id} died right after booting") from died
        self._prepared[box_id] = workdir

    def _recycle(self, box: Devbox, workdir: str | None, *, healthy: bool) -> None:
        if self._pool is None or self._closed:
            return  # closing shuts every devbox down; nothing to clean
        if healthy:
            self._pool.returning(box)
        self._recycling.spawn(
            self._clean_and_release(box, workdir, healthy), what=f"return devbox {box.id} to the pool"
        )

    async def _clean_and_release(self, box: Devbox, workdir: str | None, healthy: bool) -> None:
        """Remove the execution's directory and make the next one in one call, then lend the box again."""
        pool = self._pool
        assert pool is not None
        following = new_workdir()
        try:
            await self._shell(box.id, workdir_command(make=following, remove=workdir), "clean the working directory")
            self._prepared[box.id] = following
        except (SandboxUnavailableError, _DevboxDied) as exc:
            log.warning("Runloop devbox %s not cleaned: %s", box.id, exc)
            healthy = False
        await pool.release(box, healthy=healthy)

    # -- one execution ---------------------------------------------------------------------

    async def _execute(self, box_id: str, workdir: str, contents: Mapping[str, str], timeout_s: float) -> ExecResult:
        try:
            await asyncio.gather(*(self._write(box_id, f"{workdir}/{name}", text) for name, text in contents.items()))
            execution = await self._run_script(box_id, workdir, timeout_s)
            if execution is None:
                return hung(timeout_s)
            trailer = parse_trailer(box_id, execution)
            stdout, stderr = await asyncio.gather(
                self._read(box_id, f"{workdir}/{OUT}", trailer.stdout_bytes),
                self._read(box_id, f"{workdir}/{ERR}", trailer.stderr_bytes),
            )
        except SandboxUnavailableError:
            await self._raise_if_dead(box_id)
            raise
        return result(trailer, stdout, stderr, timeout_s, self._config.output_cap_bytes, self._config.memory_mb)

    async def _run_script(self, box_id: str, workdir: str, timeout_s: float) -> DevboxAsyncExecutionDetailView | None:
        """Start the run script and wait for it; None if the devbox stays silent past the grace."""
        command = "bash -c " + shlex.quote(run_script(workdir, timeout_s, self._config))
        started: list[str] = []
        try:
            async with asyncio.timeout(timeout_s + self._rl.exec_grace_s):
                return await self._execute_and_wait(box_id, command, timeout_s, started)
        except TimeoutError:
            if started:
                await self._kill(box_id, started[0])
            return None

    async def _execute_and_wait(
        self, box_id: str, command: str, timeout_s: float, started: list[str]
    ) -> DevboxAsyncExecutionDetailView:
        client, poller = self._clients()
        hold = min(_LONG_POLL_S, math.ceil(timeout_s) + 2)
        with api_errors(f"run the program on devbox {box_id}", self._rl.max_retries):
            execution = await client.devboxes.execute(
                box_id,
                command=command,
                optimistic_timeout=hold,
                timeout=hold + REQUEST_TIMEOUT_S,
                idempotency_key=idempotency_key("execute"),
            )
        started.append(execution.execution_id)
        while execution.status != "completed":
            with api_errors(f"wait for the program on devbox {box_id}", 0):
                try:
                    execution = await poller.devboxes.wait_for_command(
                        execution.execution_id,
                        devbox_id=box_id,
                        statuses=["completed"],
                        timeout_seconds=_LONG_POLL_S,
                        timeout=_LONG_POLL_S + REQUEST_TIMEOUT_S,
                    )
                except APIStatusError as exc:  # 408: still running; keep waiting
                    if exc.status_code != 408:
                        raise
        return execution

    async def _write(self, box_id: str, path: str, text: str) -> None:
        client, _ = self._clients()
        with api_errors(f"write {path.rsplit('/', 1)[-1]} on devbox {box_id}", self._rl.max_retries):
            await client.devboxes.write_file_contents(
                box_id, file_path=path, contents=text, idempotency_key=idempotency_key("write")
            )

    async def _read(self, box_id: str, path: str, size: int) -> str:
        if size == 0:
            return ""
        client, _ = self._clients()
        with api_errors(f"read the output on devbox {box_id}", self._rl.max_retries):
            return await client.devboxes.read_file_contents(box_id, file_path=path)

    async def _shell(self, box_id: str, command: str, action: str) -> None:
        """A short housekeeping command that must succeed."""
        client, _ = self._clients()
        try:
            with api_errors(f"{action} on devbox {box_id}", self._rl.max_retries):
                execution = await client.devboxes.execute(
                    box_id, command=command, optimistic_timeout=_LONG_POLL_S, idempotency_key=idempotency_key("shell")
                )
        except SandboxUnavailableError:
            await self._raise_if_dead(box_id)
            raise
        if execution.status != "completed" or execution.exit_status != 0:
            detail = (execution.stderr or "").strip()[-200:] or f"status {execution.status}"
            raise SandboxUnavailableError(f"could not {action} on devbox {box_id}: {detail}")

    async def _kill(self, box_id: str, execution_id: str) -> None:
        client, _ = self._clients()
        try:
            with api_errors(f"kill the program on devbox {box_id}", self._rl.max_retries):
                await client.devboxes.executions.kill(
                    execution_id, devbox_id=box_id, kill_process_group=True, idempotency_key=idempotency_key("kill")
                )
        except SandboxUnavailableError as exc:
            log.warning("%s", exc)

    async def _raise_if_dead(self, box_id: str) -> None:
        """After a failed call: if the devbox is no longer running, say so instead of the API error."""
        client, _ = self._clients()
        with contextlib.suppress(SandboxUnavailableError), api_errors(f"check devbox {box_id}", 0):
            view = await client.devboxes.retrieve(box_id)
            if view.status != "running":
                raise _DevboxDied(box_id, view.status, view.failure_reason)

    def _clients(self) -> tuple[AsyncRunloop, AsyncRunloop]:
        assert self._client is not None and self._poller is not None
        return self._client, self._poller
