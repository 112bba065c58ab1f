/**
 * What a route handler gets: the request, its parsed URL and path parameters, the checked
 * configuration and the outbound world (gateway, chat instance, clock), which tests replace.
 */
import { type Identity, authenticate } from "./auth.js";
import type { Config, Env } from "./config.js";
import { type Fetch, type Orchestrator, orchestratorClient } from "./gateway.js";
import type { Sleep } from "./swarm.js";

/** Everything outside the Worker's own code. */
export interface Deps {
  readonly env: Env;
  /** Outbound fetch to the gRPC-web gateway. */
  readonly gatewayFetch: Fetch;
  /** Outbound fetch to the chat instance. */
  readonly chatFetch: Fetch;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  readonly sleep: Sleep;
}

export class Context {
  private client: Orchestrator | null = null;
  private caller: Promise<Identity> | null = null;

  constructor(
    readonly request: Request,
    readonly url: URL,
    readonly params: Readonly<Record<string, string>>,
    readonly config: Config,
    readonly deps: Deps,
  ) {}

  get orchestrator(): Orchestrator {
    this.client ??= orchestratorClient(this.config.gatewayUrl, this.deps.gatewayFetch, this.config.gatewayToken);
    return this.client;
  }

  nowS(): number {
    return Math.floor(this.deps.now() / 1000);
  }

  /** The caller, authenticated once per request (the router asks first on protected routes). */
  identity(): Promise<Identity> {
    this.caller ??= authenticate(this.request, this.config, this.nowS());
    return this.caller;
  }

  /** Cookies get Secure when the page is served over https (not under plain-http wrangler dev). */
  get secure(): boolean {
    return this.url.protocol === "https:";
  }

  param(name: string): string {
    return this.params[name] ?? "";
  }
}

export type Handler = (context: Context) => Promise<Response>;
