// One layer in detail, in a dialog: each GPU's load under the placement before and after
// (bars), each expert's load and replicas, and the layer's hottest experts. Any heatmap opens
// it on the layer clicked (``open``), with the loads, placements and cluster the heatmap shows;
// the server computes the figures (POST /dashboard/layer).

import { postLoads } from "./api.js";
import { draw } from "./charts.js";
import { $, fillTable } from "./dom.js";
import { count, formatInteger } from "./format.js";
import { rememberUploadId } from "./loads.js";

const percent = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1 });

export function initLayer(store) {
  const dialog = $("layer-dialog");
  const error = $("layer-error");
  const body = $("layer-body");
  let context = null; // what the heatmap clicked shows: loads, files, fields, layers
  let layer = 0;
  let latest = 0; // the number of the latest request: answers to older ones are dropped

  async function show(next) {
    layer = next;
    const mine = ++latest;
    $("layer-title").textContent = `Layer ${layer} of ${formatInteger(context.numLayers)}`;
    $("layer-previous").disabled = layer === 0;
    $("layer-next").disabled = layer === context.numLayers - 1;
    dialog.dataset.layer = String(layer);
    delete dialog.dataset.drawn;
    dialog.setAttribute("aria-busy", "true");
    if (!dialog.open) dialog.showModal();
    try {
      const answer = await postLoads("/dashboard/layer", context.loads, context.files,
        { ...context.fields, layer: String(layer) });
      if (mine !== latest) return;
      rememberUploadId(store, context.loads, answer.upload_id);
      context.loads = { ...context.loads, uploadId: answer.upload_id };
      error.hidden = true;
      body.hidden = false;
      showFigures(answer.result);
      await Promise.all([draw($("chart-layer-gpu"), answer.figures.gpu),
        draw($("chart-layer-experts"), answer.figures.experts)]);
      if (mine === latest) dialog.dataset.drawn = String(layer);
    } catch (failure) {
      if (mine !== latest) return;
      error.textContent = `The layer could not be shown: ${failure.message}`;
      error.hidden = false;
      body.hidden = true;
    } finally {
      if (mine === latest) dialog.removeAttribute("aria-busy");
    }
  }

  function showFigures(result) {
    const rows = [result.before, result.after].filter(Boolean).map((placement) => {
      const busiest = placement.gpu_load.indexOf(Math.max(...placement.gpu_load));
      return [placement.name, placement.balancedness.toFixed(3),
        `${placement.max_over_mean.toFixed(2)}×`,
        placement.nodes_per_token === null ? "—" : placement.nodes_per_token.toFixed(2),
        `GPU ${busiest}: ${formatInteger(placement.gpu_load[busiest])}`];
    });
    fillTable($("layer-summary"), rows);
    $("layer-note").textContent = `${count(result.tokens, "token")} over ` +
      `${count(result.num_experts, "expert")}; no placement is more balanced than ` +
      `${result.bound.toFixed(3)} in this layer (its upper bound)` +
      (result.moves === null ? "."
        : `; ${count(result.moves, "slot")} change expert from ${result.before.name} to ` +
          `${result.after.name}.`);
    fillTable($("layer-hottest"), result.hottest.map((expert) => [
      String(expert.expert), formatInteger(expert.tokens), percent.format(expert.share),
      expert.replicas_after === null ? String(expert.replicas_before)
        : `${expert.replicas_before} → ${expert.replicas_after}`,
      formatInteger(expert.tokens_per_replica)]));
  }

  $("layer-previous").addEventListener("click", () => show(layer - 1));
  $("layer-next").addEventListener("click", () => show(layer + 1));
  $("layer-close").addEventListener("click", () => dialog.close());
  // A click on the backdrop (outside the dialog's box) closes it too.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  dialog.addEventListener("close", () => { latest += 1; });

  return {
    /** Show ``layer`` of ``loads`` under the placements in ``files`` ({placement, after}: the
     *  placement before, default the one in use or the trivial layout; after, optional) and
     *  the cluster ``fields``, each placement named (``names``: {before, after}). */
    open({ loads, files, fields, names }, clicked) {
      context = {
        loads, files, numLayers: loads.numLayers,
        fields: { ...fields, ...(names.before ? { before_name: names.before } : {}),
          ...(names.after ? { after_name: names.after } : {}) },
      };
      show(clicked);
    },
  };
}
