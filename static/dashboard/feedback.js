// What the page is doing and what went wrong: the busy overlay over the results (its label
// stays in view while the page scrolls) and the error beside the form.

import { $ } from "./dom.js";

export function initFeedback(store) {
  const overlay = $("busy");
  const overlayText = $("busy-text");
  const content = $("content");
  const error = $("error");

  store.subscribe(({ busy, error: message }) => {
    overlay.hidden = busy === null;
    overlayText.textContent = busy ? busy.label : "";
    content.setAttribute("aria-busy", String(busy !== null));
    error.hidden = message === null;
    error.textContent = message ?? "";
  });
}
