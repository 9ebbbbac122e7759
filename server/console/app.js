// The console: sign in, sessions, a live session, the inbox. Hash routes:
//   #/            sessions          #/session/<id>   one session        #/inbox
// The token is never in the URL (sessionStorage only, see api.js).

import { api, ApiError, clearToken, getToken, setToken, SERVER } from "./api.js";
import { clear, el, formatCost, pretty, STATUS_LABEL, timeAgo, visible, visibleBlock, visibleProse } from "./dom.js";
import { fileDiff } from "./diff.js";
import { Conversation } from "./render.js";
import { SessionStream } from "./stream.js";
import { forget, forgetAll, watch } from "./watch.js";

const POLL_MS = 3000;
const PAGE = 20;
const MAX_LIST_PAGE = 1000; // the server's most sessions per page (GET /v1/sessions)

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const inboxCount = document.getElementById("inbox-count");
const toast = document.getElementById("toast");

let view = null; // the current view: {stop()}

function notify(message, kind = "error") {
  toast.textContent = visibleBlock(message); // often the server's words, quoting what it refused
  toast.className = `toast ${kind}`;
  toast.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => (toast.hidden = true), 6000);
}

function statusChip(status) {
  return el(`span.chip.status.${status}`, { text: STATUS_LABEL[status] || status, dataset: { status } });
}

/** Back to the sign-in view; the token and every cache of this principal forgotten. */
function signOut(message) {
  if (view) view.stop(); // first: a stopping view must not cache anything again
  view = null;
  clearToken();
  forgetAll();
  location.hash = "#/";
  route();
  if (message) notify(message);
}

function handleError(error) {
  if (error instanceof ApiError && error.status === 401) {
    signOut("The server refused the token: sign in again.");
    return;
  }
  notify(error.message || String(error));
}

// ---------------------------------------------------------------- sign in

/**
 * Why *token* cannot be a bearer token, or "". Bearer tokens are printable ASCII;
 * past ISO-8859-1 fetch refuses the header with an error that reads like a
 * network failure ("cannot reach ..."), so say what is wrong before sending.
 */
function tokenProblem(token) {
  const bad = /[^\x20-\x7e]/u.exec(token);
  return bad ? `A token is printable ASCII; this one has '${visible(bad[0])}'.` : "";
}

function signInView() {
  nav.hidden = true;
  const input = el("input#token", { type: "password", autocomplete: "off", placeholder: "bearer token", required: true, "aria-label": "token" });
  const error = el("div.form-error", { role: "alert" });
  const form = el(
    "form.signin",
    {},
    el("h1", { text: "agent-runtime" }),
    el("p.muted", { text: `Sign in to ${SERVER} with one of the server's bearer tokens.` }),
    input,
    el("button", { type: "submit", text: "Sign in" }),
    error,
    el("p.fine", { text: "The token stays in this tab's session storage; close the tab to forget it." }),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    const wrong = tokenProblem(token);
    if (wrong) {
      error.textContent = wrong;
      return;
    }
    setToken(token);
    try {
      await api.agents();
    } catch (err) {
      clearToken();
      error.textContent = err.status === 401 ? "This token is not valid on this server." : visibleBlock(err.message);
      return;
    }
    location.hash = "#/";
    route();
  });
  main.append(el("div.center", {}, form));
  input.focus();
  return { stop() {} };
}

// ---------------------------------------------------------------- sessions

/** Whether the server lists session *a* before *b*: newest first, by (created_at, id). */
function listedBefore(a, b) {
  if (a.created_at !== b.created_at) return a.created_at > b.created_at;
  return a.id > b.id;
}

