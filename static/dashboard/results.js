// A plan and what it shows: Rebalance sends the loads and the form, then the summary cards, the
// notes, and the per-GPU, per-node and per-layer charts. The GPU and node charts offer two
// views (tokens on one scale, or each load over its layer's mean); the server says which one
// shows the imbalance left, and a view the user picks stays picked. Results computed from other inputs than the page holds now are
// marked out of date.

import { postLoads } from "./api.js";
import { clear, draw } from "./charts.js";
import { $, showNotes } from "./dom.js";
import { agree, count, formatInteger, formatMs } from "./format.js";
import { rememberUploadId } from "./loads.js";
import { inputsOf, isCurrent, planFields } from "./store.js";

const PAIRS = ["gpu", "node"];

export function initResults(store) {
  const results = $("results");
  /** By chart: the pair drawn last (to switch its view), and the view the user picked. */
  const pairs = {};
  const picked = {};

  async function rebalance() {
    const state = store.get();
    const fields = planFields(state);
    const inputs = inputsOf(state, fields);
    const pressed = performance.now();
    store.set({ busy: { task: "rebalance", label: "Planning…" }, error: null });
    try {
      const answer = await postLoads("/dashboard/rebalance", state.loads,
        state.placement, fields);
      rememberUploadId(store, state.loads, answer.upload_id);
      const { result, figures } = answer;
      results.hidden = false;
      $("empty-state").hidden = true;
      delete results.dataset.drawnMs;
      await Promise.all([
        drawPair("gpu", figures.gpu),
        drawPair("node", figures.node, result.params),
        draw($("chart-balancedness"), figures.balancedness),
      ]);
      const drawnMs = performance.now() - pressed;
      showSummary(result, drawnMs);
      results.dataset.drawnMs = drawnMs.toFixed(0);
      store.set({ busy: null, plan: { inputs, phy2log: result.plan.phy2log } });
    } catch (error) {
      store.set({ busy: null, error: `Rebalance failed: ${error.message}` });
    }
  }

  /** Draw a before/after pair in the view the server picked; a missing node figure leaves a
   *  note instead. */
  function drawPair(chart, pair, params) {
    const element = $(`chart-${chart}`);
    const toggle = $(`${chart}-view`);
    pairs[chart] = pair;
    if (chart === "node") {
      const missing = $("node-missing");
      missing.hidden = pair !== null;
      missing.textContent = pair === null
        ? `No per-node loads: ${count(params.num_gpus, "GPU")} do not split evenly over ` +
          `${count(params.num_nodes, "node")}.`
        : "";
      element.hidden = pair === null;
      toggle.hidden = pair === null;
      if (pair === null) {
        clear(element);
        return Promise.resolve();
      }
    }
    const view = picked[chart] ?? pair.view;
    toggle.querySelector(`input[value="${view}"]`).checked = true;
    return draw(element, pair.views[view]);
  }

  function pickView(chart, view) {
    picked[chart] = view;
    draw($(`chart-${chart}`), pairs[chart].views[view]);
  }

  function showSummary(result, drawnMs) {
    setPair("card-balancedness", result.before.mean_balancedness,
      result.after.mean_balancedness, (x) => x.toFixed(3));
    setPair("card-worst", result.before.worst_max_over_mean,
      result.after.worst_max_over_mean, (x) => `${x.toFixed(2)}×`);
    const p = result.params;
    const moves = $("card-moves");
    moves.hidden = result.baseline !== "current";
    moves.dataset.total = result.moves.total;
    moves.querySelector(".moves").textContent = formatInteger(result.moves.total);
    const options = [p.renumber_gpus && "GPUs renumbered", p.keep_slots && "slots kept"]
      .filter(Boolean);
    moves.querySelector(".note").textContent =
      `of ${count(result.num_layers * p.num_replicas, "slot")} ` +
      `${agree(result.moves.total, "changes", "change")} expert from the placement in use` +
      (options.length ? ` (${options.join(", ")})` : "");
    const policy = $("card-policy");
    policy.querySelector(".policy").textContent = result.plan.policy;
    policy.querySelector(".algorithm").textContent = result.plan.algorithm;
    policy.querySelector(".note").textContent =
      `${count(p.num_replicas, "slot")} on ${count(p.num_gpus, "GPU")} in ` +
      `${count(p.num_nodes, "node")}, ${count(p.num_groups, "group")}, seed ${p.seed}` +
      (result.num_steps === null ? "" : `; ${count(result.num_steps, "step")} summed`);
    const time = $("card-time");
    time.querySelector(".planning").textContent = formatMs(result.elapsed_ms);
    time.querySelector(".note").textContent =
      `planning on ${result.device}; charts drawn ${formatMs(drawnMs)} after pressing Rebalance`;
    showNotes($("result-notes"), result.notes);
  }

  function setPair(id, before, after, format) {
    const card = $(id);
    card.dataset.before = before;
    card.dataset.after = after;
    card.querySelector(".before").textContent = format(before);
    card.querySelector(".after").textContent = format(after);
  }

  for (const chart of PAIRS) {
    $(`${chart}-view`).addEventListener("change", (event) => pickView(chart, event.target.value));
  }

  store.subscribe((state) => {
    const stale = state.plan !== null &&
      !isCurrent(state.plan.inputs, inputsOf(state, planFields(state)));
    results.classList.toggle("is-stale", stale);
    $("results-stale").hidden = !stale;
  });
  return { rebalance };
}
