/**
 * Swarm mode: RunSwarm through the gateway, every progress event relayed as it arrives, and a
 * run followed by id. The first event is awaited before the response starts, so a request the
 * orchestrator refuses gets its HTTP status instead of a 200 with an error inside.
 */
import { type DescMessage, type MessageShape, create, toJson } from "@bufbuild/protobuf";

import {
  type Run,
  RunSchema,
  RunStatus,
  type RunSwarmRequest,
  RunSwarmRequestSchema,
  RunSwarmResponseSchema,
} from "../gen/swarm/v1/orchestrator_pb.js";
import type { SwarmOptions } from "../shared/options.js";
import { type Orchestrator, asUser, streamAsUser } from "./gateway.js";
import { newTrace } from "./trace.js";
import { apiErrorFromGateway } from "./grpc_status.js";
import type { OutEvent } from "./stream.js";

/** Proto JSON as the API sends it: lowerCamelCase names, every field present, enums by name. */
export function protoJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): unknown {
  return toJson(schema, message, { alwaysEmitImplicit: true });
}

export function runSwarmRequest(options: SwarmOptions): RunSwarmRequest {
  return create(RunSwarmRequestSchema, {
    task: options.task,
    swarmSize: options.size === "auto" ? 0 : options.size,
    instances: [...options.instances],
    skipRefine: !options.refine,
    instanceTimeoutSeconds: options.timeoutSeconds ?? 0,
    tests: [...options.tests],
    streamOutput: true,
  });
}

/** Starts the run; resolves once the orchestrator has accepted it, with its events to relay. */
export async function startRun(
  orchestrator: Orchestrator,
  options: SwarmOptions,
  user: string,
  signal: AbortSignal,
): Promise<AsyncGenerator<OutEvent>> {
  const trace = newTrace();
  const responses = orchestrator.runSwarm(runSwarmRequest(options), streamAsUser(user, signal, trace.traceparent));
  const iterator = responses[Symbol.asyncIterator]();
  let first: IteratorResult<MessageShape<typeof RunSwarmResponseSchema>>;
  try {
    first = await iterator.next();
  } catch (error) {
    throw apiErrorFromGateway(error);
  }
  if (first.done !== true) {
    // What an operator greps `wrangler tail` for to open the run's trace in Jaeger.
    console.log(JSON.stringify({ msg: "run started", runId: first.value.runId, traceId: trace.traceId }));
  }
  async function* events(): AsyncGenerator<OutEvent> {
    for (let result = first; result.done !== true; result = await iterator.next()) {
      yield { event: "progress", data: protoJson(RunSwarmResponseSchema, result.value) };
    }
  }
  return events();
}

export type Sleep = (ms: number, signal: AbortSignal) => Promise<void>;

/**
 * A stored run's changes until it is no longer RUNNING. The orchestrator has no watch RPC, so
 * this polls GetRun and sends the run whenever it differs from the last one sent.
 */
export async function followRun(
  orchestrator: Orchestrator,
  runId: string,
  user: string,
  intervalMs: number,
  sleep: Sleep,
  signal: AbortSignal,
): Promise<AsyncGenerator<OutEvent>> {
  const get = async (): Promise<Run> => {
    try {
      const response = await orchestrator.getRun({ runId }, asUser(user, signal));
      return response.run ?? create(RunSchema);
    } catch (error) {
      throw apiErrorFromGateway(error);
    }
  };
  const initial = await get();
  async function* events(): AsyncGenerator<OutEvent> {
    let run = initial;
    let sent = "";
    for (;;) {
      const data = protoJson(RunSchema, run);
      const text = JSON.stringify(data);
      if (text !== sent) {
        sent = text;
        yield { event: "run", data };
      }
      if (run.status !== RunStatus.RUNNING) {
        return;
      }
      await sleep(intervalMs, signal);
      run = await get();
    }
  }
  return events();
}

/** A sleep that ends early (rejecting) when the caller goes away. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(new Error("aborted"));
      return;
    }
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new Error("aborted"));
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
