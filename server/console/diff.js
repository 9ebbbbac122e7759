// A readable diff of a file edit an approval asks about. Paths and lines are
// shown with their non-printable characters escaped (visible, visibleBlock): a
// bidi control must not make the approved edit read differently.
import { el, visible, visibleBlock } from "./dom.js";

function lines(text) {
  const out = visibleBlock(text).split("\n");
  if (out.length > 1 && out[out.length - 1] === "") out.pop();
  return out;
}

function row(kind, text) {
  const sign = kind === "add" ? "+" : kind === "del" ? "-" : " ";
  return el(`div.diff-line.${kind}`, {}, el("span.diff-sign", { text: sign }), el("span.diff-text", { text }));
}

/** A diff element for write_file / apply_diff arguments, or null for other tools. */
export function fileDiff(name, args) {
  if (!args || typeof args !== "object") return null;
  if (name === "write_file" && typeof args.content === "string") {
    return el(
      "div.diff",
      {},
      el("div.diff-head", { text: `${visible(args.path ?? "?")} — new content` }),
      el("div.diff-body", {}, lines(args.content).map((t) => row("add", t))),
    );
  }
  if (name === "apply_diff" && typeof args.search === "string") {
    return el(
      "div.diff",
      {},
      el("div.diff-head", { text: `${visible(args.path ?? "?")} — replace` }),
      el(
        "div.diff-body",
        {},
        lines(args.search).map((t) => row("del", t)),
        lines(args.replace).map((t) => row("add", t)),
      ),
    );
  }
  return null;
}
