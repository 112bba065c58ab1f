"""OpenTelemetry set-up driven by the standard ``OTEL_*`` variables.

The exporter choice follows the spec's ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none``);
when it is unset we export over OTLP only if an endpoint is configured, so a laptop without a
collector (or Jaeger) stays quiet instead of logging connection errors.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from ._errors import ConfigError

_configured: dict[str, TracerProvider] = {}


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    names = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not names:
        has_endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        names = "otlp" if has_endpoint else "none"
    return [n.strip() for n in names.split(",") if n.strip() not in {"", "none"}]


def exports_traces(env: Mapping[str, str]) -> bool:
    """Whether ``configure_tracing`` with ``env`` sends spans anywhere."""
    return bool(_exporter_names(env))


def _exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in _exporter_names(env):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r} is not supported (use otlp, console or none)")
    return exporters


def configure_tracing(default_service_name: str, env: Mapping[str, str]) -> TracerProvider:
    """Build (once per service name in a process) the tracer provider and make it global.

    Tests start several services in one process; each gets its own provider so spans carry the
    right ``service.name``, and repeated calls return the provider already built.
    """
    service_name = env.get("OTEL_SERVICE_NAME", "").strip() or default_service_name
    if service_name in _configured:
        return _configured[service_name]
    resource = Resource.create({"service.name": service_name})
    provider = TracerProvider(resource=resource)
    for exporter in _exporters(env):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if not _configured:
        trace.set_tracer_provider(provider)
    _configured[service_name] = provider
    return provider
