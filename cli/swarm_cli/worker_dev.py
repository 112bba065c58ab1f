"""The Worker and its page under ``wrangler dev``, started by ``swarm up`` beside the gateway.

The Worker's toolchain (Node, wrangler, workerd) lives in ``worker/node_modules``; how wrangler is
started is the Worker's business, so ``swarm up`` only runs ``worker/scripts/dev.sh PORT`` with
the Worker's local configuration in the environment (names in ``WorkerVars.env``). A fresh API
key and session secret are made at every start, so a page URL printed by an earlier ``swarm up``
stops working when that stack stops. The Worker reaches the orchestrator with a service key (its
GATEWAY_TOKEN), naming the page's user in ``x-swarm-user`` (docs/identity.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from .children import Child, spawn, stop

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_DIR = REPO_ROOT / "worker"
# The user the page acts as locally (the Worker's own user key); the orchestrator sees it as the
# user the Worker's service key names.
LOCAL_USER = "local"


@dataclass(frozen=True)
class WorkerVars:
    """What the Worker is configured with locally (``wrangler dev --var`` values)."""

    gateway_url: str
    chat_base_url: str
    chat_model: str
    api_key: str
    session_secret: str
    # The orchestrator's service key for the Worker, sent to the gateway as the bearer.
    gateway_token: str = ""

    def env(self) -> dict[str, str]:
        token = {"GATEWAY_TOKEN": self.gateway_token} if self.gateway_token else {}
        return {
            **token,
            "GATEWAY_URL": self.gateway_url,
            "CHAT_BASE_URL": self.chat_base_url,
            "CHAT_MODEL": self.chat_model,
            "SWARM_API_KEYS": f"{LOCAL_USER}:{self.api_key}",
            "SESSION_SECRET": self.session_secret,
            "WRANGLER_SEND_METRICS": "false",
        }


def fresh_vars(gateway_url: str, chat_base_url: str, chat_model: str, *, gateway_token: str = "") -> WorkerVars:
    """The Worker's configuration with a new random API key and session secret, and the service
    key it reaches the orchestrator with."""
    return WorkerVars(
        gateway_url, chat_base_url, chat_model, secrets.token_urlsafe(24), secrets.token_urlsafe(32), gateway_token
    )


def dev_script(worker_dir: Path = WORKER_DIR) -> Path:
    return worker_dir / "scripts" / "dev.sh"


def missing_toolchain(worker_dir: Path = WORKER_DIR) -> str | None:
    """Why the Worker cannot be started here, or None when it can."""
    if not (worker_dir / "node_modules").is_dir():
        return f"the Worker toolchain is not installed ({worker_dir / 'node_modules'} is missing)"
    if not dev_script(worker_dir).is_file():
        return f"{dev_script(worker_dir)} is missing"
    return None


def dev_command(port: int, worker_dir: Path = WORKER_DIR) -> list[str]:
    """The one command line that serves the Worker and its page on 127.0.0.1:``port``."""
    return ["bash", str(dev_script(worker_dir)), str(port)]


def page_url(port: int, api_key: str, host: str = "127.0.0.1") -> str:
    """The page with the key in the fragment (the page reads it once; a fragment is never sent)."""
    return f"http://{host}:{port}/#key={api_key}"


async def start_worker(
    port: int,
    worker_vars: WorkerVars,
    env: Mapping[str, str],
    log_dir: Path,
    deadline: float,
    worker_dir: Path = WORKER_DIR,
) -> Child:
    """Start ``wrangler dev`` and return once the page answers; stops it and raises with its log tail if not."""
    child = await spawn(
        "worker", dev_command(port, worker_dir), {**env, **worker_vars.env()}, log_dir, cwd=worker_dir, group=True
    )
    try:
        await _wait_serving(child, f"http://127.0.0.1:{port}/", deadline)
    except BaseException:
        await stop([child], grace=5.0)
        raise
    return child


async def _wait_serving(child: Child, url: str, deadline: float) -> None:
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if child.exited():
                raise child.failure(f"exited with status {child.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code < 500:
                    return
            await asyncio.sleep(0.3)
    raise child.failure(f"did not serve {url} in time")