function sessionsView() {
  let stopped = false;
  let timer = null;
  let sessions = [];
  let cursor = null;
  const rows = new Map();
  const list = el("div.session-list#sessions");
  const more = el("button.secondary#more", { type: "button", text: "Older sessions", hidden: true });
  const agentSelect = el("select#new-agent", { "aria-label": "agent" }, el("option", { value: "", text: "default agent" }));
  const create = el("button#new-session", { type: "button", text: "New session" });

  api.agents().then((r) => {
    for (const a of r.agents || []) agentSelect.append(el("option", { value: a.name, text: visible(a.name), title: visibleProse(a.description) }));
  }, handleError);

  create.addEventListener("click", async () => {
    create.disabled = true;
    try {
      const body = agentSelect.value ? { agent: agentSelect.value } : {};
      const session = await api.createSession(body);
      location.hash = `#/session/${encodeURIComponent(session.id)}`;
    } catch (error) {
      handleError(error);
      create.disabled = false;
    }
  });

  function row(session) {
    let r = rows.get(session.id);
    if (!r) {
      const status = el("span.status-slot");
      const title = el("span.title");
      const meta = el("span.meta");
      const node = el("a.session-row", { href: `#/session/${encodeURIComponent(session.id)}`, dataset: { session: session.id } }, el("div.row-main", {}, title, meta), status);
      r = { node, status, title, meta };
      rows.set(session.id, r);
    }
    r.title.textContent = visible(session.title) || "untitled session";
    r.meta.textContent = `${visible(session.current_agent)} · ${timeAgo(session.updated_at)} · ${visible(session.id)}`;
    return r;
  }

  function draw() {
    clear(list);
    const shown = new Set(sessions.map((s) => s.id));
    for (const id of rows.keys()) if (!shown.has(id)) rows.delete(id); // deleted sessions
    if (!sessions.length) list.append(el("div.empty", { text: "No sessions yet. Create one to talk to an agent." }));
    for (const s of sessions) list.append(row(s).node);
    more.hidden = !cursor;
  }

  /** Forget the row of *id*, a session the server no longer has (deleted elsewhere). */
  function drop(id) {
    sessions = sessions.filter((s) => s.id !== id);
    forget(id);
    draw();
  }

  async function statuses() {
    await Promise.all(
      sessions.map(async (s) => {
        let fold;
        try {
          fold = await watch(s);
        } catch (error) {
          // Deleted since the list was read: its log is gone with it.
          if (error instanceof ApiError && error.status === 404) drop(s.id);
          else throw error;
          return;
        }
        if (!rows.has(s.id)) return; // dropped meanwhile
        const r = row(s);
        clear(r.status).append(statusChip(fold.status()));
      }),
    );
  }

  // Loads of the list run one at a time: a poll and an "Older sessions" click
  // that interleaved would each replace the rows the other just read.
  let loading = Promise.resolve();
  function serially(load) {
    const run = loading.then(load);
    loading = run.catch(() => {});
    return run;
  }

  // The poll refetches the list down to its oldest shown row: the first page,
  // and the older ones too once "Older sessions" was used. A shown row it no
  // longer finds was deleted, whichever page it was loaded from; a row pushed
  // down by newer sessions is found on a later page, so none drops out. Rows
  // past the oldest shown one are left to "Older sessions", whose cursor (the
  // last row an older page ended on) stays valid: pages are keyed by
  // (created_at, id), not by position.
  async function reload() {
    const oldest = sessions[sessions.length - 1]; // none before the first load
    const fresh = [];
    let next = null;
    // One request as a rule: a page as long as the rows shown and one more page.
    const limit = Math.min(MAX_LIST_PAGE, sessions.length + PAGE);
    do {
      const page = await api.sessions(limit, next);
      fresh.push(...page.sessions);
      next = page.next_cursor;
    } while (next && oldest && listedBefore(fresh[fresh.length - 1], oldest));
    const last = fresh[fresh.length - 1];
    if (cursor && oldest && last && listedBefore(oldest, last)) {
      sessions = fresh.filter((s) => !listedBefore(oldest, s));
    } else {
      sessions = fresh;
      cursor = next;
    }
    draw();
  }

  async function loadOlder() {
    if (!cursor) return; // the list reached its end meanwhile
    const page = await api.sessions(PAGE, cursor);
    const known = new Set(sessions.map((s) => s.id));
    sessions.push(...page.sessions.filter((s) => !known.has(s.id)));
    cursor = page.next_cursor;
    draw();
  }

  more.addEventListener("click", () => serially(loadOlder).then(statuses).catch(handleError));

  async function poll() {
    try {
      await serially(reload);
      await statuses();
    } catch (error) {
      handleError(error);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  main.append(
    el(
      "div.page",
      {},
      el("div.page-head", {}, el("h1", { text: "Sessions" }), el("div.actions", {}, agentSelect, create)),
      list,
      more,
    ),
  );
  poll();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

// ---------------------------------------------------------------- one session

/** Adds an option for *value* to *select* unless it has one (a name another client chose stays visible). */
function offer(select, value, title = "") {
  if ([...select.options].some((o) => o.value === value)) return;
  select.append(el("option", title ? { value, text: visible(value), title } : { value, text: visible(value) }));
}

function sessionView(sessionId) {
  const conversationRoot = el("div.conversation#conversation");
  const statusSlot = el("span#session-status");
  const live = el("span.live#live", { text: "connecting" });
  const title = el("h1.session-title", { text: visible(sessionId) });
  const agentSelect = el("select#agent", { "aria-label": "switch agent" });
  // "" is switch_model's null: the agent's model, else the server's.
  const currentModel = () => conversation.model ?? "";
  const modelSelect = el("select#model", { "aria-label": "switch model" }, el("option", { value: "", text: "default model", title: "the agent's model, else the server's" }));
  const cancel = el("button.danger#cancel", { type: "button", text: "Cancel turn", hidden: true });
  const banner = el("div.banner#pending", { hidden: true });
  const costSlot = el("span.muted#cost");
  const input = el("textarea#message", { rows: 2, placeholder: "Message the agent (Enter sends, Shift+Enter for a new line)", "aria-label": "message" });
  const send = el("button#send", { type: "submit", text: "Send" });
  const composer = el("form.composer", {}, input, send);

  const actions = {
    decide: (callId, decision, extra) =>
      api.command(sessionId, { type: "approval", call_id: callId, decision, ...extra }).catch((error) => {
        handleError(error);
        throw error;
      }),
    answer: (questionId, text) =>
      api.command(sessionId, { type: "answer", question_id: questionId, text }).catch(handleError),
  };
  const conversation = new Conversation(conversationRoot, actions);

  let stuckToBottom = true;
  const scroller = document.scrollingElement;
  const onScroll = () => {
    stuckToBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  };
  window.addEventListener("scroll", onScroll, { passive: true });

  function refresh() {
    const status = conversation.status();
    clear(statusSlot).append(statusChip(status));
    cancel.hidden = !conversation.runningTurn;
    const pending = conversation.pending.size;
    banner.hidden = pending === 0;
    banner.textContent = pending === 1 ? "1 tool call waits for your approval" : `${pending} tool calls wait for your approval`;
    const tokens = conversation.totalTokens ? `${conversation.totalTokens} tokens` : "";
    costSlot.textContent = [tokens, conversation.priced ? formatCost(conversation.totalCost) : ""].filter(Boolean).join(" · ");
    if (conversation.agent && agentSelect.value !== conversation.agent) {
      offer(agentSelect, conversation.agent);
      agentSelect.value = conversation.agent;
    }
    if (modelSelect.value !== currentModel()) {
      // A model switched to by another client, not in the server's list: shown as it is.
      offer(modelSelect, currentModel());
      modelSelect.value = currentModel();
    }
    if (stuckToBottom) scroller.scrollTop = scroller.scrollHeight;
  }
  let scheduled = false;
  conversation.onChange = (event) => {
    if (event.type === "user.message" && title.textContent === "untitled session") {
      title.textContent = visible(event.content.slice(0, 120));
    }
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      refresh();
    });
  };

  banner.addEventListener("click", () => {
    const first = conversationRoot.querySelector("details.tool[data-status='approval']");
    if (first) first.scrollIntoView({ behavior: "smooth", block: "center" });
  });

  api.session(sessionId).then((session) => {
    title.textContent = visible(session.title) || "untitled session";
    document.title = `${title.textContent} · agent-runtime`;
    if (!conversation.agent) conversation.agent = session.current_agent;
    refresh();
  }, handleError);
  api.agents().then((r) => {
    for (const a of r.agents || []) offer(agentSelect, a.name, visibleProse(a.description));
    if (conversation.agent) agentSelect.value = conversation.agent;
  }, handleError);

  api.models().then((r) => {
    for (const m of r.models || []) offer(modelSelect, m.name, m.name === r.default ? "the server's model" : "");
    modelSelect.value = currentModel();
  }, () => {}); // a server older than GET /v1/models: the default, and what the log names

  modelSelect.addEventListener("change", async () => {
    const model = modelSelect.value || null;
    try {
      await api.command(sessionId, { type: "switch_model", model });
    } catch (error) {
      handleError(error);
      modelSelect.value = currentModel();
    }
  });

  agentSelect.addEventListener("change", async () => {
    const agent = agentSelect.value;
    try {
      await api.command(sessionId, { type: "switch_agent", agent });
    } catch (error) {
      handleError(error);
      if (conversation.agent) agentSelect.value = conversation.agent;
    }
  });

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      const command = { type: "cancel" };
      if (conversation.runningTurn) command.turn_id = conversation.runningTurn;
      await api.command(sessionId, command);
    } catch (error) {
      handleError(error);
    } finally {
      cancel.disabled = false;
    }
  });

  async function submit() {
    const content = input.value;
    if (!content.trim()) return;
    send.disabled = true;
    try {
      await api.command(sessionId, { type: "user_message", content });
      input.value = "";
      stuckToBottom = true;
    } catch (error) {
      handleError(error);
    } finally {
      send.disabled = false;
      input.focus();
    }
  }
  composer.addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });

  const stream = new SessionStream(
    sessionId,
    (event) => conversation.add(event),
    (state) => {
      live.textContent = state;
      live.className = `live ${state}`;
      conversationRoot.dataset.stream = state;
      conversationRoot.dataset.after = String(stream.after ?? 0);
    },
    (status, why) => {
      if (status === 401) {
        signOut("The server refused the token: sign in again.");
        return;
      }
      const deleted = why === "deleted";
      live.textContent = deleted ? "deleted" : "no such session";
      live.className = "live missing";
      conversationRoot.dataset.stream = "missing";
      notify(deleted ? "This session was deleted." : `No such session: ${sessionId}`);
    },
    () => {
      // The cache is gone: a new view of the same session replays it from seq 0.
      route();
      notify("The server's log is shorter than this page's copy (a restored database?): reloaded.", "info");
    },
  );

  main.append(
    el(
      "div.page.session-page",
      {},
      el(
        "div.session-head",
        {},
        el("div.head-left", {}, el("a.back", { href: "#/", text: "← sessions" }), title, el("div.head-meta", {}, statusSlot, live, costSlot)),
        el("div.actions", {}, el("label.muted", { text: "agent" }, agentSelect), el("label.muted", { text: "model" }, modelSelect), cancel),
      ),
      banner,
      conversationRoot,
      composer,
    ),
  );
  stream.start();
  refresh();
  input.focus();
  return {
    stop() {
      stream.close();
      window.removeEventListener("scroll", onScroll);
    },
  };
}

