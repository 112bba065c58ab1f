/**
 * The page's wiring: sign-in (a key typed in, or read once from #key=... and then removed from
 * the address bar), the task form in either mode, the live run, the history and the runs waiting
 * for approval.
 */
import type { RunJson, RunSwarmResponseJson } from "../gen/swarm/v1/orchestrator_pb.js";
import * as api from "./api.js";
import { byTestId, h, setMessage, show } from "./dom.js";
import { duration, score, shortTime, statusLabel, tokens } from "./format.js";
import { type ChatView, EMPTY_CHAT, EMPTY_RUN, type RunView, reduce, reduceChat, viewOfRun, withError } from "./run_state.js";
import { createForm } from "./view_form.js";
import { renderPanes, renderResult, renderStages, runStatusText } from "./view_run.js";

const el = {
  signin: byTestId("signin"),
  signinForm: byTestId<HTMLFormElement>("signin-form"),
  signinKey: byTestId<HTMLInputElement>("signin-key"),
  signinError: byTestId("signin-error"),
  account: byTestId("account"),
  whoami: byTestId("whoami"),
  signout: byTestId<HTMLButtonElement>("signout"),
  app: byTestId("app"),
  taskForm: byTestId<HTMLFormElement>("task-form"),
  submit: byTestId<HTMLButtonElement>("submit"),
  cancel: byTestId<HTMLButtonElement>("cancel"),
  error: byTestId("error"),
  chat: byTestId("chat-answer"),
  chatText: byTestId("chat-text"),
  chatMeta: byTestId("chat-meta"),
  run: byTestId("run"),
  runId: byTestId("run-id"),
  runStatus: byTestId("run-status"),
  stages: byTestId("stages"),
  panes: byTestId("panes"),
  result: byTestId("result"),
  history: byTestId("history"),
  historyMore: byTestId<HTMLButtonElement>("history-more"),
  historyRefresh: byTestId<HTMLButtonElement>("history-refresh"),
  approvals: byTestId("approvals"),
};

const form = createForm();
let view: RunView = EMPTY_RUN;
let running: AbortController | null = null;
let historyToken = "";
let follower: EventSource | null = null;

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function renderRun(): void {
  show(el.run, true);
  el.run.dataset["status"] = view.status;
  el.runId.textContent = view.runId ?? "";
  el.runStatus.textContent = view.error === null ? runStatusText(view) : `${runStatusText(view)} — ${view.error}`;
  el.runStatus.dataset["status"] = view.status;
  renderStages(el.stages, view);
  renderPanes(el.panes, view.panes);
  if (view.run !== null) {
    renderResult(el.result, view.run, { decide, feedback });
  }
}

function renderChat(chat: ChatView): void {
  show(el.chat, true);
  el.chat.dataset["status"] = chat.status;
  el.chatText.textContent = chat.text;
  const meta = [chat.model ?? "", duration(chat.latencyMs), tokens(chat.promptTokens, chat.completionTokens)];
  el.chatMeta.textContent = chat.error ?? meta.filter((s) => s !== "").join(" · ");
}

function busy(on: boolean): void {
  el.submit.disabled = on;
  show(el.cancel, on);
  document.body.dataset["busy"] = String(on);
}

async function runSwarm(body: Record<string, unknown>, signal: AbortSignal): Promise<void> {
  view = EMPTY_RUN;
  show(el.chat, false);
  el.result.replaceChildren();
  show(el.result, false);
  renderRun();
  try {
    await api.stream(
      "/api/runs",
      body,
      (event) => {
        view = reduce(view, event.data as RunSwarmResponseJson);
        renderRun();
      },
      signal,
    );
  } catch (error) {
    if (view.runId === null) {
      show(el.run, false);
      throw error;
    }
    view = withError(view, message(error));
    renderRun();
  }
  await refreshLists();
}

async function chat(body: Record<string, unknown>, signal: AbortSignal): Promise<void> {
  let state = EMPTY_CHAT;
  show(el.run, false);
  renderChat(state);
  try {
    await api.stream("/api/chat", body, (event) => {
      state = reduceChat(state, event.event, event.data);
      renderChat(state);
    }, signal);
  } catch (error) {
    if (state.text === "") {
      show(el.chat, false);
      throw error;
    }
    state = { ...state, status: "failed", error: message(error) };
    renderChat(state);
  }
}

async function submit(): Promise<void> {
  follower?.close();
  const checked = form.body();
  if (!checked.ok) {
    setMessage(el.error, checked.message);
    return;
  }
  setMessage(el.error, null);
  running = new AbortController();
  busy(true);
  try {
    await (form.swarm ? runSwarm(checked.body, running.signal) : chat(checked.body, running.signal));
  } catch (error) {
    if (!running.signal.aborted) {
      setMessage(el.error, message(error));
    }
  } finally {
    running = null;
    busy(false);
  }
}

function decide(approve: boolean, comment: string): void {
  const runId = view.runId;
  if (runId === null) {
    return;
  }
  const status = el.result.querySelector<HTMLElement>('[data-testid="decision-status"]');
  api
    .decide(runId, approve, comment)
    .then(async (run) => {
      view = { ...view, run, status: run.status ?? view.status };
      renderRun();
      await refreshLists();
    })
    .catch((error: unknown) => {
      if (status !== null) {
        setMessage(status, message(error));
      }
    });
}

