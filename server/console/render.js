// The conversation of one session, built event by event from its log.
//
// Every event leaves exactly one element carrying data-seq (a rendered event),
// so what the page shows can be checked against the log. Model and tool text is
// set with textContent; only final messages go through renderMarkdown. Every
// string of an event goes through visible() (one line: names, agents, models),
// visibleProse() (prose: messages, streamed text, results, errors, questions) or
// pretty() (arguments), so no bidi control can make the conversation, or what an
// approval runs, read differently from what it is. Prose keeps joiners and
// spaces of every kind (emoji sequences, Persian, CJK): see dom.js.

import { el, formatCost, pretty, visible, visibleProse } from "./dom.js";
import { fileDiff } from "./diff.js";
import { renderMarkdown } from "./markdown.js";

function target(args) {
  if (!args || typeof args !== "object") return "";
  for (const key of ["path", "command", "source", "regex", "question", "mode", "message"]) {
    if (typeof args[key] === "string") return args[key];
  }
  return "";
}

function clip(text, n) {
  text = String(text ?? "");
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

/**
 * The shown form of *text*, the next delta of *stream*. A delta may end inside a
 * pair that escapes as one: a CR whose LF is the next delta's first character
 * (a newline, not "\r") or the high half of a surrogate pair. That character
 * waits in stream.carry for the next delta (or flushStream at the stream's end).
 */
function streamed(stream, text) {
  text = stream.carry + String(text ?? "");
  stream.carry = /[\r\ud800-\udbff]$/.test(text) ? text.slice(-1) : "";
  return visibleProse(stream.carry ? text.slice(0, -1) : text);
}

/** The end of *stream*'s deltas: a character still waiting is shown on its own. */
function flushStream(stream) {
  if (stream.carry && stream.last) stream.last.textContent += visibleProse(stream.carry);
  stream.carry = "";
}

function tokens(usage) {
  if (!usage) return "";
  const parts = [`${usage.prompt_tokens ?? 0} in`, `${usage.completion_tokens ?? 0} out`];
  if (usage.cached_tokens) parts.push(`${usage.cached_tokens} cached`);
  if (usage.reasoning_tokens) parts.push(`${usage.reasoning_tokens} reasoning`);
  return parts.join(" · ");
}

export class Conversation {
  /**
   * @param {HTMLElement} root
   * @param {{decide: Function, answer: Function}} actions  approval / question answers
   */
  constructor(root, actions) {
    this.root = root;
    this.actions = actions;
    this.turns = new Map();
    this.subtasks = new Map();
    this.openSubtasks = [];
    this.streams = new Map();
    this.tools = new Map();
    this.pending = new Map(); // call_id -> approval.requested
    this.ideCalls = new Set();
    this.questions = new Map(); // question_id -> question.asked, while it waits
    this.questionNodes = new Map();
    this.runningTurn = null;
    this.agent = null;
    this.model = null; // the session's switched model; null: the defaults
    this.totalCost = 0;
    this.totalTokens = 0;
    this.priced = false;
    this.onChange = () => {};
  }

  status() {
    if (this.pending.size) return "approval";
    if (this.questions.size) return "question";
    if (this.ideCalls.size) return "ide";
    if (this.runningTurn) return "running";
    return "idle";
  }

  turn(turnId) {
    let turn = this.turns.get(turnId);
    if (!turn) {
      const head = el("div.turn-head");
      const body = el("div.turn-body");
      const node = el("section.turn.running", { dataset: { turn: turnId } }, head, body);
      this.root.append(node);
      turn = { node, head, body };
      this.turns.set(turnId, turn);
    }
    return turn;
  }

  container(event) {
    if (event.subtask_id && this.subtasks.has(event.subtask_id)) {
      return this.subtasks.get(event.subtask_id).body;
    }
    if (event.turn_id) return this.turn(event.turn_id).body;
    return this.root;
  }

  tool(event, call, container) {
    let card = this.tools.get(call.call_id);
    if (card) return card;
    const status = el("span.chip.tool-status", { text: "requested" });
    const summary = el(
      "summary",
      {},
      el("span.tool-name", { text: visible(call.name) }),
      el("span.tool-target", { text: clip(visible(target(call.arguments)), 80) }),
      status,
    );
    const body = el("div.tool-body", {}, el("pre.args", { text: pretty(call.arguments) }));
    const node = el("details.tool", { dataset: { call: call.call_id } }, summary, body);
    (container || this.container(event)).append(node);
    card = { node, status, body, name: call.name, args: call.arguments };
    this.tools.set(call.call_id, card);
    return card;
  }

  setToolStatus(card, text, kind) {
    card.status.textContent = text;
    card.status.className = `chip tool-status ${kind}`;
    card.node.dataset.status = kind;
  }

  /** A question that can no longer be answered: no longer waiting, its form gone. */
  closeQuestion(questionId, why) {
    this.questions.delete(questionId);
    const asked = this.questionNodes.get(questionId);
    const form = asked && asked.querySelector("form");
    if (!form) return asked;
    form.remove();
    if (why) {
      asked.classList.add("closed");
      asked.append(line("unanswered", el("span.label", { text: "no answer" }), el("span", { text: visibleProse(why) })));
    }
    return asked;
  }

  add(event) {
    const handler = HANDLERS[event.type] || HANDLERS.unknown;
    const node = handler.call(this, event);
    if (node) node.dataset.seq = String(event.seq);
    this.onChange(event);
  }
}

function line(cls, ...children) {
  return el(`div.line.${cls}`, {}, ...children);
}

const HANDLERS = {
  "user.message"(event) {
    const node = el(
      "div.msg.user",
      {},
      el("div.who", { text: event.agent ? `you → ${visible(event.agent)}` : "you" }),
      el("div.text", { text: visibleProse(event.content) }),
    );
    this.root.append(node);
    return node;
  },

  "turn.started"(event) {
    const turn = this.turn(event.turn_id);
    this.runningTurn = event.turn_id;
    this.agent = event.agent;
    const node = el(
      "div.turn-title",
      {},
      el("span.agent", { text: visible(event.agent) }),
      event.model ? el("span.muted", { text: visible(event.model) }) : null,
    );
    turn.head.append(node);
    return node;
  },

  "turn.ended"(event) {
    const turn = this.turn(event.turn_id);
    turn.node.classList.remove("running");
    turn.node.classList.add(`ended-${event.reason}`);
    if (this.runningTurn === event.turn_id) this.runningTurn = null;
    // A question cannot outlive its turn (cancelled, timed out, interrupted).
    for (const [id, question] of [...this.questions]) {
      if (question.turn_id === event.turn_id) this.closeQuestion(id, `the turn ended (${event.reason})`);
    }
    for (const [id, stream] of this.streams) {
      if (stream.turnId === event.turn_id) {
        stream.node.classList.remove("streaming");
        flushStream(stream);
        this.streams.delete(id);
      }
    }
    const usage = event.usage;
    const bits = [el(`span.chip.reason.${event.reason}`, { text: visible(event.reason) })];
    if (usage) {
      bits.push(el("span.muted", { text: tokens(usage) }));
      bits.push(el("span.cost", { text: formatCost(usage.cost) }));
    }
    if (event.context_tokens && event.context_window) {
      const pct = Math.round((100 * event.context_tokens) / event.context_window);
      bits.push(el("span.muted", { text: `ctx ${pct}%` }));
    }
    const node = el("div.turn-end", {}, bits);
    turn.node.append(node);
    return node;
  },

  "text.delta"(event) {
    let stream = this.streams.get(event.message_id);
    if (!stream) {
      const text = el("div.stream-text");
      const body = el("div.md");
      const node = el("div.msg.assistant.streaming", {}, el("div.who", { text: visible(this.agent) || "assistant" }), text, body);
      this.container(event).append(node);
      stream = { node, text, body, turnId: event.turn_id, carry: "", last: null };
      this.streams.set(event.message_id, stream);
    }
    // Escaped delta by delta (a span each, appended): what streamed never changes.
    const span = el("span", { text: streamed(stream, event.text) });
    stream.text.append(span);
    stream.last = span;
    return span;
  },

  message(event) {
    let stream = this.streams.get(event.message_id);
    if (!stream) {
      const node = el("div.msg.assistant", {}, el("div.who", { text: visible(event.agent) || "assistant" }), el("div.stream-text"), el("div.md"));
      this.container(event).append(node);
      stream = { node, text: node.children[1], body: node.children[2] };
    }
    this.streams.delete(event.message_id);
    flushStream(stream);
    stream.node.classList.remove("streaming");
    stream.node.querySelector(".who").textContent = visible(event.agent) || "assistant";
    stream.text.hidden = true;
    const body = stream.body;
    body.append(renderMarkdown(event.content));
    if (event.truncated) {
      stream.node.classList.add("truncated");
      body.append(el("div.chip.truncated-badge", { text: "truncated" }));
    } else if (event.cut_off) {
      // Whole as the model sent it, but cut by the provider (output limit, filter).
      body.append(el("div.chip.truncated-badge", { text: `cut off: ${visible(event.cut_off)}` }));
    }
    const container = stream.node.parentElement;
    for (const call of event.tool_calls || []) this.tool(event, call, container);
    return body;
  },

  "approval.requested"(event) {
    const card = this.tool(event, event);
    this.pending.set(event.call_id, event);
    this.setToolStatus(card, "needs approval", "approval");
    card.node.open = true;
    const panel = el("div.approval-panel", {});
    panel.append(el("div.rule", {}, el("span.label", { text: "asked by" }), el("span", { text: visible(event.rule) || "policy" })));
    const diff = fileDiff(event.name, event.arguments);
    if (diff) panel.append(diff);
    panel.append(approvalForm(event, this.actions));
    card.body.append(panel);
    card.approval = panel;
    return panel;
  },

  "approval.resolved"(event) {
    const card = this.tools.get(event.call_id) || this.tool(event, { call_id: event.call_id, name: "tool", arguments: {} });
    this.pending.delete(event.call_id);
    if (card.approval) {
      const form = card.approval.querySelector("form.decide");
      if (form) form.remove();
    }
    const words = {
      approve: "approved", edit: "approved with edited arguments", reject: "rejected",
      respond: "answered without running", expire: "expired", cancel: "cancelled",
    };
    let text = `${words[event.decision] || visible(event.decision)} by ${visible(event.by)}`;
    if (event.remember === "session") text += " (for the rest of the session)";
    const node = line(`resolved.${event.decision}`, el("span", { text }));
    if (event.feedback) node.append(el("span.feedback", { text: `“${visibleProse(event.feedback)}”` }));
    if (event.arguments) node.append(el("pre.args", { text: pretty(event.arguments) }));
    card.body.append(node);
    const kind = event.decision === "reject" || event.decision === "expire" || event.decision === "cancel" ? "rejected" : "approved";
    this.setToolStatus(card, words[event.decision] || visible(event.decision), kind);
    return node;
  },

  "tool.call"(event) {
    const card = this.tool(event, event);
    this.ideCalls.add(event.call_id);
    this.setToolStatus(card, "waiting for the IDE", "ide");
    const node = line("ide", el("span", { text: "Waiting for the IDE to run this call (the console never runs tools)." }));
    card.body.append(node);
    card.idleLine = node;
    return node;
  },

  "tool.started"(event) {
    const card = this.tool(event, event);
    const server = visible(event.server);
    this.setToolStatus(card, `running on the server${server ? ` (${server})` : ""}`, "server");
    const node = line("server", el("span", { text: `Running on the server${server ? ` via MCP server ${server}` : ""}.` }));
    card.body.append(node);
    return node;
  },

  "tool.result"(event) {
    const card = this.tools.get(event.call_id) || this.tool(event, { call_id: event.call_id, name: "tool", arguments: {} });
    this.ideCalls.delete(event.call_id);
    // A question is closed by the result of its call: an answer, or a failure
    // (cancelled or timed out) that no question.answered follows.
    if (this.questions.has(event.call_id)) this.closeQuestion(event.call_id, event.ok ? "" : event.summary || "failed");
    if (card.idleLine) {
      // No longer waiting: say where it ran (the line stays, one per event).
      card.idleLine.querySelector("span").textContent = "Sent to the IDE, which ran it.";
      card.idleLine = null;
    }
    this.setToolStatus(card, event.ok ? "done" : "failed", event.ok ? "ok" : "failed");
    const node = el("div.result", {}, el("div.label", { text: event.ok ? "result" : "failed" }));
    node.append(el("pre.summary", { text: visibleProse(event.summary) }));
    if (event.content && event.content !== event.summary) {
      node.append(el("details.full", {}, el("summary", { text: "full result" }), el("pre", { text: visibleProse(event.content) })));
    }
    card.body.append(node);
    return node;
  },

  "question.asked"(event) {
    this.questions.set(event.question_id, event);
    const form = el("form.answer", {});
    const input = el("input", { type: "text", placeholder: "your answer", required: true, "aria-label": "answer" });
    for (const option of event.options || []) {
      form.append(el("button.secondary", { type: "button", text: visible(option), onclick: () => this.actions.answer(event.question_id, option) }));
    }
    form.append(input, el("button", { type: "submit", text: "Answer" }));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.actions.answer(event.question_id, input.value);
    });
    const node = el("div.question-box", {}, el("div.label", { text: "question" }), el("div.text", { text: visibleProse(event.text) }), form);
    this.container(event).append(node);
    this.questionNodes.set(event.question_id, node);
    return node;
  },

  "question.answered"(event) {
    const asked = this.closeQuestion(event.question_id, "");
    const node = line("answered", el("span.label", { text: "answer" }), el("span", { text: visibleProse(event.text) }));
    (asked || this.container(event)).append(node);
    return node;
  },

  "subtask.started"(event) {
    const parent = this.openSubtasks.length
      ? this.subtasks.get(this.openSubtasks[this.openSubtasks.length - 1]).body
      : event.turn_id ? this.turn(event.turn_id).body : this.root;
    const status = el("span.chip.tool-status.server", { text: "running" });
    const title = el(
      "summary",
      {},
      el("span.tool-name", { text: `subtask · ${visible(event.agent)}` }),
      el("span.tool-target", { text: clip(visible(event.message), 100) }),
      status,
    );
    const body = el("div.subtask-body", {}, el("div.task", { text: visibleProse(event.message) }));
    const node = el("details.subtask", { open: true }, title, body);
    parent.append(node);
    this.subtasks.set(event.subtask_id, { node, body, status });
    this.openSubtasks.push(event.subtask_id);
    return title;
  },

  "subtask.ended"(event) {
    const sub = this.subtasks.get(event.subtask_id);
    this.openSubtasks = this.openSubtasks.filter((id) => id !== event.subtask_id);
    const node = line(event.ok ? "ok" : "failed", el("span.label", { text: event.ok ? "subtask done" : "subtask failed" }), el("span", { text: visibleProse(event.summary) }));
    if (sub) {
      sub.status.textContent = event.ok ? "done" : "failed";
      sub.status.className = `chip tool-status ${event.ok ? "ok" : "failed"}`;
      sub.body.append(node);
      sub.node.open = false;
    } else {
      this.container(event).append(node);
    }
    return node;
  },

  "agent.switched"(event) {
    this.agent = event.to;
    const node = el("div.divider", {}, el("span", { text: `${visible(event.from)} → ${visible(event.to)}` }), event.reason ? el("span.muted", { text: visibleProse(event.reason) }) : null);
    this.container(event).append(node);
    return node;
  },

  "model.switched"(event) {
    this.model = event.to ?? null;
    const node = el("div.divider", {}, el("span", { text: `model ${visible(event.from ?? "default")} → ${visible(event.to ?? "default")}` }));
    this.container(event).append(node);
    return node;
  },

  usage(event) {
    if (typeof event.cost === "number") {
      this.totalCost += event.cost;
      this.priced = true;
    }
    this.totalTokens += (event.prompt_tokens || 0) + (event.completion_tokens || 0);
    // A call cut mid-answer: the runtime's estimate, since the provider never reported it.
    const counted = event.estimated === true ? `≈ ${tokens(event)} (estimated)` : tokens(event);
    const node = el("div.usage", {}, el("span", { text: visible(event.model) }), el("span", { text: counted }), el("span.cost", { text: formatCost(event.cost) }));
    this.container(event).append(node);
    return node;
  },

  error(event) {
    const node = el("div.error-box", {}, el("strong", { text: visible(event.code) }), el("span", { text: visibleProse(event.message) }), event.retryable ? el("span.muted", { text: "retryable" }) : null);
    this.container(event).append(node);
    return node;
  },

  "compaction.started"(event) {
    const node = el("div.divider", {}, el("span", { text: `compacting the history (${visible(event.reason)})` }));
    this.container(event).append(node);
    return node;
  },

  "context.compacted"(event) {
    const node = el("div.divider", {}, el("span", { text: `history compacted (events ${event.from_seq}–${event.to_seq})` }));
    this.container(event).append(node);
    return node;
  },

  unknown(event) {
    const node = el("div.divider.muted", {}, el("span", { text: visible(event.type) }));
    this.container(event).append(node);
    return node;
  },
};

