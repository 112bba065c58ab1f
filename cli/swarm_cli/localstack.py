"""``swarm up``: the local stack — N real Qwen instances, the four services and, for the web page,
the gRPC-web gateway and the Worker, as child processes.

Every child is started with an explicit environment and stopped with SIGTERM (then SIGKILL after a
grace period), so ``swarm up`` leaves nothing behind when it exits, whichever way it exits. The
services speak plaintext on 127.0.0.1, said explicitly (``SWARM_PLAINTEXT=true``), unless the
environment sets ``SWARM_TLS_*``: then every hop from the CLI to the stages is TLS (docs/tls.md).
Callers authenticate with API keys: the stack makes its own on first start (``local_keys``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from swarmlib import DEFAULT_METRICS_PORTS, METRICS_ADDR_VAR, ConfigError, TlsConfig, grpc_channel
from swarmlib.api_keys import KEYS_FILE_VAR, default_keys_file

from .children import Child, spawn, stop as stop_children
from .gateway import envoy_binary, start_gateway
from .gateway_config import GatewayConfigError, GatewaySettings, validate
from .gateway_tls import UpstreamTls
from .local_keys import CLI_KEY, WORKER_KEY, ensure_key, local_principal
from .models import RECIPES, prepare_model
from .prometheus import PrometheusError, prometheus_binary, start_prometheus
from .worker_dev import LOCAL_USER, fresh_vars, missing_toolchain, page_url, start_worker

SERVICE_PORTS = {"orchestrator": 50051, "collator": 50052, "assessor": 50053, "refiner": 50054}
# Distinct instances differ by seed and temperature (the brief asks for at least that).
INSTANCE_TEMPERATURES = (0.2, 0.5, 0.8, 0.35, 0.65, 0.95, 0.1)
# The refine-only instance of ``--refine-model``: a rewrite wants the model's likeliest text, and
# two slots let two runs refine at once.
REFINE_INSTANCE = "qwen-refine"
REFINE_TEMPERATURE = 0.2
REFINE_PARALLEL = 2


@dataclass(frozen=True)
class WebSettings:
    """Where the gateway and the page listen, and which browser origins the gateway lets call."""

    gateway_port: int = 8080
    web_port: int = 8787
    allowed_origins: tuple[str, ...] = ()  # empty: the page's own origin, by address and by name

    def origins(self, host: str) -> tuple[str, ...]:
        return self.allowed_origins or (f"http://{host}:{self.web_port}", f"http://localhost:{self.web_port}")


@dataclass(frozen=True)
class StackSettings:
    """What ``swarm up`` starts and where (``web`` None: no gateway, no page)."""

    home: Path
    instances: int
    model: str
    first_instance_port: int
    threads: int
    layout: str = "shared"
    host: str = "127.0.0.1"
    web: WebSettings | None = None
    # ``--observe``: the port of a Prometheus scraping the services (None: no Prometheus).
    observe_port: int | None = None
    # ``--refine-model``: a model server of its own for the refine-only instance (None: the best
    # answer's instance refines), on ``refine_port`` (0: the port after the instances' servers).
    refine_model: str | None = None
    refine_port: int = 0

    @property
    def servers(self) -> int:
        """Model server processes: one shared by every instance, or one per instance."""
        return 1 if self.layout == "shared" else self.instances

    @property
    def refine_server_port(self) -> int:
        return self.refine_port or self.first_instance_port + self.servers


@dataclass(frozen=True)
class WebEndpoints:
    """What ``swarm up`` serves for browsers: the gateway, and the page or why it was skipped."""

    gateway_url: str
    page_url: str | None
    skipped: str | None = None


def transport_env(tls: TlsConfig) -> dict[str, str]:
    """What ``swarm up`` adds to the services' environment: plaintext, said so, unless TLS is set."""
    return {} if tls.uses_tls else {"SWARM_PLAINTEXT": "true"}


