/**
 * The Worker is a run's first hop from the page: it starts the trace with a W3C `traceparent`
 * that the gateway passes on as gRPC metadata, so the orchestrator's RunSwarm span and every hop
 * after it share the trace id logged here. The Worker exports no spans of its own (a Worker has
 * no OpenTelemetry SDK without bundling one): in Jaeger the trace's root is the orchestrator's
 * RunSwarm, whose parent id is this Worker span (docs/tracing.md).
 */

export interface TraceContext {
  readonly traceId: string;
  readonly spanId: string;
  /** `00-<trace id>-<span id>-01`: version 0, sampled. */
  readonly traceparent: string;
}

function hex(bytes: number): string {
  const values = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(values, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A new trace (random ids; all-zero ids are invalid and drawn again). */
export function newTrace(): TraceContext {
  let traceId = hex(16);
  while (/^0+$/.test(traceId)) {
    traceId = hex(16);
  }
  let spanId = hex(8);
  while (/^0+$/.test(spanId)) {
    spanId = hex(8);
  }
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}
