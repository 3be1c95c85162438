// The plan's files, each written by the server's /export routes (the CLI writes the same):
// offered while the plan on screen is the plan of the page's current inputs.

import { postForFile } from "./api.js";
import { $ } from "./dom.js";
import { inputsOf, isCurrent, planFields } from "./store.js";

// How long a saved file's object URL lives: the browser has started the download by then.
const URL_LIFETIME_MS = 60_000;

export function initDownloads(store) {
  const buttons = [...$("downloads").querySelectorAll("[data-export]")];

  async function download(button) {
    const { plan } = store.get();
    button.setAttribute("aria-busy", "true");
    try {
      const { blob, filename } = await postForFile(`/export/${button.dataset.export}`,
        { phy2log: plan.phy2log });
      save(blob, filename);
    } catch (error) {
      store.set({ error: `Download failed: ${error.message}` });
    } finally {
      button.removeAttribute("aria-busy");
    }
  }

  for (const button of buttons) button.addEventListener("click", () => download(button));

  store.subscribe((state) => {
    const current = state.plan !== null &&
      isCurrent(state.plan.inputs, inputsOf(state, planFields(state)));
    for (const button of buttons) button.disabled = !current;
    const hint = $("download-state");
    hint.hidden = current;
    hint.textContent = state.plan === null ? "Rebalance to download a plan."
      : "Out of date: rebalance to download the plan of the current loads and cluster.";
  });
}

/** Hand a file to the browser's downloads. */
function save(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), URL_LIFETIME_MS);
}
