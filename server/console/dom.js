// Tiny DOM helpers. Text is always set with textContent, never parsed as HTML.

/**
 * el("div.a.b", {title: "x", dataset: {seq: 3}, onclick}, "text", child, ...)
 * Strings among the children become text nodes.
 */
export function el(spec, props = {}, ...children) {
  const tag = /^[a-z0-9-]*/i.exec(spec)[0] || "div";
  const node = document.createElement(tag);
  for (const [, sigil, name] of spec.slice(tag.length).matchAll(/([.#])([^.#]+)/g)) {
    if (sigil === "#") node.id = name;
    else node.classList.add(name);
  }
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = String(value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

export function timeAgo(seconds) {
  const delta = Date.now() / 1000 - seconds;
  if (delta < 60) return "just now";
  if (delta < 3600) return `${Math.floor(delta / 60)} min ago`;
  if (delta < 86400) return `${Math.floor(delta / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleDateString();
}

export function formatCost(cost) {
  if (cost === null || cost === undefined) return "unpriced";
  if (cost === 0) return "$0";
  if (cost < 0.01) return `$${cost.toPrecision(2)}`;
  return `$${cost.toFixed(2)}`;
}

// What Python's str.isprintable() rejects (categories C and Z, but the ASCII
// space): the rule of the terminal client (server/chat/_text.py). Bidi controls
// (U+202A-E, U+2066-9, U+200E/F, U+061C) are among them: shown raw they reorder
// what an approval displays, so a command could read differently from what runs.
const HIDDEN = /(?! )[\p{C}\p{Z}]/u;
const HIDDEN_ALL = new RegExp(HIDDEN.source, "gu");
const HIDDEN_IN_BLOCK = /(?![ \n\t])[\p{C}\p{Z}]/gu;
// Prose (messages, results, questions) is not held to that rule: it needs what
// text needs to read right, spaces of every kind (U+00A0, U+3000), joiners
// (emoji sequences, Persian and Indic scripts), soft hyphens, private-use and
// newer characters. Only what changes how it reads or breaks the page is
// escaped: controls other than newline and tab, the bidi controls, U+2028/9.
const HIDDEN_IN_PROSE = /(?![\n\t])[\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/gu;
const NAMED = { "\t": "\\t", "\n": "\\n", "\r": "\\r" };

function hex(code, width) {
  return code.toString(16).padStart(width, "0");
}

/** *char* as Python's repr() escapes it: \n, \x85, \u202e, \U000e0001. */
function escaped(char) {
  if (NAMED[char]) return NAMED[char];
  const code = char.codePointAt(0);
  if (code < 0x100) return `\\x${hex(code, 2)}`;
  if (code < 0x10000) return `\\u${hex(code, 4)}`;
  return `\\U${hex(code, 8)}`;
}

/** *text* on one line, every non-printable character (newlines too) escaped. */
export function visible(text) {
  text = String(text ?? "");
  return HIDDEN.test(text) ? text.replace(HIDDEN_ALL, escaped) : text;
}

/** *text* with newlines and tabs kept and every other non-printable character escaped. */
export function visibleBlock(text) {
  return String(text ?? "").replace(/\r\n/g, "\n").replace(HIDDEN_IN_BLOCK, escaped);
}

/** *text* as prose (newlines and tabs kept): controls and bidi controls escaped (HIDDEN_IN_PROSE). */
export function visibleProse(text) {
  return String(text ?? "").replace(/\r\n/g, "\n").replace(HIDDEN_IN_PROSE, escaped);
}

/** *char* as a JSON escape, per UTF-16 unit (a surrogate pair past U+FFFF). */
function jsonEscaped(char) {
  let out = "";
  for (let i = 0; i < char.length; i++) out += `\\u${hex(char.charCodeAt(i), 4)}`;
  return out;
}

/**
 * *value* as indented JSON with every non-printable character a JSON escape
 * (\u202e): still valid JSON, so the edit box parses back the very value shown.
 * Outside strings JSON.stringify writes only ASCII, spaces and newlines.
 */
export function pretty(value) {
  let json;
  try {
    json = JSON.stringify(value, null, 2);
  } catch {
    return visibleBlock(String(value));
  }
  if (json === undefined) return String(value);
  return json.replace(HIDDEN_IN_BLOCK, jsonEscaped);
}

export const STATUS_LABEL = {
  running: "running",
  approval: "waiting for approval",
  ide: "waiting for the IDE",
  question: "waiting for an answer",
  idle: "idle",
};
