// A session's live event log: cached per tab, resumed by seq, deduplicated.
//
// Every durable event has a seq (1, 2, 3 ... without gaps). The stream keeps the
// events it delivered in sessionStorage (bounded: see loadCache), so a reload
// renders them again and resumes with ?after=<last seq>: no duplicate, no gap.
// After a few failed connections it asks REST why (EventSource shows no status):
// a 401 or 404 stops it for good (onRefused); a cursor the server refuses as
// past the log's end (a restored database) drops the cache (onRewound). An event
// at or below the last seq is dropped (a replay); one past last + 1 means a gap,
// so the stream reconnects from the last good seq. EventSource's own retry is
// not used: on any error the stream closes it and reconnects itself with backoff
// and ?after=, which also covers a server that was down when it retried.
//
// SSE names (docs/protocol.md §3): each event's `event:` is its type, except the
// durable `error` event, sent as `agent.error` so it never looks like
// EventSource's connection-error event.

import { api, eventsUrl, getToken } from "./api.js";

const CACHE_PREFIX = "agent-runtime.log.";
const ORDER_KEY = "agent-runtime.logs"; // cached session ids, most recently used first
const MAX_CACHED_SESSIONS = 5;
const MAX_CACHED_EVENTS = 2000; // kept events (elided deltas do not count)
const MAX_CACHE_CHARS = 1_000_000; // of JSON, about 1 MB (2 MB as UTF-16)
const SAVE_MS = 500;
const MAX_BACKOFF_MS = 5000;
const PROBE_AFTER = 3; // failed connections in a row before asking REST why

export const EVENT_TYPES = [
  "user.message", "turn.started", "turn.ended", "agent.switched", "model.switched",
  "text.delta", "message", "approval.requested", "approval.resolved", "tool.call",
  "tool.started", "tool.result", "question.asked", "question.answered",
  "subtask.started", "subtask.ended", "usage", "compaction.started",
  "context.compacted", "agent.error", "session.deleted",
];

// The cache of a session: {v: 2, events, elided}. `events` are the kept
// events; `elided` lists [from, to, messageSeq]: the text.delta events from..to
// of the final `message` at messageSeq, dropped because that message renders
// their text. On load each comes back as a placeholder delta without text, so
// the page still renders every seq exactly once.

function order() {
  try {
    const ids = JSON.parse(sessionStorage.getItem(ORDER_KEY) || "[]");
    return Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : [];
  } catch {
    return [];
  }
}

/** Mark *sessionId* most recently used; drop the caches past the newest few. */
function touch(sessionId) {
  const cached = new Set(
    Object.keys(sessionStorage).filter((k) => k.startsWith(CACHE_PREFIX)).map((k) => k.slice(CACHE_PREFIX.length)),
  );
  const ids = [sessionId, ...order().filter((id) => id !== sessionId && cached.has(id))];
  // Caches the order does not know are the oldest.
  for (const id of cached) if (!ids.includes(id)) ids.push(id);
  for (const id of ids.slice(MAX_CACHED_SESSIONS)) sessionStorage.removeItem(CACHE_PREFIX + id);
  try {
    sessionStorage.setItem(ORDER_KEY, JSON.stringify(ids.slice(0, MAX_CACHED_SESSIONS)));
  } catch {
    // Over the quota: the order is only a hint.
  }
}

/** Evict the least recently used cache other than *sessionId*'s; whether one was. */
function evictOldest(sessionId) {
  const own = CACHE_PREFIX + sessionId;
  const cached = Object.keys(sessionStorage).filter((k) => k.startsWith(CACHE_PREFIX) && k !== own);
  const known = order().map((id) => CACHE_PREFIX + id);
  // Caches the order does not know first, then the known ones, oldest first.
  const victim = cached.find((k) => !known.includes(k)) || known.reverse().find((k) => cached.includes(k));
  if (!victim) return false;
  sessionStorage.removeItem(victim);
  return true;
}

function placeholder(seq, message) {
  const event = { seq, type: "text.delta", message_id: message.message_id, text: "", elided: true };
  if (message.turn_id) event.turn_id = message.turn_id;
  if (message.subtask_id) event.subtask_id = message.subtask_id;
  return event;
}