// ---------------------------------------------------------------- inbox

async function allSessions() {
  const out = [];
  let cursor = null;
  for (let page = 0; page < 10; page++) {
    const result = await api.sessions(100, cursor);
    out.push(...result.sessions);
    cursor = result.next_cursor;
    if (!cursor) break;
  }
  return out;
}

/** Everything that waits for a human across the user's sessions. */
async function inboxItems() {
  const sessions = await allSessions();
  const items = [];
  await Promise.all(
    sessions.map(async (session) => {
      const [approvals, fold] = await Promise.all([
        session.running_turn ? api.approvals(session.id) : Promise.resolve({ approvals: [] }),
        watch(session),
      ]);
      for (const approval of approvals.approvals || []) items.push({ kind: "approval", session, approval, key: `${session.id}/${approval.call_id}` });
      for (const question of fold.questions.values()) items.push({ kind: "question", session, question, key: `${session.id}/q/${question.question_id}` });
    }),
  );
  items.sort((a, b) => (b.session.updated_at || 0) - (a.session.updated_at || 0));
  return items;
}

function inboxCard(item, onDone) {
  const { session } = item;
  const link = el("a.inbox-session", { href: `#/session/${encodeURIComponent(session.id)}`, text: visible(session.title || session.id) });
  if (item.kind === "question") {
    const input = el("input", { type: "text", placeholder: "your answer", required: true, "aria-label": "answer" });
    const form = el("form.answer", {}, input, el("button", { type: "submit", text: "Answer" }));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await api.command(session.id, { type: "answer", question_id: item.question.question_id, text: input.value });
        onDone();
      } catch (error) {
        handleError(error);
      }
    });
    return el("div.inbox-card", { dataset: { key: item.key } }, link, el("div.label", { text: "question" }), el("div.text", { text: visibleProse(item.question.text) }), form);
  }
  const a = item.approval;
  const card = el(
    "div.inbox-card.approval-card",
    { dataset: { key: item.key, call: a.call_id } },
    el("div.inbox-top", {}, link, el("span.muted", { text: timeAgo(a.requested_at || session.updated_at) })),
    el("div.tool-line", {}, el("span.tool-name", { text: visible(a.name) }), el("span.rule", { text: visible(a.rule) })),
  );
  const diff = fileDiff(a.name, a.arguments);
  card.append(diff || el("pre.args", { text: pretty(a.arguments) }));
  const buttons = el("div.buttons");
  const decide = async (decision, extra = {}) => {
    for (const b of buttons.querySelectorAll("button")) b.disabled = true;
    try {
      await api.command(session.id, { type: "approval", call_id: a.call_id, decision, ...extra });
      onDone();
    } catch (error) {
      handleError(error);
      for (const b of buttons.querySelectorAll("button")) b.disabled = false;
    }
  };
  const feedback = el("input.feedback-input", { type: "text", placeholder: "feedback (optional)", "aria-label": "feedback" });
  buttons.append(
    el("button.approve", { type: "button", text: "Approve", onclick: () => decide("approve") }),
    el("button.secondary.approve-session", { type: "button", text: "For this session", onclick: () => decide("approve", { remember: "session" }) }),
    feedback,
    el("button.danger.reject", { type: "button", text: "Reject", onclick: () => decide("reject", feedback.value.trim() ? { feedback: feedback.value.trim() } : {}) }),
  );
  card.append(buttons);
  return card;
}

