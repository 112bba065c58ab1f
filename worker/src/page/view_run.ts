/**
 * The swarm run on the page: live panes and stages while it works, then the result with its
 * evidence (final answer, consensus, ranking, clusters, difference analysis and diff, refinement,
 * gate decision with approve / reject, feedback). data-testid names are listed in
 * docs/web-api.md for the browser tests.
 */
import type { RunJson } from "../gen/swarm/v1/orchestrator_pb.js";
import { lineDiff } from "./diff.js";
import { h } from "./dom.js";
import {
  candidateChoices,
  canDecide,
  diffPair,
  enumLabel,
  paneMeta,
  paneStatusLabel,
  rankingRows,
  score,
  statusLabel,
} from "./format.js";
import { count, type Pane, type RunView } from "./run_state.js";

export interface ResultActions {
  decide(approve: boolean, comment: string): void;
  feedback(rating: number, preferredCandidateId: string, comment: string): void;
}

export function renderPane(pane: Pane): HTMLElement {
  const failure = pane.failure;
  return h(
    "article",
    { class: `pane ${pane.status}`, "data-testid": `pane-${pane.slot}`, "data-status": pane.status, "aria-label": `slot ${pane.slot + 1}` },
    h(
      "header",
      {},
      h("span", { class: "pane-instance", "data-testid": "pane-instance" }, pane.instance === "" ? `slot ${pane.slot + 1}` : pane.instance),
      h("span", { class: "pane-status", "data-testid": "pane-status" }, paneStatusLabel(pane)),
    ),
    pane.retriedAfter === null ? null : h("p", { class: "pane-note" }, `retry after: ${pane.retriedAfter}`),
    h("pre", { class: "pane-text", "data-testid": "pane-text", tabindex: "0" }, pane.text),
    pane.gap ? h("p", { class: "pane-note" }, "some streamed text was lost; the stored answer is complete") : null,
    h("p", { class: "pane-meta", "data-testid": "pane-meta" }, paneMeta(pane)),
    failure === null
      ? null
      : h("p", { class: "pane-reason", "data-testid": "pane-reason" }, `${failure.kind}: ${failure.reason}`),
  );
}

export function renderPanes(container: HTMLElement, panes: readonly Pane[]): void {
  container.replaceChildren(...panes.map(renderPane));
}

export function renderStages(list: HTMLElement, view: RunView): void {
  const items: [string, string][] = [];
  if (view.collated !== null) {
    const consensus = view.collated.consensus?.reached === true ? "consensus" : "no consensus";
    items.push(["collated", `Collated: ${view.collated.clusterCount ?? 0} cluster(s), ${consensus}`]);
  }
  if (view.assessed !== null) {
    items.push(["assessed", `Assessed: best ${view.assessed.bestCandidateId ?? ""} at ${score(view.assessed.bestOverall)}`]);
  }
  if (view.refined !== null) {
    items.push(["refined", `Refinement: ${enumLabel(view.refined.outcome, "REFINEMENT_OUTCOME_") || "off"}`]);
  }
  if (view.gated !== null) {
    items.push(["gated", `Gates: ${enumLabel(view.gated.outcome, "GATE_OUTCOME_")}`]);
  }
  list.replaceChildren(...items.map(([stage, text]) => h("li", { "data-testid": `stage-${stage}` }, text)));
}

function section(testId: string, title: string, ...children: (Node | null)[]): HTMLElement {
  return h("section", { class: "result-part", "data-testid": testId }, h("h3", {}, title), ...children);
}

function finalAnswer(run: RunJson): HTMLElement {
  const final = run.final;
  if (final === undefined) {
    return section("final-answer", "No final answer", h("p", { "data-testid": "run-error" }, run.error ?? ""));
  }
  const origin = final.origin === "CANDIDATE_ORIGIN_REFINED" ? "refined" : "from the swarm";
  return section(
    "final-answer",
    "Final answer",
    h("p", {}, `Candidate ${final.candidateId ?? ""} (${origin}), overall ${score(final.overall)}`),
    h("pre", { class: "final-code", "data-testid": "final-code", tabindex: "0" }, final.code ?? ""),
  );
}

