// A session's live event log: cached per tab, resumed by seq, deduplicated.
//
// Every durable event has a seq (1, 2, 3 ... without gaps). The stream keeps the
// events it delivered in sessionStorage (with the last seq), so a reload renders
// them again and resumes with ?after=<last seq>: no duplicate, no gap. An event
// at or below the last seq is dropped (a replay); one past last + 1 means a gap,
// so the stream reconnects from the last good seq. EventSource's own retry is
// not used: on any error the stream closes it and reconnects itself with backoff
// and ?after=, which also covers a server that was down when it retried.
//
// SSE names (docs/protocol.md §3): each event's `event:` is its type, except the
// durable `error` event, sent as `agent.error` so it never looks like
// EventSource's connection-error event.

import { eventsUrl } from "./api.js";

const CACHE_PREFIX = "agent-runtime.log.";
const MAX_BACKOFF_MS = 5000;

export const EVENT_TYPES = [
  "user.message", "turn.started", "turn.ended", "agent.switched", "model.switched",
  "text.delta", "message", "approval.requested", "approval.resolved", "tool.call",
  "tool.started", "tool.result", "question.asked", "question.answered",
  "subtask.started", "subtask.ended", "usage", "compaction.started",
  "context.compacted", "agent.error",
];

function loadCache(sessionId) {
  try {
    const raw = sessionStorage.getItem(CACHE_PREFIX + sessionId);
    if (!raw) return [];
    const events = JSON.parse(raw);
    // Only a contiguous prefix of the log is usable.
    const ok = [];
    for (const event of events) {
      if (event.seq !== ok.length + 1) break;
      ok.push(event);
    }
    return ok;
  } catch {
    return [];
  }
}

export class SessionStream {
  /**
   * @param {string} sessionId
   * @param {(event: object) => void} onEvent  called once per seq, in order
   * @param {(state: string) => void} onState  "connecting" | "live" | "reconnecting"
   */
  constructor(sessionId, onEvent, onState) {
    this.sessionId = sessionId;
    this.onEvent = onEvent;
    this.onState = onState;
    this.events = loadCache(sessionId);
    this.lastSeq = this.events.length;
    this.source = null;
    this.timer = null;
    this.saveTimer = null;
    this.backoff = 250;
    this.closed = false;
    this._save = () => this.save();
    window.addEventListener("pagehide", this._save);
  }

  start() {
    for (const event of this.events) this.onEvent(event);
    this.connect();
  }

  connect() {
    if (this.closed) return;
    this.onState(this.lastSeq === 0 && this.backoff === 250 ? "connecting" : "reconnecting");
    this.after = this.lastSeq; // the cursor of this connection (shown for diagnosis)
    const source = new EventSource(eventsUrl(this.sessionId, this.lastSeq));
    this.source = source;
    source.onopen = () => {
      this.backoff = 250;
      this.onState("live");
    };
    source.onerror = () => this.reconnect();
    const handler = (message) => this.receive(message);
    for (const type of EVENT_TYPES) source.addEventListener(type, handler);
    source.onmessage = handler; // types this console does not know yet
  }

  receive(message) {
    if (this.closed) return;
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    if (typeof event.seq !== "number") return;
    if (event.seq <= this.lastSeq) return; // already rendered
    if (event.seq !== this.lastSeq + 1) {
      this.reconnect(); // a gap: ask again from the last good seq
      return;
    }
    this.lastSeq = event.seq;
    this.events.push(event);
    this.scheduleSave();
    this.onEvent(event);
  }

  reconnect() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
    if (this.closed || this.timer) return;
    this.onState("reconnecting");
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  scheduleSave() {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null;
      this.save();
    }, 200);
  }

  save() {
    try {
      sessionStorage.setItem(CACHE_PREFIX + this.sessionId, JSON.stringify(this.events));
    } catch {
      // Over the storage quota: a reload then replays the log from the server.
      sessionStorage.removeItem(CACHE_PREFIX + this.sessionId);
    }
  }

  close() {
    this.closed = true;
    this.save();
    window.removeEventListener("pagehide", this._save);
    if (this.source) this.source.close();
    if (this.timer) clearTimeout(this.timer);
    if (this.saveTimer) clearTimeout(this.saveTimer);
  }
}
