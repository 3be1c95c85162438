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

/** Rows of text into a table's body, the first cell of each a row header. */
export function fillTable(table, rows) {
  table.tBodies[0].replaceChildren(...rows.map((cells) => {
    const row = document.createElement("tr");
    row.append(...cells.map((text, index) => {
      const cell = document.createElement(index === 0 ? "th" : "td");
      if (index === 0) cell.scope = "row";
      cell.textContent = text;
      return cell;
    }));
    return row;
  }));
}

/** Bring a section that has just been drawn into view, unless its top is already in view. */
export function reveal(element) {
  const top = element.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight - 80) element.scrollIntoView({ block: "start" });
}
