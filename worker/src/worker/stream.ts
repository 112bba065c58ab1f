/**
 * SSE responses from async iterables of events. The response pulls one event at a time, so
 * nothing is buffered beyond what the caller reads; a caller who goes away cancels the upstream
 * call; a quiet upstream (a swarm stage can take tens of seconds) gets keep-alive comments; an
 * error after the first byte, when the status is already 200, becomes an `error` event.
 */
import { KEEP_ALIVE, formatEvent } from "../shared/sse.js";
import { type ApiError, errorBody } from "./http.js";

export interface OutEvent {
  readonly event: string;
  readonly data: unknown;
}

export const KEEP_ALIVE_MS = 15_000;

const TICK = Symbol("tick");

export function sseResponse(
  events: AsyncIterable<OutEvent>,
  abort: AbortController,
  toApiError: (error: unknown) => ApiError,
  keepAliveMs = KEEP_ALIVE_MS,
): Response {
  const encoder = new TextEncoder();
  const iterator = events[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<OutEvent>> | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;

  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      pending ??= iterator.next();
      const tick = new Promise<typeof TICK>((resolve) => {
        timer = setTimeout(() => {
          resolve(TICK);
        }, keepAliveMs);
      });
      try {
        const result = await Promise.race([pending, tick]);
        if (result === TICK) {
          controller.enqueue(encoder.encode(KEEP_ALIVE));
          return;
        }
        pending = null;
        if (result.done === true) {
          controller.close();
        } else {
          controller.enqueue(encoder.encode(formatEvent(result.value.event, JSON.stringify(result.value.data))));
        }
      } catch (error) {
        pending = null;
        controller.enqueue(encoder.encode(formatEvent("error", JSON.stringify(errorBody(toApiError(error))))));
        controller.close();
      } finally {
        if (timer !== null) {
          clearTimeout(timer);
        }
      }
    },
    cancel() {
      if (timer !== null) {
        clearTimeout(timer);
      }
      abort.abort();
      // Not awaited: the generator ends once the aborted call rejects.
      void iterator.return?.(undefined).catch(() => undefined);
    },
  });
  return new Response(stream, {
    status: 200,
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    },
  });
}
