"""Transport security of every gRPC hop: one typed config read from the environment at start-up.

The rules (which variables, what the absence of all of them means, why loopback plaintext is the
default) are in docs/tls.md. Everything that can be wrong with the files (unreadable, not PEM, a
key that does not match its certificate) is found here, before any port is bound, and reported
with the variable that names the file.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from ._config import env_bool, env_str
from ._errors import ConfigError

log = logging.getLogger(__name__)

PLAINTEXT_VAR = "SWARM_PLAINTEXT"
CERT_VAR = "SWARM_TLS_CERT"
KEY_VAR = "SWARM_TLS_KEY"
CA_VAR = "SWARM_TLS_CA"
CLIENT_AUTH_VAR = "SWARM_TLS_CLIENT_AUTH"
HEALTH_ADDR_VAR = "SWARM_HEALTH_ADDR"
TLS_VARIABLES = (CERT_VAR, KEY_VAR, CA_VAR, CLIENT_AUTH_VAR)

_HOW_TO_CHOOSE = (
    f"set {CERT_VAR} and {KEY_VAR} (and {CA_VAR}, {CLIENT_AUTH_VAR}=true for mTLS), "
    f"or {PLAINTEXT_VAR}=true to go without TLS on purpose"
)


@dataclass(frozen=True)
class PemFile:
    """A PEM file named by a variable, read once at start-up (the services never re-read it)."""

    variable: str
    path: Path
    data: bytes = field(repr=False)

    def __str__(self) -> str:
        return f"{self.variable}={str(self.path)!r}"


def _read(env: Mapping[str, str], variable: str) -> PemFile | None:
    raw = env_str(env, variable, "")
    if not raw:
        return None
    path = Path(raw).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}={raw!r} cannot be read: {exc.strerror or exc}") from None
    return PemFile(variable, path, data)


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    return b""


def _check_certificates(pem: PemFile, what: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=pem.data.decode("ascii", errors="replace"))
    except (ssl.SSLError, ValueError):
        raise ConfigError(f"{pem} holds no PEM certificate; it must be {what}") from None


def _check_pair(cert: PemFile, key: PemFile) -> None:
    _check_certificates(cert, "this service's certificate (chain), PEM")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert.path, key.path, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"{key} does not match the certificate in {cert}: give the key it was issued for"
            ) from None
        raise ConfigError(f"{key} is not an unencrypted PEM private key ({exc.reason or exc})") from None


@dataclass(frozen=True)
class TlsConfig:
    """How this process speaks on the wire, as a server and as a client.

    ``cert``/``key`` are this process's identity: the certificate it serves and, where the server
    it calls asks for one, the client certificate it presents. ``ca`` is what signs the peers:
    trusted for their server certificates and, with ``client_auth``, required for their client
    certificates (mTLS). ``plaintext`` says "no TLS" on purpose; with none of it set, only
    loopback addresses may be used, in plaintext.
    """

    plaintext: bool = False
    cert: PemFile | None = None
    key: PemFile | None = field(default=None, repr=False)
    ca: PemFile | None = None
    client_auth: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TlsConfig:
        plaintext = env_bool(env, PLAINTEXT_VAR, False)
        client_auth = env_bool(env, CLIENT_AUTH_VAR, False)
        cert, key, ca = _read(env, CERT_VAR), _read(env, KEY_VAR), _read(env, CA_VAR)
        if plaintext and (cert or key or ca or client_auth):
            given = ", ".join(v for v in TLS_VARIABLES if env_str(env, v, ""))
            raise ConfigError(f"{PLAINTEXT_VAR}=true and {given} are both set: choose TLS or plaintext")
        if (cert is None) != (key is None):
            present, missing = (CERT_VAR, KEY_VAR) if key is None else (KEY_VAR, CERT_VAR)
            raise ConfigError(f"{present} is set but {missing} is not: a certificate needs its private key")
        if client_auth and ca is None:
            raise ConfigError(f"{CLIENT_AUTH_VAR}=true needs {CA_VAR}, the CA whose client certificates are accepted")
        if client_auth and cert is None:
            raise ConfigError(f"{CLIENT_AUTH_VAR}=true needs {CERT_VAR} and {KEY_VAR}: an mTLS server is a TLS server")
        if cert is not None and key is not None:
            _check_pair(cert, key)
        if ca is not None:
            _check_certificates(ca, "the CA certificate(s) that sign the peers, PEM")
        return cls(plaintext=plaintext, cert=cert, key=key, ca=ca, client_auth=client_auth)

    @property
    def uses_tls(self) -> bool:
        """Whether any TLS setting is given (servers then need a certificate, clients use TLS)."""
        return self.cert is not None or self.ca is not None

    def check_server(self, address: str, variable: str) -> None:
        """Refuse to serve ``address`` (named by ``variable``) in a way the config did not ask for."""
        if self.plaintext:
            return
        if self.cert is None and self.ca is not None:
            raise ConfigError(
                f"{self.ca} is set but {CERT_VAR} and {KEY_VAR} are not: a TLS server needs its own certificate and key"
            )
        if self.cert is None and not is_loopback(address):
            raise ConfigError(
                f"{variable}={address!r} is not a loopback address and no TLS is configured: {_HOW_TO_CHOOSE}"
            )

    def check_client(self, target: str, variable: str) -> None:
        """Refuse to call ``target`` (named by ``variable``) in plaintext unless the config says so."""
        if self.plaintext or self.uses_tls or is_loopback(target):
            return
        raise ConfigError(
            f"{variable}={target!r} is not a loopback address and no TLS is configured: set {CA_VAR} (and "
            f"{CERT_VAR}, {KEY_VAR} where the server requires client certificates), or {PLAINTEXT_VAR}=true"
        )

    def server_credentials(self) -> Any:
        """``grpc.ServerCredentials``, or None for plaintext."""
        if self.plaintext or self.cert is None or self.key is None:
            return None
        return grpc.ssl_server_credentials(
            [(self.key.data, self.cert.data)],
            root_certificates=self.ca.data if self.client_auth and self.ca is not None else None,
            require_client_auth=self.client_auth,
        )

    def channel_credentials(self) -> Any:
        """``grpc.ChannelCredentials`` (``ca``, else the system's roots), or None for plaintext."""
        if self.plaintext or not self.uses_tls:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.data if self.ca is not None else None,
            private_key=self.key.data if self.key is not None else None,
            certificate_chain=self.cert.data if self.cert is not None else None,
        )

    def describe(self) -> str:
        """How a server with this config serves, for its start-up log line."""
        if self.server_credentials() is None:
            return "plaintext"
        return "mTLS (client certificates required)" if self.client_auth else "TLS"


