// Markdown of final assistant messages: marked → DOMPurify → a DocumentFragment.
//
// The only place the console turns model text into HTML. DOMPurify removes
// scripts, event handlers, forms, styles, iframes and remote media; the hook
// below keeps only http(s), mailto and in-page links (a `javascript:` link loses
// its href), keeps only data: images, and makes every link open in a new tab
// without an opener. Then every text it shows goes through visibleProse, like
// the rest of the conversation (see shownAsIs).

import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.js";
import { visibleProse } from "./dom.js";

const marked = new Marked({ gfm: true, breaks: false, async: false });

const SAFE_URL = /^(https?:|mailto:|#)/i;

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    const href = node.getAttribute("href");
    if (href !== null && !SAFE_URL.test(href.trim())) node.removeAttribute("href");
    if (node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  }
  if (node.tagName === "IMG") {
    const src = node.getAttribute("src") || "";
    // CSP allows only same-origin and data: images; say so instead of a broken icon.
    if (!/^data:image\//i.test(src)) {
      node.removeAttribute("src");
    }
  }
});

// No remote media: audio, video and their sources, and the image URLs the hook
// above does not see (srcset, a video's poster, a table's background) would make
// the page fetch a URL the model chose (a beacon), stopped only by the CSP.
const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "video", "audio", "source", "track", "picture"],
  FORBID_ATTR: ["style", "class", "id", "srcset", "poster", "background"],
  ADD_ATTR: ["target"],
  RETURN_DOM_FRAGMENT: true,
};

// Attributes whose text the page shows (a tooltip, an image's stand-in text).
const SHOWN_ATTRIBUTES = ["title", "alt"];

/**
 * *root* with every non-printable character of its text escaped (visibleProse:
 * newlines and tabs kept, so code blocks keep their lines). Done on the DOM, not
 * on the markdown: the markdown keeps its meaning, and a character an HTML
 * entity decodes to (&#x202e;, &rlm;) exists only once the HTML is parsed.
 */
function shownAsIs(root) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) node.data = visibleProse(node.data);
  for (const name of SHOWN_ATTRIBUTES) {
    for (const node of root.querySelectorAll(`[${name}]`)) node.setAttribute(name, visibleProse(node.getAttribute(name)));
  }
  return root;
}

/** Sanitised DOM for *text* (markdown); never throws. */
export function renderMarkdown(text) {
  let html;
  try {
    html = marked.parse(String(text ?? ""));
  } catch {
    const fragment = document.createDocumentFragment();
    const pre = document.createElement("pre");
    pre.textContent = visibleProse(text);
    fragment.append(pre);
    return fragment;
  }
  return shownAsIs(DOMPurify.sanitize(html, PURIFY));
}
