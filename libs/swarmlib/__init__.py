"""Code shared by every Swarm service: errors, config, server bootstrap, LLM client, extraction."""

from __future__ import annotations

from ._channels import open_channel
from ._config import env_bool, env_float, env_int, env_str
from ._errors import (
    ConfigError,
    InvalidArgumentError,
    LLMConnectError,
    LLMEmptyError,
    LLMError,
    LLMHTTPError,
    LLMMalformedError,
    LLMTimeoutError,
    NotFoundError,
    QuorumNotReachedError,
    ResourceExhaustedError,
    SandboxUnavailableError,
    StageError,
    SwarmError,
    mapped_error_types,
    status_for,
)
from ._extract import entry_points, extract_code, task_code
from ._instances import InstanceSpec, load_instances, parse_instances
from ._llm import PURPOSE_HEADER, RUN_HEADER, ChatClient, ChatResult, Endpoint, RetryPolicy, list_models
from ._scoring import assessment_score, ranking_score
from ._server import SwarmServer, build_server, serve_until_terminated
from ._telemetry import configure_tracing

__all__ = [
    "PURPOSE_HEADER",
    "RUN_HEADER",
    "ChatClient",
    "ChatResult",
    "ConfigError",
    "Endpoint",
    "InstanceSpec",
    "InvalidArgumentError",
    "LLMConnectError",
    "LLMEmptyError",
    "LLMError",
    "LLMHTTPError",
    "LLMMalformedError",
    "LLMTimeoutError",
    "NotFoundError",
    "QuorumNotReachedError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "SandboxUnavailableError",
    "StageError",
    "SwarmError",
    "SwarmServer",
    "assessment_score",
    "build_server",
    "configure_tracing",
    "entry_points",
    "env_bool",
    "env_float",
    "env_int",
    "env_str",
    "extract_code",
    "list_models",
    "load_instances",
    "mapped_error_types",
    "open_channel",
    "parse_instances",
    "ranking_score",
    "serve_until_terminated",
    "status_for",
    "task_code",
]