@dataclass(frozen=True)
class Transport:
    """A server's TLS config and where it also answers health checks in plaintext, if anywhere.

    The health-only port exists because the kubelet's native gRPC probe cannot speak TLS; it serves
    ``grpc.health.v1.Health`` alone (docs/tls.md).
    """

    tls: TlsConfig = field(default_factory=TlsConfig)
    health_address: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], address_variable: str, address: str) -> Transport:
        """The transport of a server bound to ``address``; refused here, at start-up, if it would
        serve that address in a way the config does not say."""
        tls = TlsConfig.from_env(env)
        tls.check_server(address, address_variable)
        return cls(tls, env_str(env, HEALTH_ADDR_VAR, ""))


def _hosts(address: str) -> list[str] | None:
    """The host part(s) of a gRPC bind address or target; None for a Unix socket (always local)."""
    if address.startswith(("unix:", "unix-abstract:")):
        return None
    if address.startswith("dns:"):
        address = address.removeprefix("dns:")
        if address.startswith("//"):  # dns://authority/host:port
            address = address[2:].partition("/")[2]
        address = address.lstrip("/")
    elif address.startswith(("ipv4:", "ipv6:")):
        address = address[5:]
    hosts = []
    for part in address.split(","):
        if part.startswith("["):
            hosts.append(part[1 : part.find("]")])
        else:
            host, sep, _ = part.rpartition(":")
            hosts.append(host if sep else part)
    return hosts


def is_loopback(address: str) -> bool:
    """Whether every host of ``address`` is a loopback one (``localhost``, 127.0.0.0/8, ``::1``).

    Names other than ``localhost`` are not resolved: they count as remote.
    """
    hosts = _hosts(address)
    if hosts is None:
        return True

    def loopback(host: str) -> bool:
        if host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    return all(loopback(host) for host in hosts)


def bind(server: Any, address: str, tls: TlsConfig, variable: str = "address") -> int:
    """Bind ``address`` on a ``grpc.aio.Server`` with TLS or in plaintext, as ``tls`` says; the port."""
    tls.check_server(address, variable)
    credentials = tls.server_credentials()
    if credentials is None:
        if not is_loopback(address):
            log.warning("serving %s in plaintext (%s=true)", address, PLAINTEXT_VAR)
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"could not bind {address}")
    return int(port)


def grpc_channel(
    target: str,
    tls: TlsConfig,
    *,
    variable: str = "target",
    server_name: str = "",
    interceptors: Sequence[Any] | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A channel to ``target`` with TLS or in plaintext, as ``tls`` says.

    ``server_name``: the name the server's certificate must carry when it is not the target's host
    (a tunnel or port-forward to 127.0.0.1, say).
    """
    tls.check_client(target, variable)
    credentials = tls.channel_credentials()
    all_options = [*options]
    if server_name:
        all_options.append(("grpc.ssl_target_name_override", server_name))
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=all_options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=all_options, interceptors=interceptors)