function consensusBadge(run: RunJson): HTMLElement {
  const consensus = run.consensus ?? {};
  const reached = consensus.reached === true;
  const detail = `share ${score(consensus.share)}, confidence ${score(consensus.confidence)}, ${consensus.clusterCount ?? 0} cluster(s)${consensus.basis ? `, by ${consensus.basis}` : ""}`;
  return h(
    "p",
    { class: `badge ${reached ? "agree" : "disagree"}`, "data-testid": "consensus-badge", "data-reached": String(reached) },
    h("strong", {}, reached ? "Consensus" : "No consensus"),
    ` — ${detail}`,
  );
}

const RANKING_COLUMNS = [
  ["rank", "Rank"],
  ["id", "Candidate"],
  ["instance", "Instance"],
  ["origin", "Origin"],
  ["overall", "Overall"],
  ["correctness", "Correctness"],
  ["completeness", "Completeness"],
  ["style", "Style"],
  ["consensus", "Agreement"],
  ["dualAgreement", "Dual agreement"],
  ["tests", "Tests passed"],
  ["generated", "Generated tests"],
  ["cluster", "Cluster"],
  ["reputation", "Reputation"],
  ["latency", "Latency"],
] as const;

function ranking(run: RunJson): HTMLElement {
  const rows = rankingRows(run).map((row) =>
    h(
      "tr",
      { "data-testid": "ranking-row", "data-candidate": row.id, class: row.isFinal ? "final" : "" },
      ...RANKING_COLUMNS.map(([key]) => h("td", { "data-col": key }, row[key])),
    ),
  );
  return section(
    "ranking",
    "Ranking",
    h(
      "div",
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "ranking table" },
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ...RANKING_COLUMNS.map(([, label]) => h("th", { scope: "col" }, label)))),
        h("tbody", {}, ...rows),
      ),
    ),
  );
}

function clusters(run: RunJson): HTMLElement {
  const items = (run.clusters ?? []).map((cluster) =>
    h(
      "li",
      { "data-testid": "cluster" },
      `Cluster ${cluster.id ?? 0}: ${(cluster.candidateIds ?? []).join(", ")} (representative ${cluster.representativeId ?? ""}, cohesion ${score(cluster.cohesion)})`,
    ),
  );
  return section("clusters", "Clusters", items.length === 0 ? h("p", {}, "not collated") : h("ul", {}, ...items));
}

function analysis(run: RunJson): HTMLElement {
  const pair = diffPair(run);
  const lines = pair === null ? null : lineDiff(pair.left.code ?? "", pair.right.code ?? "");
  const diff =
    pair === null || lines === null
      ? h("p", {}, pair === null ? "every answer is the same program" : "the programs are too long to diff here")
      : h(
          "figure",
          {},
          h("figcaption", {}, `${pair.left.id ?? ""} → ${pair.right.id ?? ""} (the final answer)`),
          h(
            "pre",
            { class: "diff", "data-testid": "diff", tabindex: "0" },
            ...lines.map((line) =>
              h("span", { class: line.kind }, `${line.kind === "added" ? "+" : line.kind === "removed" ? "-" : " "} ${line.text}\n`),
            ),
          ),
        );
  return section("analysis", "How the answers differ", h("p", { class: "prose" }, run.analysis ?? ""), diff);
}

function refinement(run: RunJson): HTMLElement {
  const refined = run.refinement;
  const outcome = enumLabel(refined?.outcome, "REFINEMENT_OUTCOME_") || "off";
  return section(
    "refinement",
    "Refinement",
    h("p", { "data-testid": "refinement-outcome", "data-outcome": outcome }, `Outcome: ${outcome}${refined?.rounds ? `, ${refined.rounds} round(s)` : ""}`),
    refined?.reason ? h("p", { class: "prose" }, refined.reason) : null,
    refined?.explanation ? h("p", { class: "prose" }, `Changes: ${refined.explanation}`) : null,
  );
}

