/**
 * The options a caller may set on a chat or swarm request, and their checks. Shared by the Worker
 * (which rejects a bad request before the orchestrator sees it) and the page (which says what to
 * fix before sending). The limits are documented in docs/web-api.md.
 */

export const SWARM_SIZE_MIN = 3;
export const SWARM_SIZE_MAX = 7;
export const TIMEOUT_MIN_S = 5;
export const TIMEOUT_MAX_S = 600;
export const MAX_TASK_CHARS = 20_000;
export const MAX_INSTANCES = 16;
export const MAX_TESTS = 20;
export const MAX_TEST_CHARS = 2_000;
const INSTANCE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The body fields of POST /api/chat and POST /api/runs. */
export const CHAT_FIELDS = ["task", "swarm"] as const;
export const SWARM_FIELDS = ["size", "instances", "refine", "timeoutSeconds", "tests"] as const;

export type SwarmSize = number | "auto";

/** A validated swarm request, in the Worker's terms (proto conversion happens in the Worker). */
export interface SwarmOptions {
  readonly task: string;
  readonly size: SwarmSize;
  readonly instances: readonly string[];
  readonly refine: boolean;
  /** null: the orchestrator's default per-instance deadline. */
  readonly timeoutSeconds: number | null;
  readonly tests: readonly string[];
}

/** What is wrong with one field, in words that say what to fix. */
export interface Problem {
  readonly field: string;
  readonly message: string;
}

export type Checked<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problems: Problem[] };

export function checkTask(value: unknown): Problem | string {
  if (typeof value !== "string") {
    return { field: "task", message: "task is missing: send the coding task as a string in `task`" };
  }
  if (value.trim() === "") {
    return { field: "task", message: "task is empty: write the coding task" };
  }
  if (value.length > MAX_TASK_CHARS) {
    return {
      field: "task",
      message: `task is ${value.length} characters; shorten it to at most ${MAX_TASK_CHARS}`,
    };
  }
  return value;
}

export function checkSize(value: unknown): Problem | SwarmSize {
  if (value === undefined || value === "auto") {
    return "auto";
  }
  if (typeof value === "number" && Number.isInteger(value) && value >= SWARM_SIZE_MIN && value <= SWARM_SIZE_MAX) {
    return value;
  }
  return {
    field: "size",
    message: `size is ${JSON.stringify(value)}; use "auto" or a whole number from ${SWARM_SIZE_MIN} to ${SWARM_SIZE_MAX}`,
  };
}

export function checkTimeout(value: unknown): Problem | number | null {
  if (value === undefined || value === null) {
    return null;
  }
  if (typeof value === "number" && Number.isFinite(value) && value >= TIMEOUT_MIN_S && value <= TIMEOUT_MAX_S) {
    return value;
  }
  return {
    field: "timeoutSeconds",
    message: `timeoutSeconds is ${JSON.stringify(value)}; use seconds from ${TIMEOUT_MIN_S} to ${TIMEOUT_MAX_S}, or leave it out for the server's default`,
  };
}

export function checkInstances(value: unknown): Problem | string[] {
  if (value === undefined) {
    return [];
  }
  if (!Array.isArray(value) || !value.every((name): name is string => typeof name === "string")) {
    return { field: "instances", message: 'instances must be a list of instance names, e.g. ["qwen-1", "qwen-2"]' };
  }
  const bad = value.filter((name) => !INSTANCE_NAME.test(name));
  if (bad.length > 0) {
    return {
      field: "instances",
      message: `instances ${JSON.stringify(bad)} are not instance names (letters, digits, . _ -; at most 64); GET /api/instances lists them`,
    };
  }
  const unique = [...new Set(value)];
  if (unique.length > MAX_INSTANCES) {
    return { field: "instances", message: `instances lists ${unique.length} instances; pick at most ${MAX_INSTANCES}` };
  }
  return unique;
}

export function checkRefine(value: unknown): Problem | boolean {
  if (value === undefined) {
    return true;
  }
  if (typeof value === "boolean") {
    return value;
  }
  return { field: "refine", message: `refine is ${JSON.stringify(value)}; use true (refine the best answer) or false` };
}

export function checkTests(value: unknown): Problem | string[] {
  if (value === undefined) {
    return [];
  }
  if (!Array.isArray(value) || !value.every((test): test is string => typeof test === "string")) {
    return { field: "tests", message: 'tests must be a list of assert statements, e.g. ["assert fib(10) == 55"]' };
  }
  if (value.length > MAX_TESTS) {
    return { field: "tests", message: `tests has ${value.length} entries; attach at most ${MAX_TESTS}` };
  }
  const blank = value.flatMap((test, i) => (test.trim() === "" ? [i] : []));
  if (blank.length > 0) {
    return { field: "tests", message: `tests ${JSON.stringify(blank)} are empty: remove them or write an assert statement` };
  }
  const long = value.flatMap((test, i) => (test.length > MAX_TEST_CHARS ? [i] : []));
  if (long.length > 0) {
    return { field: "tests", message: `tests ${JSON.stringify(long)} are longer than ${MAX_TEST_CHARS} characters` };
  }
  return value;
}

function isProblem(value: unknown): value is Problem {
  return typeof value === "object" && value !== null && "field" in value && "message" in value;
}

/** Checks every swarm option of a request body; unknown fields are the caller's to check. */
export function checkSwarmOptions(body: Readonly<Record<string, unknown>>): Checked<SwarmOptions> {
  const task = checkTask(body["task"]);
  const size = checkSize(body["size"]);
  const instances = checkInstances(body["instances"]);
  const refine = checkRefine(body["refine"]);
  const timeoutSeconds = checkTimeout(body["timeoutSeconds"]);
  const tests = checkTests(body["tests"]);
  const problems = [task, size, instances, refine, timeoutSeconds, tests].filter(isProblem);
  if (
    problems.length > 0 ||
    isProblem(task) ||
    isProblem(size) ||
    isProblem(instances) ||
    isProblem(refine) ||
    isProblem(timeoutSeconds) ||
    isProblem(tests)
  ) {
    return { ok: false, problems };
  }
  return { ok: true, value: { task, size, instances, refine, timeoutSeconds, tests } };
}
