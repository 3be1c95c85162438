// Small helpers shared by the page's modules.

import { sentence } from "./format.js";

export const $ = (id) => document.getElementById(id);

/** A result's notes, as sentences in a list (hidden when there are none). */
export function showNotes(list, notes) {
  list.replaceChildren(...notes.map((note) => {
    const item = document.createElement("li");
    item.textContent = sentence(note);
    return item;
  }));
  list.hidden = notes.length === 0;
}
