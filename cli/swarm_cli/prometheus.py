"""A real Prometheus as a child process: Debian's ``prometheus`` package, scraping the services.

``swarm up --observe`` and the tests start it the same way: a generated scrape config (one job
per service, its ``/metrics`` address), the repository's alert rules, a data directory of its
own, and return only once ``/-/ready`` answers. The config is written as JSON, which is YAML, so
no YAML library is needed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .children import Child, spawn, stop

# Debian's package (bookworm: 2.42); `make prometheus` installs it where it can.
INSTALL_HINT = "apt-get install prometheus (Debian's package; `make prometheus` does it as root)"
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
BIND_ATTEMPTS = 3


class PrometheusError(RuntimeError):
    """Prometheus cannot start; the message says what is missing or what it said."""


def prometheus_binary() -> Path:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else "")
    if not found:
        raise PrometheusError(f"Prometheus is not installed: {INSTALL_HINT}")
    return Path(found)


def scrape_config(targets: Mapping[str, str], interval_s: float, rule_files: Sequence[Path] = ()) -> str:
    """The config: job ``swarm-<service>`` scraping ``targets[service]`` (HOST:PORT) every ``interval_s``."""
    interval = f"{max(1, round(interval_s * 1000))}ms"
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": f"swarm-{service}", "static_configs": [{"targets": [address]}]}
            for service, address in sorted(targets.items())
        ],
    }
    return json.dumps(config, indent=2) + "\n"


@dataclass
class Prometheus:
    """A running Prometheus: its child process and its HTTP API's URL."""

    child: Child
    url: str

    async def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector of ``expression`` now (``/api/v1/query``)."""
        async with httpx.AsyncClient(timeout=5.0) as http:
            reply = (await http.get(f"{self.url}/api/v1/query", params={"query": expression})).json()
        if reply.get("status") != "success":
            raise PrometheusError(f"query {expression!r} failed: {reply.get('error', reply)}")
        return list(reply["data"]["result"])


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _write_config(workdir: Path, text: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(text)
    return config


async def _wait_ready(child: Child, url: str, deadline: float) -> None:
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if child.exited():
                raise child.failure(f"exited with status {child.process.returncode}")
            try:
                if (await http.get(f"{url}/-/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise child.failure(f"was not ready at {url} in time")


async def start_prometheus(
    targets: Mapping[str, str],
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 9090,
    interval_s: float = 5.0,
    rule_files: Sequence[Path] = (RULES,),
    log_dir: Path | None = None,
    timeout: float = 30.0,
) -> Prometheus:
    """Start Prometheus scraping ``targets`` (service name -> metrics HOST:PORT) with its config and
    data under ``workdir`` (``port`` 0: a free one); raises ``PrometheusError`` without the binary
    and ``RuntimeError`` with its log tail when it exits or is not ready before ``timeout``."""
    binary = prometheus_binary()
    config = _write_config(workdir, scrape_config(targets, interval_s, [p for p in rule_files if p.is_file()]))
    deadline = time.monotonic() + timeout
    attempts = BIND_ATTEMPTS if port == 0 else 1
    for attempt in range(1, attempts + 1):
        chosen = port or _free_port(host)
        url = f"http://{host}:{chosen}"
        args = [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={host}:{chosen}",
            "--log.level=warn",
        ]
        child = await spawn("prometheus", args, dict(os.environ), log_dir or workdir)
        try:
            await _wait_ready(child, url, deadline)
        except RuntimeError:
            await stop([child], grace=2.0)
            if attempt < attempts and "address already in use" in child.output().lower():
                continue
            raise
        except BaseException:
            await stop([child], grace=2.0)
            raise
        return Prometheus(child, url)
    raise AssertionError("unreachable: the last attempt returns or raises")