function loadCache(sessionId) {
  try {
    const raw = sessionStorage.getItem(CACHE_PREFIX + sessionId);
    if (!raw) return [];
    const cache = JSON.parse(raw);
    if (!cache || cache.v !== 2 || !Array.isArray(cache.events)) return [];
    const bySeq = new Map(cache.events.map((e) => [e.seq, e]));
    for (const [from, to, messageSeq] of cache.elided || []) {
      const message = bySeq.get(messageSeq);
      if (!message || message.type !== "message") return [];
      for (let seq = from; seq <= to; seq++) bySeq.set(seq, placeholder(seq, message));
    }
    // Only a contiguous prefix of the log is usable.
    const ok = [];
    while (bySeq.has(ok.length + 1)) ok.push(bySeq.get(ok.length + 1));
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
   * @param {(status: number, why?: string) => void} onRefused  the server answers 401 or 404 for
   *   the session: the stream has stopped for good
   * @param {() => void} onRewound  the server's log is shorter than what this tab
   *   saw (a restored database): the stream has stopped and its cache is gone, so
   *   the page must render the session again from seq 0
   */
  constructor(sessionId, onEvent, onState, onRefused = () => {}, onRewound = () => {}) {
    this.sessionId = sessionId;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onRefused = onRefused;
    this.onRewound = onRewound;
    this.token = getToken(); // the cache belongs to this token's principal only
    // What the cache keeps (see loadCache): kept events, elided deltas, and the
    // kept deltas of each message still streaming.
    this.kept = [];
    this.elided = [];
    this.streaming = new Map(); // message_id -> seqs of its kept deltas
    this.cacheable = true;
    this.dirty = false;
    this.loaded = loadCache(sessionId);
    for (const event of this.loaded) this.record(event);
    this.dirty = false;
    this.lastSeq = this.loaded.length;
    touch(sessionId);
    this.source = null;
    this.timer = null;
    this.saveTimer = null;
    this.backoff = 250;
    this.failures = 0; // connections in a row that failed
    this.closed = false;
    this._save = () => this.save();
    window.addEventListener("pagehide", this._save);
  }

  start() {
    const loaded = this.loaded;
    this.loaded = null;
    for (const event of loaded) this.onEvent(event);
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
      this.failures = 0;
      this.onState("live");
    };
    source.onerror = () => {
      // EventSource shows no HTTP status: after a few failures, ask REST why.
      this.failures += 1;
      if (this.failures % PROBE_AFTER === 0) this.probe();
      this.reconnect();
    };
    const handler = (message) => this.receive(message);
    for (const type of EVENT_TYPES) source.addEventListener(type, handler);
    source.onmessage = handler; // types this console does not know yet
  }

  async probe() {
    try {
      await api.session(this.sessionId);
      // The session is there: is our cursor? After a database restore the log
      // can be shorter than what this tab saw, and the server refuses the
      // cursor (400 bad_parameter), on the stream as here.
      await api.events(this.sessionId, this.lastSeq, 1);
    } catch (error) {
      if (this.closed) return;
      if (error.status === 401 || error.status === 404) {
        this.stop();
        sessionStorage.removeItem(CACHE_PREFIX + this.sessionId);
        this.onRefused(error.status);
      } else if (error.status === 400 && error.code === "bad_parameter") {
        // What the page shows is not the session's log: forget it, start over.
        this.stop();
        sessionStorage.removeItem(CACHE_PREFIX + this.sessionId);
        this.onRewound();
      }
      // Anything else (the network, a 5xx): keep reconnecting.
    }
    // Both answered: a stream problem, keep reconnecting.
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
    if (event.type === "session.deleted") {
      // The log's last event: deleted elsewhere (another tab, client or replica).
      this.stop();
      sessionStorage.removeItem(CACHE_PREFIX + this.sessionId);
      this.onRefused(404, "deleted");
      return;
    }
    this.lastSeq = event.seq;
    this.record(event);
    this.scheduleSave();
    this.onEvent(event);
  }

  /** Keep *event* for the cache (the deltas of a final message are elided). */
  record(event) {
    if (!this.cacheable) return;
    this.dirty = true;
    if (event.type === "text.delta") {
      const seqs = this.streaming.get(event.message_id) || [];
      seqs.push(event.seq);
      this.streaming.set(event.message_id, seqs);
    }
    this.kept.push(event);
    if (event.type === "message" && this.streaming.has(event.message_id)) {
      const seqs = this.streaming.get(event.message_id);
      this.streaming.delete(event.message_id);
      const dropped = new Set(seqs);
      this.kept = this.kept.filter((e) => !dropped.has(e.seq));
      let from = seqs[0];
      for (let i = 1; i <= seqs.length; i++) {
        if (i === seqs.length || seqs[i] !== seqs[i - 1] + 1) {
          this.elided.push([from, seqs[i - 1], event.seq]);
          from = seqs[i];
        }
      }
    }
    if (this.kept.length > MAX_CACHED_EVENTS) this.uncache();
  }

  /** Too much to cache: cache nothing for this session (a reload replays from the server). */
  uncache() {
    this.cacheable = false;
    this.kept = [];
    this.elided = [];
    this.streaming.clear();
    sessionStorage.removeItem(CACHE_PREFIX + this.sessionId);
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
    if (this.saveTimer || !this.cacheable) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null;
      this.save();
    }, SAVE_MS);
  }

  save() {
    // Never for another principal: signed out (or in again) since this stream began.
    if (!this.cacheable || !this.dirty || !this.token || getToken() !== this.token) return;
    const json = JSON.stringify({ v: 2, events: this.kept, elided: this.elided });
    if (json.length > MAX_CACHE_CHARS) {
      this.uncache();
      return;
    }
    for (;;) {
      try {
        sessionStorage.setItem(CACHE_PREFIX + this.sessionId, json);
        this.dirty = false;
        return;
      } catch {
        // Over the storage quota: make room, else give up on caching this session.
        if (!evictOldest(this.sessionId)) {
          this.uncache();
          return;
        }
      }
    }
  }

  stop() {
    this.closed = true;
    window.removeEventListener("pagehide", this._save);
    if (this.source) this.source.close();
    this.source = null;
    if (this.timer) clearTimeout(this.timer);
    if (this.saveTimer) clearTimeout(this.saveTimer);
  }

  close() {
    if (!this.closed) this.save();
    this.stop();
  }
}
