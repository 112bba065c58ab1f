/**
 * Normal mode: the task goes to one OpenAI-compatible instance and its answer streams back as it
 * is generated. The upstream's answer is checked before the response starts, so a refusal gets
 * its HTTP error; the instance's address never appears in a message.
 */
import { readEvents } from "../shared/sse.js";
import type { ChatConfig } from "./config.js";
import type { Fetch } from "./gateway.js";
import { ApiError } from "./http.js";
import type { OutEvent } from "./stream.js";

/** The `done` event's data: the whole answer and what it cost. */
export interface ChatDone {
  readonly text: string;
  readonly model: string;
  readonly finishReason: string;
  readonly latencyMs: number;
  readonly usage: { readonly promptTokens: number; readonly completionTokens: number } | null;
}

interface ChunkFields {
  delta: string;
  finishReason: string | null;
  model: string | null;
  usage: ChatDone["usage"];
}

function record(value: unknown): Record<string, unknown> | null {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

/** The fields of one chat.completion.chunk this relay uses; null when it is not one. */
export function parseChunk(data: string): ChunkFields | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return null;
  }
  const chunk = record(parsed);
  if (chunk === null) {
    return null;
  }
  const choices = Array.isArray(chunk["choices"]) ? chunk["choices"] : [];
  const choice = record(choices[0]);
  const delta = record(choice?.["delta"]);
  const content = delta?.["content"];
  const finish = choice?.["finish_reason"];
  const usage = record(chunk["usage"]);
  const prompt = usage?.["prompt_tokens"];
  const completion = usage?.["completion_tokens"];
  return {
    delta: typeof content === "string" ? content : "",
    finishReason: typeof finish === "string" ? finish : null,
    model: typeof chunk["model"] === "string" ? chunk["model"] : null,
    usage:
      typeof prompt === "number" && typeof completion === "number"
        ? { promptTokens: prompt, completionTokens: completion }
        : null,
  };
}

async function upstreamMessage(response: Response): Promise<string> {
  const text = (await response.text().catch(() => "")).slice(0, 2000);
  try {
    const error = record(record(JSON.parse(text))?.["error"]);
    const message = error?.["message"];
    if (typeof message === "string" && message !== "") {
      return message.slice(0, 300);
    }
  } catch {
    // not JSON: fall through to the status alone
  }
  return response.statusText === "" ? "no reason given" : response.statusText;
}

/** Starts the chat call; resolves once the instance has accepted it, with its events to relay. */
export async function startChat(
  config: ChatConfig,
  task: string,
  fetch: Fetch,
  signal: AbortSignal,
  now: () => number,
): Promise<AsyncGenerator<OutEvent>> {
  const started = now();
  const headers: Record<string, string> = { "content-type": "application/json", accept: "text/event-stream" };
  if (config.apiKey !== null) {
    headers["authorization"] = `Bearer ${config.apiKey}`;
  }
  let response: Response;
  try {
    response = await fetch(`${config.baseUrl}/chat/completions`, {
      method: "POST",
      headers,
      signal,
      body: JSON.stringify({
        model: config.model,
        messages: [{ role: "user", content: task }],
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: config.maxTokens,
      }),
    });
  } catch {
    throw new ApiError(503, "chat_unavailable", "the chat instance cannot be reached; try again shortly");
  }
  if (!response.ok || response.body === null) {
    const status = response.status === 429 ? 429 : 502;
    throw new ApiError(
      status,
      response.status === 429 ? "chat_busy" : "chat_failed",
      `the chat instance answered HTTP ${response.status}: ${await upstreamMessage(response)}`,
    );
  }
  return relay(response.body as ReadableStream<Uint8Array>, config.model, started, now);
}

async function* relay(
  body: ReadableStream<Uint8Array>,
  model: string,
  started: number,
  now: () => number,
): AsyncGenerator<OutEvent> {
  let text = "";
  const done = { model, finishReason: "", usage: null as ChatDone["usage"] };
  let finished = false;
  for await (const event of readEvents(body)) {
    if (event.data === "[DONE]") {
      finished = true;
      break;
    }
    const chunk = parseChunk(event.data);
    if (chunk === null) {
      throw new ApiError(502, "chat_failed", "the chat instance streamed something that is not a chat completion");
    }
    done.model = chunk.model ?? done.model;
    done.finishReason = chunk.finishReason ?? done.finishReason;
    done.usage = chunk.usage ?? done.usage;
    if (chunk.delta !== "") {
      text += chunk.delta;
      yield { event: "delta", data: { delta: chunk.delta } };
    }
  }
  if (!finished && done.finishReason === "") {
    throw new ApiError(502, "chat_failed", "the chat instance's stream ended before the answer did");
  }
  const result: ChatDone = { text, latencyMs: Math.round(now() - started), ...done };
  yield { event: "done", data: result };
}
