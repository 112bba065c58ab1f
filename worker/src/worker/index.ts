/** The Worker's entry point: the real outbound world wired to the router. */
import type { Env } from "./config.js";
import { handle } from "./router.js";
import { abortableSleep } from "./swarm.js";

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    return handle(request, {
      env,
      gatewayFetch: (input, init) => fetch(input, init),
      chatFetch: (input, init) => fetch(input, init),
      now: () => Date.now(),
      sleep: abortableSleep,
    });
  },
} satisfies ExportedHandler<Env>;