function inboxView() {
  let stopped = false;
  let timer = null;
  const cards = new Map();
  const list = el("div.inbox#inbox");
  const empty = el("div.empty", { text: "Nothing waits for you. Approvals and questions of all your sessions show up here." });

  async function poll() {
    try {
      const items = await inboxItems();
      const keys = new Set(items.map((i) => i.key));
      for (const [key, card] of cards) {
        if (!keys.has(key)) {
          card.remove();
          cards.delete(key);
        }
      }
      for (const item of items) {
        if (!cards.has(item.key)) {
          const card = inboxCard(item, () => {
            card.remove();
            cards.delete(item.key);
            empty.hidden = cards.size > 0;
          });
          cards.set(item.key, card);
          list.append(card);
        }
      }
      empty.hidden = cards.size > 0;
      list.dataset.loaded = "true";
    } catch (error) {
      handleError(error);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  main.append(el("div.page", {}, el("div.page-head", {}, el("h1", { text: "Inbox" }), el("span.muted", { text: "waiting for a human" })), empty, list));
  poll();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

// Badge of the inbox in the header, on every page.
async function countInbox() {
  if (getToken()) {
    try {
      const items = await inboxItems();
      inboxCount.textContent = items.length ? String(items.length) : "";
      inboxCount.hidden = !items.length;
    } catch {
      // The views report errors; the badge stays as it was.
    }
  }
  setTimeout(countInbox, POLL_MS * 2);
}

// ---------------------------------------------------------------- routing

function route() {
  if (view) view.stop();
  clear(main);
  document.title = "agent-runtime console";
  if (!getToken()) {
    view = signInView();
    return;
  }
  nav.hidden = false;
  const hash = location.hash || "#/";
  for (const link of nav.querySelectorAll("a[data-route]")) {
    link.classList.toggle("active", hash.startsWith(link.dataset.route) && (link.dataset.route !== "#/" || hash === "#/"));
  }
  const match = /^#\/session\/(.+)$/.exec(hash);
  const sessionId = match && decodedId(match[1]);
  if (match && sessionId === null) {
    // A hand-edited or truncated link names no session: the list, and why.
    view = sessionsView();
    notify(`No such session: ${visible(match[1])} is not a valid link`);
  } else if (match) view = sessionView(sessionId);
  else if (hash === "#/inbox") view = inboxView();
  else view = sessionsView();
}

/** The session id of a `#/session/<id>` link, or null if its escapes are malformed. */
function decodedId(encoded) {
  try {
    return decodeURIComponent(encoded);
  } catch {
    return null; // URIError: a lone or truncated %-escape such as %E0%A4%A
  }
}

document.getElementById("signout").addEventListener("click", () => signOut());
document.getElementById("server").textContent = new URL(SERVER).host;
window.addEventListener("hashchange", route);
route();
countInbox();