def gateway_upstream(tls: TlsConfig) -> UpstreamTls | None:
    """The gateway's TLS to the orchestrator: the stack's CA, and its certificate as the client's."""
    if not tls.uses_tls:
        return None
    if tls.ca is None:
        raise ConfigError(
            "the gateway checks the orchestrator's certificate against SWARM_TLS_CA: set it (or --no-web)"
        )
    cert, key = (str(tls.cert.path), str(tls.key.path)) if tls.cert is not None and tls.key is not None else ("", "")
    return UpstreamTls(str(tls.ca.path), cert, key)


def stack_keys(home: Path, env: Mapping[str, str]) -> tuple[Path, str]:
    """The keys file the stack's orchestrator reads and the local approver key (``$SWARM_HOME/cli-key``,
    made on first start) that the ``swarm`` commands send."""
    keys_file = default_keys_file({**env, "SWARM_HOME": str(home)})
    return keys_file, ensure_key(keys_file, home / CLI_KEY, local_principal(env), "approver")


def worker_key(home: Path, keys_file: Path) -> str:
    """The Worker's service key (its GATEWAY_TOKEN): it names the page's user to the orchestrator."""
    return ensure_key(keys_file, home / WORKER_KEY, "worker", "service")


def instance_slots(settings: StackSettings, index: int) -> int:
    """The requests instance ``index`` may have at once: its server's n_parallel (2) when it has a
    server of its own; on the shared server (instances + 1 slots) one each, and the spare one for
    the first instance, which also writes the tests. The run queue counts with these."""
    if settings.layout != "shared":
        return 2
    return 2 if index == 0 else 1


def instances_document(settings: StackSettings, model_id: str) -> list[dict[str, object]]:
    """The instances file the orchestrator reads (local, free: price 0)."""
    return [
        {
            "name": f"qwen-{i + 1}",
            "base_url": f"http://{settings.host}:{settings.first_instance_port + i % settings.servers}/v1",
            "model": model_id,
            "temperature": INSTANCE_TEMPERATURES[i % len(INSTANCE_TEMPERATURES)],
            "seed": 1000 * (i + 1),
            "price_input_per_mtok": 0.0,
            "price_output_per_mtok": 0.0,
            "slots": instance_slots(settings, i),
        }
        for i in range(settings.instances)
    ] + refine_entries(settings)


def refine_entries(settings: StackSettings) -> list[dict[str, object]]:
    """The refine-only instance of ``--refine-model`` (the orchestrator's SWARM_REFINE_INSTANCE)."""
    if settings.refine_model is None:
        return []
    return [
        {
            "name": REFINE_INSTANCE,
            "base_url": f"http://{settings.host}:{settings.refine_server_port}/v1",
            "model": settings.refine_model,
            "temperature": REFINE_TEMPERATURE,
            "seed": 999,
            "price_input_per_mtok": 0.0,
            "price_output_per_mtok": 0.0,
            "slots": REFINE_PARALLEL,
        }
    ]


def refine_env(settings: StackSettings) -> dict[str, str]:
    """What the orchestrator is told of the refine-only instance, when there is one."""
    return {} if settings.refine_model is None else {"SWARM_REFINE_INSTANCE": REFINE_INSTANCE}


