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

export function pretty(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

export const STATUS_LABEL = {
  running: "running",
  approval: "waiting for approval",
  ide: "waiting for the IDE",
  question: "waiting for an answer",
  idle: "idle",
};
