/**
 * The task form: the swarm toggle with its mode indicator, the options, and the request body
 * they make. The options are checked here with the Worker's own rules (src/shared/options.ts),
 * so a bad value is explained next to its field before anything is sent.
 */
import type { ListInstancesResponseJson } from "../gen/swarm/v1/orchestrator_pb.js";
import { SWARM_SIZE_MAX, SWARM_SIZE_MIN, checkSwarmOptions, checkTask } from "../shared/options.js";
import { byTestId, h } from "./dom.js";
import { parseTests } from "./format.js";

export interface Form {
  readonly swarm: boolean;
  setSwarm(on: boolean): void;
  /** The request body, or the problems to show (each names its field). */
  body(): { ok: true; body: Record<string, unknown> } | { ok: false; message: string; fields: string[] };
  setInstances(response: ListInstancesResponseJson): void;
}

const FIELD_TEST_IDS: Readonly<Record<string, string>> = {
  task: "task",
  size: "opt-size",
  timeoutSeconds: "opt-timeout",
  tests: "opt-tests",
  instances: "opt-instances",
  refine: "opt-refine",
};

export function createForm(root: ParentNode = document): Form {
  const toggle = byTestId<HTMLButtonElement>("swarm-toggle", root);
  const indicator = byTestId("mode-indicator", root);
  const options = byTestId<HTMLFieldSetElement>("options", root);
  const task = byTestId<HTMLTextAreaElement>("task", root);
  const size = byTestId<HTMLSelectElement>("opt-size", root);
  const refine = byTestId<HTMLInputElement>("opt-refine", root);
  const timeout = byTestId<HTMLInputElement>("opt-timeout", root);
  const tests = byTestId<HTMLTextAreaElement>("opt-tests", root);
  const instanceList = byTestId("opt-instance-list", root);
  const submit = byTestId<HTMLButtonElement>("submit", root);

  size.replaceChildren(
    h("option", { value: "auto" }, `automatic (${SWARM_SIZE_MIN}–${SWARM_SIZE_MAX} by task)`),
    ...Array.from({ length: SWARM_SIZE_MAX - SWARM_SIZE_MIN + 1 }, (_, i) =>
      h("option", { value: String(SWARM_SIZE_MIN + i) }, String(SWARM_SIZE_MIN + i)),
    ),
  );

  let swarm = false;
  const setSwarm = (on: boolean): void => {
    swarm = on;
    toggle.setAttribute("aria-checked", String(on));
    toggle.classList.toggle("on", on);
    indicator.dataset["mode"] = on ? "swarm" : "normal";
    indicator.textContent = on
      ? "Swarm mode: several instances answer; the best answer wins, with its evidence"
      : "Normal mode: one instance answers";
    options.disabled = !on;
    options.hidden = !on;
    submit.textContent = on ? "Run the swarm" : "Ask one instance";
    document.body.dataset["mode"] = on ? "swarm" : "normal";
  };
  toggle.addEventListener("click", () => {
    setSwarm(!swarm);
  });
  setSwarm(false);

  const markInvalid = (fields: readonly string[]): void => {
    for (const [field, testId] of Object.entries(FIELD_TEST_IDS)) {
      const element = byTestId(testId, root);
      if (fields.includes(field)) {
        element.setAttribute("aria-invalid", "true");
      } else {
        element.removeAttribute("aria-invalid");
      }
    }
  };

  const body: Form["body"] = () => {
    if (!swarm) {
      const checked = checkTask(task.value);
      if (typeof checked !== "string") {
        markInvalid(["task"]);
        return { ok: false, message: checked.message, fields: ["task"] };
      }
      markInvalid([]);
      return { ok: true, body: { task: task.value } };
    }
    const chosen = [...instanceList.querySelectorAll<HTMLInputElement>("input[type=checkbox]:checked")].map((box) => box.value);
    const fields: Record<string, unknown> = {
      task: task.value,
      swarm: true,
      size: size.value === "auto" ? "auto" : Number(size.value),
      refine: refine.checked,
    };
    if (chosen.length > 0) {
      fields["instances"] = chosen;
    }
    if (timeout.value.trim() !== "") {
      fields["timeoutSeconds"] = Number(timeout.value);
    }
    const attached = parseTests(tests.value);
    if (attached.length > 0) {
      fields["tests"] = attached;
    }
    const checked = checkSwarmOptions(fields);
    if (!checked.ok) {
      const names = checked.problems.map((p) => p.field);
      markInvalid(names);
      return { ok: false, message: checked.problems.map((p) => p.message).join("; "), fields: names };
    }
    markInvalid([]);
    return { ok: true, body: fields };
  };

  const setInstances = (response: ListInstancesResponseJson): void => {
    // A refine-only instance answers no task, so a run may not be sent to it.
    const answering = (response.instances ?? []).filter((status) => status.refineOnly !== true);
    const boxes = answering.map((status) => {
      const name = status.instance?.name ?? "";
      const id = `opt-instance-${name}`;
      return h(
        "label",
        { class: "instance", for: id },
        h("input", { type: "checkbox", id, value: name, "data-testid": id }),
        ` ${name}`,
        h("span", { class: status.healthy === true ? "healthy" : "unhealthy" }, status.healthy === true ? " healthy" : " unhealthy"),
      );
    });
    instanceList.replaceChildren(...boxes);
  };

  return {
    get swarm() {
      return swarm;
    },
    setSwarm,
    body,
    setInstances,
  };
}
