/**
 * Server-sent events, both ways: the Worker reads the chat instance's SSE and writes its own, the
 * page reads the Worker's. One parser for both readers (the format is the WHATWG one; the subset
 * used: `event`, `data`, comments; no `id` / `retry`, which nobody here sends).
 */

export interface SseEvent {
  /** The `event:` field; "message" when the sender gave none. */
  readonly event: string;
  /** The `data:` lines joined by newlines. */
  readonly data: string;
}

/** One event in the wire format; data lines are split so a newline in the payload survives. */
export function formatEvent(event: string, data: string): string {
  const lines = data.split(/\r\n|\r|\n/).map((line) => `data: ${line}\n`);
  return `event: ${event}\n${lines.join("")}\n`;
}

/** A comment line: ignored by readers, it keeps idle connections open through proxies. */
export const KEEP_ALIVE = ": keep-alive\n\n";

/**
 * An incremental parser: feed it text as it arrives, in chunks cut anywhere, and it returns the
 * events completed so far.
 */
export class SseParser {
  private buffer = "";
  private event = "";
  private data: string[] = [];

  push(chunk: string): SseEvent[] {
    this.buffer += chunk;
    const out: SseEvent[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (match === null) {
        break;
      }
      // A lone "\r" at the end of a chunk may be the first half of "\r\n": wait for more.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) {
        break;
      }
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event !== null) {
        out.push(event);
      }
    }
    return out;
  }

  /** The event still open when the stream ends without its blank line, if any. */
  end(): SseEvent[] {
    const rest = this.buffer === "" ? [] : this.push("\n");
    const last = this.line("");
    return last === null ? rest : [...rest, last];
  }

  private line(line: string): SseEvent | null {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = "";
        return null;
      }
      const event = { event: this.event === "" ? "message" : this.event, data: this.data.join("\n") };
      this.event = "";
      this.data = [];
      return event;
    }
    if (line.startsWith(":")) {
      return null;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) {
      value = value.slice(1);
    }
    if (field === "event") {
      this.event = value;
    } else if (field === "data") {
      this.data.push(value);
    }
    return null;
  }
}

/** The events of a byte stream, as they complete; stopping early cancels the stream. */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const parser = new SseParser();
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
    finished = true;
    yield* parser.push(decoder.decode());
    yield* parser.end();
  } finally {
    if (!finished) {
      await reader.cancel().catch(() => undefined);
    }
    reader.releaseLock();
  }
}