function approvalForm(event, actions) {
  const form = el("form.decide", {});
  const status = el("span.form-status", { role: "status" });
  const editor = el("textarea.edit-args", { spellcheck: false, "aria-label": "edited arguments (JSON)", rows: 8 });
  editor.value = pretty(event.arguments);
  const feedback = el("input.feedback-input", { type: "text", placeholder: "feedback for the agent (optional)", "aria-label": "feedback" });
  const editBox = el("div.edit-box", { hidden: true }, editor);
  const rejectBox = el("div.reject-box", { hidden: true }, feedback);
  const run = async (decision, extra) => {
    for (const b of form.querySelectorAll("button")) b.disabled = true;
    status.textContent = "sending…";
    try {
      await actions.decide(event.call_id, decision, extra);
      status.textContent = "";
    } catch (error) {
      status.textContent = visibleProse(error.message);
      for (const b of form.querySelectorAll("button")) b.disabled = false;
    }
  };
  const approve = el("button.approve", { type: "button", text: "Approve", onclick: () => run("approve", {}) });
  const session = el("button.secondary.approve-session", { type: "button", text: `Approve ${visible(event.name)} for this session`, onclick: () => run("approve", { remember: "session" }) });
  const edit = el("button.secondary.edit", {
    type: "button",
    text: "Edit arguments",
    onclick: () => {
      if (editBox.hidden) {
        editBox.hidden = false;
        rejectBox.hidden = true;
        edit.textContent = "Run with these arguments";
        editor.focus();
        return;
      }
      let args;
      try {
        args = JSON.parse(editor.value);
      } catch (error) {
        status.textContent = `not JSON: ${visible(error.message)}`; // it may quote the text
        return;
      }
      if (!args || typeof args !== "object" || Array.isArray(args)) {
        status.textContent = "the arguments must be a JSON object";
        return;
      }
      run("edit", { arguments: args });
    },
  });
  const reject = el("button.danger.reject", {
    type: "button",
    text: "Reject",
    onclick: () => {
      if (rejectBox.hidden) {
        rejectBox.hidden = false;
        editBox.hidden = true;
        reject.textContent = "Send rejection";
        feedback.focus();
        return;
      }
      const extra = feedback.value.trim() ? { feedback: feedback.value.trim() } : {};
      run("reject", extra);
    },
  });
  form.addEventListener("submit", (e) => e.preventDefault());
  form.append(editBox, rejectBox, el("div.buttons", {}, approve, session, edit, reject, status));
  return form;
}
