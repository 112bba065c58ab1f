"""The fake Runloop API's tunnel gateway: Runloop's tunnel hosts, as paths on the fake's own port.

``enable_tunnel`` (or a ``tunnel`` given at create) returns a ``TunnelView`` whose ``tunnel_key``
addresses the devbox's ports. A real tunnel is a host name
(``https://{port}-{tunnel_key}.tunnel.runloop.ai``) that needs DNS; here it is the path
``/tunnel/{port}-{tunnel_key}/...``, and the gateway forwards each request to a local server
standing in for what listens on that port inside the devbox (e.g. a fake OpenAI server). It
answers 502 while the devbox is not running, while nothing listens on the port or before the
fake's ``server_start_delay_s`` has passed since the devbox came up, as a tunnel in front of a
model server still loading would.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .fake_runloop_state import ApiError, FakeDevbox, RecordedRequest
from .http1 import HttpRequest, send_json

if TYPE_CHECKING:
    from .fake_runloop import FakeRunloopAPI

TUNNEL_PREFIX = "/tunnel/"
_TUNNEL_PATH = re.compile(r"/tunnel/(?P<port>\d+)-(?P<key>[^/]+)(?P<rest>/.*)?")
_HOP_BY_HOP = frozenset({"host", "connection", "keep-alive", "x-runloop-tunnel-authorization"})


@dataclass
class TunnelGateway:
    """The tunnels of one fake API's devboxes and the local servers behind their ports."""

    api: FakeRunloopAPI
    servers: dict[int, int] = field(default_factory=dict)  # devbox port -> local port, for every devbox
    keys: dict[str, str] = field(default_factory=dict)  # tunnel key -> devbox id

    def open(self, box: FakeDevbox, args: dict[str, Any]) -> dict[str, Any]:
        """A ``TunnelView``: open unless ``auth_mode`` asks for a bearer token."""
        key = f"tk{uuid.uuid4().hex}"
        self.keys[key] = box.id
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

    def close(self, box: FakeDevbox) -> None:
        """Remove the devbox's tunnel: its key addresses nothing any more."""
        if box.tunnel is not None:
            self.keys.pop(box.tunnel["tunnel_key"], None)
            box.tunnel = None

    async def relay(self, request: HttpRequest, query: dict[str, str], body: Any, writer: asyncio.StreamWriter) -> bool:
        """Forward one request through a tunnel to the server on the devbox's port, or say why not."""
        path = urlsplit(request.path).path
        status, message, target = self.target(path, request.headers)
        record = RecordedRequest(request.method, path, "tunnel", query, dict(request.headers), body, status)
        if target is None:
            self.api.requests.append(record)
            await send_json(writer, status, {"error": message}, request.keep_alive, {})
            return request.keep_alive
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            self.api.requests.append(dataclasses.replace(record, status=502))
            await send_json(writer, 502, {"error": "connection refused by the devbox's server"}, request.keep_alive, {})
            return request.keep_alive
        try:
            status = await self._forward(request, target, upstream_reader, upstream, writer)
        finally:
            upstream.close()
            with contextlib.suppress(Exception):
                await upstream.wait_closed()
        self.api.requests.append(dataclasses.replace(record, status=status))
        return False  # the answer was relayed until the server closed: close the client's connection too

    def target(self, path: str, headers: dict[str, str]) -> tuple[int, str, int | None]:
        """(status, reason, local port): a port when the request can be forwarded, else an error status."""
        match = _TUNNEL_PATH.fullmatch(path)
        box = self.api.devboxes.get(self.keys.get(match["key"], "")) if match else None
        if match is None or box is None or box.tunnel is None:
            return 404, "no such tunnel", None
        token = box.tunnel.get("auth_token")
        if token and headers.get("x-runloop-tunnel-authorization") != f"Bearer {token}":
            return 401, "missing or invalid tunnel token", None
        if box.status != "running" or box.running_since is None:
            return 502, f"devbox is not running (status {box.status})", None
        port = int(match["port"])
        target = box.ports[port] if port in box.ports else self.servers.get(port)
        if target is None or time.monotonic() - box.running_since < self.api.server_start_delay_s:
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
            await send_json(writer, 502, {"error": "the devbox's server closed the connection"}, False, {})
            return 502
        return status