function feedback(rating: number, preferred: string, comment: string): void {
  const runId = view.runId;
  const status = el.result.querySelector<HTMLElement>('[data-testid="feedback-status"]');
  if (runId === null || status === null) {
    return;
  }
  status.textContent = "sending…";
  api
    .sendFeedback(runId, rating, preferred, comment)
    .then(() => {
      status.textContent = "Thank you: feedback stored.";
    })
    .catch((error: unknown) => {
      status.textContent = message(error);
    });
}

/** A run still working, opened from the history: its status changes until it is done. */
function follow(runId: string): void {
  follower?.close();
  const source = new EventSource(`/api/runs/${encodeURIComponent(runId)}/events`);
  follower = source;
  source.addEventListener("run", (event) => {
    const run = JSON.parse((event as MessageEvent<string>).data) as RunJson;
    view = viewOfRun(run);
    renderRun();
    if (run.status !== "RUN_STATUS_RUNNING") {
      source.close();
      void refreshLists();
    }
  });
  source.addEventListener("error", (event) => {
    // The Worker's own `event: error` carries a message; the browser's has none.
    if (event instanceof MessageEvent && typeof event.data === "string") {
      const body = JSON.parse(event.data) as { error?: { message?: string } };
      view = withError(view, body.error?.message ?? "the run's stream broke off");
      renderRun();
    }
    source.close();
  });
}

async function openRun(runId: string): Promise<void> {
  try {
    const run: RunJson = await api.getRun(runId);
    form.setSwarm(true);
    show(el.chat, false);
    view = viewOfRun(run);
    renderRun();
    el.run.scrollIntoView({ block: "start" });
    if (run.status === "RUN_STATUS_RUNNING") {
      follow(runId);
    }
  } catch (error) {
    setMessage(el.error, message(error));
  }
}

function runButton(runId: string, label: string, testId: string): HTMLElement {
  const button = h("button", { type: "button", class: "link", "data-testid": testId, "data-run-id": runId }, label);
  button.addEventListener("click", () => {
    void openRun(runId);
  });
  return button;
}

async function loadHistory(more = false): Promise<void> {
  const page = await api.listRuns(more ? historyToken : "");
  historyToken = page.nextPageToken ?? "";
  const items = (page.runs ?? []).map((run) =>
    h(
      "li",
      { "data-testid": "history-item", "data-status": run.status ?? "" },
      runButton(run.id ?? "", run.task ?? "", "history-open"),
      h("span", { class: "meta" }, ` ${statusLabel(run.status)} · ${shortTime(run.createdAt)} · ${run.swarmSize ?? 0} instances · overall ${score(run.finalOverall)}${run.consensusReached === true ? " · consensus" : ""}`),
    ),
  );
  if (more) {
    el.history.append(...items);
  } else {
    el.history.replaceChildren(...items);
  }
  show(el.historyMore, historyToken !== "");
}

async function loadApprovals(): Promise<void> {
  const page = await api.listApprovals();
  const items = (page.runs ?? []).map((pending) =>
    h(
      "li",
      { "data-testid": "approval-item" },
      runButton(pending.run?.id ?? "", pending.run?.task ?? "", "approval-open"),
      h("span", { class: "meta" }, ` ${pending.gate?.summary ?? ""}`),
    ),
  );
  el.approvals.replaceChildren(...(items.length > 0 ? items : [h("li", {}, "none")]));
}

async function refreshLists(): Promise<void> {
  await Promise.all([loadHistory(), loadApprovals()]).catch((error: unknown) => {
    setMessage(el.error, message(error));
  });
}

async function enter(user: string): Promise<void> {
  el.whoami.textContent = user;
  show(el.account, true);
  show(el.signin, false);
  show(el.app, true);
  byTestId("task").focus();
  await Promise.all([
    api
      .listInstances()
      .then((instances) => {
        form.setInstances(instances);
      })
      .catch(() => undefined),
    refreshLists(),
  ]);
}

function leave(): void {
  show(el.account, false);
  show(el.app, false);
  show(el.signin, true);
  el.signinKey.focus();
}

/** A key in the fragment (#key=...) signs in once; it leaves the address bar and history. */
function keyFromFragment(): string | null {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const key = params.get("key");
  if (key !== null) {
    history.replaceState(null, "", `${location.pathname}${location.search}`);
  }
  return key;
}

async function signIn(key: string): Promise<void> {
  try {
    const who = await api.signIn(key);
    setMessage(el.signinError, null);
    el.signinKey.value = "";
    await enter(who.user);
  } catch (error) {
    setMessage(el.signinError, message(error));
    leave();
  }
}

async function start(): Promise<void> {
  el.signinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void signIn(el.signinKey.value);
  });
  el.signout.addEventListener("click", () => {
    void api.signOut().finally(leave);
  });
  el.taskForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void submit();
  });
  byTestId<HTMLTextAreaElement>("task").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      el.taskForm.requestSubmit();
    }
  });
  el.cancel.addEventListener("click", () => {
    running?.abort();
  });
  el.historyMore.addEventListener("click", () => {
    void loadHistory(true);
  });
  el.historyRefresh.addEventListener("click", () => {
    void refreshLists();
  });
  const key = keyFromFragment();
  if (key !== null) {
    await signIn(key);
    return;
  }
  const who = await api.whoAmI().catch(() => null);
  if (who === null) {
    leave();
  } else {
    await enter(who.user);
  }
}

document.body.dataset["ready"] = "false";
void start().finally(() => {
  document.body.dataset["ready"] = "true";
});