class LocalStack:
    """Starts, watches and stops the children."""

    def __init__(self, settings: StackSettings, service_ports: Mapping[str, int] = SERVICE_PORTS) -> None:
        self._settings = settings
        self._service_ports = dict(service_ports)
        self._children: list[Child] = []
        self._logs = settings.home / "logs"
        self._tls = TlsConfig()
        self.web: WebEndpoints | None = None
        self.prometheus_url: str | None = None
        # The local approver key the stack's clients send (``$SWARM_HOME/cli-key``), once started.
        self.cli_key = ""

    async def _spawn(self, name: str, args: list[str], env: Mapping[str, str]) -> Child:
        child = await spawn(name, args, env, self._logs)
        self._children.append(child)
        return child

    async def _wait_http(self, child: Child, url: str, deadline: float) -> None:
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if child.process.returncode is not None:
                    raise child.failure(f"exited with status {child.process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.3)
        raise child.failure(f"did not answer {url} in time")

    async def _warm_up(self, base_url: str, model: str) -> None:
        """One tiny generation so the first user request does not pay for paging the weights in."""
        body = {"model": model, "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 4}
        async with httpx.AsyncClient(timeout=60.0) as http:
            with contextlib.suppress(httpx.HTTPError):
                await http.post(f"{base_url}/chat/completions", json=body)

    async def _wait_grpc(self, child: Child, target: str, deadline: float) -> None:
        async with grpc_channel(target, self._tls) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if child.process.returncode is not None:
                    raise child.failure(f"exited with status {child.process.returncode}")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.3)
        raise child.failure(f"was not SERVING on {target} in time")

    async def start(self, base_env: Mapping[str, str], timeout: float = 240.0) -> dict[str, str]:
        """Start everything and return the addresses; raises with the failing child's log tail."""
        settings = self._settings
        deadline = time.monotonic() + timeout
        targets = {name: f"{settings.host}:{port}" for name, port in self._service_ports.items()}
        self._tls = TlsConfig.from_env(base_env)  # fail before the slow part, not after it
        if settings.web is not None:
            validate(self._gateway_settings(settings.web, targets["orchestrator"]))
            envoy_binary()
        if settings.observe_port is not None:
            prometheus_binary()
        metrics = {name: f"{settings.host}:{DEFAULT_METRICS_PORTS[name]}" for name in self._service_ports}
        recipe = RECIPES[settings.model]
        servers = []
        # A shared server decodes every instance's request in one batch (n_parallel slots, plus one
        # for fallbacks); separate servers isolate failures but split the cores between processes.
        parallel = settings.instances + 1 if settings.layout == "shared" else 2
        for i in range(settings.servers):
            name = "qwen-server" if settings.layout == "shared" else f"qwen-{i + 1}"
            servers.append((name, settings.model, settings.first_instance_port + i, parallel))
        if settings.refine_model is not None:
            servers.append((REFINE_INSTANCE, settings.refine_model, settings.refine_server_port, REFINE_PARALLEL))
        instance_children = []
        for name, model, port, slots in servers:
            alias = RECIPES[model].name
            path = prepare_model(RECIPES[model], settings.home / "models")
            child = await self._spawn(
                name,
                [sys.executable, "-m", "swarm_cli.qwen_server", "--model", str(path), "--alias", alias,
                 "--host", settings.host, "--port", str(port), "--threads", str(settings.threads),
                 "--parallel", str(slots)],
                base_env,
            )  # fmt: skip
            instance_children.append((child, f"http://{settings.host}:{port}/v1/models", alias))
        for child, url, alias in instance_children:
            await self._wait_http(child, url, deadline)
            await self._warm_up(url.removesuffix("/models"), alias)
        keys_file, self.cli_key = stack_keys(settings.home, base_env)
        instances_file = settings.home / "instances.json"
        instances_file.write_text(json.dumps(instances_document(settings, recipe.name), indent=2))
        env = {
            **base_env,
            "SWARM_HOME": str(settings.home),
            "SWARM_INSTANCES_FILE": str(instances_file),
            "HF_HUB_OFFLINE": "1",
            "SWARM_COLLATOR_ADDR": targets["collator"],
            "SWARM_ASSESSOR_ADDR": targets["assessor"],
            "SWARM_REFINER_ADDR": targets["refiner"],
            "SWARM_ORCHESTRATOR_ADDR": targets["orchestrator"],
            "SWARM_COLLATOR_TARGET": targets["collator"],
            "SWARM_ASSESSOR_TARGET": targets["assessor"],
            "SWARM_REFINER_TARGET": targets["refiner"],
            KEYS_FILE_VAR: str(keys_file),
            **transport_env(self._tls),
            **refine_env(settings),
        }
        services = []
        for name in ("collator", "assessor", "refiner", "orchestrator"):
            env_for = {
                **env,
                "OTEL_SERVICE_NAME": env.get("OTEL_SERVICE_NAME", f"swarm-{name}"),
                METRICS_ADDR_VAR: metrics[name],
            }
            child = await self._spawn(name, [sys.executable, "-m", f"swarm_{name}"], env_for)
            services.append((child, targets[name]))
        for child, target in services:
            await self._wait_grpc(child, target, deadline)
        if settings.web is not None:
            first = instances_document(settings, recipe.name)[0]  # normal mode: one instance answers
            chat = (str(first["base_url"]), str(first["model"]))
            token = worker_key(settings.home, keys_file)
            self.web = await self._start_web(settings.web, targets["orchestrator"], chat, base_env, deadline, token)
        if settings.observe_port is not None:
            prometheus = await start_prometheus(
                metrics, settings.home / "prometheus", host=settings.host, port=settings.observe_port,
                log_dir=self._logs, timeout=max(1.0, deadline - time.monotonic()),
            )  # fmt: skip
            self._children.append(prometheus.child)
            self.prometheus_url = prometheus.url
        return targets

    def _gateway_settings(self, web: WebSettings, orchestrator: str) -> GatewaySettings:
        host, _, port = orchestrator.rpartition(":")
        origins = web.origins(self._settings.host)
        return GatewaySettings(
            self._settings.host, web.gateway_port, host, int(port), origins, gateway_upstream(self._tls)
        )

    async def _start_web(
        self,
        web: WebSettings,
        orchestrator: str,
        chat: tuple[str, str],
        env: Mapping[str, str],
        deadline: float,
        gateway_token: str,
    ) -> WebEndpoints:
        """The gateway in front of the orchestrator, then the Worker in front of both, if it is installed."""
        settings = self._gateway_settings(web, orchestrator)
        timeout = max(1.0, deadline - time.monotonic())
        gateway = await start_gateway(settings, self._settings.home / "gateway", env, timeout, log_dir=self._logs)
        self._children.append(gateway.child)
        skipped = missing_toolchain()
        if skipped is not None:
            return WebEndpoints(gateway.url, None, skipped)
        worker_vars = fresh_vars(gateway.url, *chat, gateway_token=gateway_token)
        worker = await start_worker(web.web_port, worker_vars, env, self._logs, deadline)
        self._children.append(worker)
        return WebEndpoints(gateway.url, page_url(web.web_port, worker_vars.api_key, self._settings.host))

    def crashed(self) -> Child | None:
        return next((c for c in self._children if c.process.returncode is not None), None)

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every child (the page and gateway first, instances last), SIGKILL what outlives ``grace``."""
        await stop_children(list(reversed(self._children)), grace)
        self._children.clear()


async def run_stack(settings: StackSettings, env: Mapping[str, str]) -> int:
    """``swarm up``: start, print where things are, run until SIGTERM/SIGINT or a child dies."""
    stack = LocalStack(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        web = "" if settings.web is None else ", the gateway and the page"
        refine = "" if settings.refine_model is None else f", {settings.refine_model} to refine"
        print(f"starting {settings.instances} local Qwen instances{refine}, the four services{web} ...", flush=True)
        targets = await stack.start(env)
        print(f"swarm is up: orchestrator at {targets['orchestrator']} (logs in {settings.home / 'logs'})", flush=True)
        print(f"the swarm commands send the local approver key in {settings.home / CLI_KEY}", flush=True)
        if stack.web is not None:
            print(f"gateway (gRPC-web) at {stack.web.gateway_url}", flush=True)
            if stack.web.page_url is not None:
                print(f"open the page: {stack.web.page_url}  (user {LOCAL_USER!r}; the key is new at every start)",
                      flush=True)  # fmt: skip
            else:
                print(f"no web page: {stack.web.skipped}", flush=True)
        if stack.prometheus_url is not None:
            print(f"Prometheus at {stack.prometheus_url} (scraping the four services; data in "
                  f"{settings.home / 'prometheus'})", flush=True)  # fmt: skip
        print("ready", flush=True)
        while not stop.is_set():
            crashed = stack.crashed()
            if crashed is not None:
                print(f"{crashed.name} exited with status {crashed.process.returncode}; stopping", file=sys.stderr)
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        return 0
    except (RuntimeError, GatewayConfigError, ConfigError, PrometheusError) as exc:
        print(f"swarm up failed: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping the local stack ...", flush=True)
        await stack.stop()
        print("stopped", flush=True)