function gate(run: RunJson, actions: ResultActions): HTMLElement {
  const decision = run.gate;
  const outcome = enumLabel(decision?.outcome, "GATE_OUTCOME_") || "not evaluated";
  const rules = (decision?.rules ?? []).map((rule) =>
    h("li", { "data-testid": "gate-rule", "data-passed": String(rule.passed === true) }, `${rule.passed === true ? "✓" : "✗"} ${rule.name ?? ""}: ${rule.detail ?? ""}`),
  );
  let form: HTMLElement | null = null;
  if (canDecide(run)) {
    const comment = h("textarea", { id: "decision-comment", "data-testid": "decision-comment", rows: "2", maxlength: "2000" });
    const approve = h("button", { type: "button", "data-testid": "approve" }, "Approve");
    const reject = h("button", { type: "button", "data-testid": "reject", class: "danger" }, "Reject");
    approve.addEventListener("click", () => {
      actions.decide(true, comment.value);
    });
    reject.addEventListener("click", () => {
      actions.decide(false, comment.value);
    });
    form = h(
      "div",
      { class: "decision", "data-testid": "decision" },
      h("label", { for: "decision-comment" }, "Comment for the audit trail"),
      comment,
      h("div", { class: "buttons" }, approve, reject),
      h("p", { "data-testid": "decision-status", role: "status" }),
    );
  }
  const audit = (run.audit ?? []).map((entry) =>
    h("li", { "data-testid": "audit-entry" }, `${enumLabel(entry.action, "AUDIT_ACTION_")} by ${entry.actor ?? ""}${entry.comment ? `: ${entry.comment}` : ""}`),
  );
  return section(
    "gate",
    "Quality gates",
    h("p", { "data-testid": "gate-outcome", "data-outcome": outcome }, `Decision: ${outcome}${decision?.summary ? ` — ${decision.summary}` : ""}`),
    rules.length === 0 ? null : h("ul", {}, ...rules),
    audit.length === 0 ? null : h("ul", { class: "audit" }, ...audit),
    form,
  );
}

function feedback(run: RunJson, actions: ResultActions): HTMLElement {
  const rating = h(
    "select",
    { id: "feedback-rating", "data-testid": "feedback-rating" },
    ...[5, 4, 3, 2, 1].map((n) => h("option", { value: String(n) }, `${n} ${n === 5 ? "(use as is)" : n === 1 ? "(useless)" : ""}`.trim())),
  );
  const preferred = h(
    "select",
    { id: "feedback-preferred", "data-testid": "feedback-preferred" },
    h("option", { value: "" }, "no preference"),
    ...candidateChoices(run).map((id) => h("option", { value: id }, id)),
  );
  const comment = h("input", { id: "feedback-comment", "data-testid": "feedback-comment", type: "text", maxlength: "2000" });
  const form = h(
    "form",
    { class: "feedback", "data-testid": "feedback" },
    h("label", { for: "feedback-rating" }, "Rating"),
    rating,
    h("label", { for: "feedback-preferred" }, "Preferred candidate"),
    preferred,
    h("label", { for: "feedback-comment" }, "Comment"),
    comment,
    h("button", { type: "submit", "data-testid": "feedback-submit" }, "Send feedback"),
    h("p", { "data-testid": "feedback-status", role: "status" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    actions.feedback(Number(rating.value), preferred.value, comment.value);
  });
  return section("feedback-section", "Feedback", form);
}

export function renderResult(container: HTMLElement, run: RunJson, actions: ResultActions): void {
  const finished = run.status !== undefined && run.status !== "RUN_STATUS_RUNNING";
  container.hidden = !finished;
  if (!finished) {
    container.replaceChildren();
    return;
  }
  container.replaceChildren(
    finalAnswer(run),
    consensusBadge(run),
    ranking(run),
    clusters(run),
    analysis(run),
    refinement(run),
    gate(run, actions),
    feedback(run, actions),
  );
}

/** "queued: 2 of 5 waiting for capacity (12 s)": the run's place while nothing runs for it yet. */
export function queuedText(view: RunView): string | null {
  if (view.queued === null || view.status !== "RUN_STATUS_RUNNING") {
    return null;
  }
  const { position = 0, depth = 0, waitedMs = 0 } = view.queued;
  const waited = Math.round((count(waitedMs) ?? 0) / 1000);
  return `queued: ${position} of ${depth} waiting for capacity (${waited} s)`;
}

export function runStatusText(view: RunView): string {
  const queued = queuedText(view);
  if (queued !== null) {
    return queued;
  }
  const label = statusLabel(view.status);
  const answered = view.panes.filter((p) => p.status === "answered").length;
  return view.status === "RUN_STATUS_RUNNING" ? `running: ${answered} of ${view.panes.length} answered` : label;
}
