// A plan and what it shows: Rebalance sends the loads and the form, then the summary cards
// (balance, traffic, speed-up, moves and what they copy), the notes, and the per-GPU, per-node
// and per-layer charts. The GPU and node charts offer two views (tokens on one scale, or each
// load over its layer's mean); the server says which one shows the imbalance left, and a view
// the user picks stays picked. A click on a heatmap's cell opens its layer in detail. Results
// computed from other inputs than the page holds now are marked out of date.

import { postLoads } from "./api.js";
import { clear, draw, onPick } from "./charts.js";
import { $, showNotes } from "./dom.js";
import { agree, count, formatBytes, formatInteger, formatMs, formatShare } from "./format.js";
import { rememberUploadId } from "./loads.js";
import { inputsOf, isCurrent, layerFields, planFields, planFile } from "./store.js";

const PAIRS = ["gpu", "node"];

export function initResults(store, layers) {
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
    delete results.dataset.drawnMs; // until this press's figures are drawn
    try {
      const answer = await postLoads("/dashboard/rebalance", state.loads,
        { placement: state.placement }, fields);
      rememberUploadId(store, state.loads, answer.upload_id);
      const { result, figures } = answer;
      results.hidden = false;
      $("empty-state").hidden = true;
      await Promise.all([
        drawPair("gpu", figures.gpu),
        drawPair("node", figures.node, result.params),
        draw($("chart-balancedness"), figures.balancedness),
      ]);
      const drawnMs = performance.now() - pressed;
      showSummary(result, drawnMs);
      results.dataset.drawnMs = drawnMs.toFixed(0);
      $("layer-number").max = result.num_layers - 1;
      store.set({ busy: null, plan: {
        inputs, phy2log: result.plan.phy2log, loads: store.get().loads,
        placement: state.placement, cluster: layerFields(state), baseline: result.baseline,
        after: result.after, moves: result.moves.total, speedup: result.speedup,
      } });
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
    showTraffic(result);
    const speedup = $("card-speedup");
    speedup.dataset.speedup = result.speedup;
    speedup.querySelector(".speedup").textContent = `${result.speedup.toFixed(2)}×`;
    const moves = $("card-moves");
    // Moves mean something from the placement in use, or under a budget.
    const shown = result.baseline === "current" || p.max_moves !== null;
    moves.hidden = !shown;
    moves.dataset.total = result.moves.total;
    if (p.max_moves === null) delete moves.dataset.budget;
    else moves.dataset.budget = p.max_moves;
    moves.querySelector(".moves").textContent = formatInteger(result.moves.total);
    const options = [p.renumber_gpus && "GPUs renumbered", p.keep_slots && "slots kept"]
      .filter(Boolean);
    const slots = result.num_layers * p.num_replicas;
    moves.querySelector(".note").textContent =
      `of ${count(slots, "slot")} ${agree(result.moves.total, "changes", "change")} expert ` +
      (result.baseline === "current" ? "from the placement in use"
        : "from the trivial layout (slot p holds expert p mod E)") +
      (options.length ? ` (${options.join(", ")})` : "") +
      (p.max_moves === null ? "" : `; budget ${formatInteger(p.max_moves)} ` +
        `(${formatShare(p.max_moves / slots)} of slots)`);
    showMigration(result.migration, shown);
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

  /** Nodes per token before and after: the traffic a placement sends between nodes. */
  function showTraffic(result) {
    const card = $("card-traffic");
    const before = result.before.mean_nodes_per_token;
    const after = result.after.mean_nodes_per_token;
    const known = before !== null && after !== null;
    const format = (x) => (x === null ? "—" : x.toFixed(2));
    setPair("card-traffic", before, after, format);
    card.querySelector(".note").textContent = known
      ? "nodes a token is sent to, mean over layers (group-limited routing); fewer is less " +
        "traffic between nodes"
      : "not defined here: the nodes or the groups do not split evenly";
  }

  /** What the moves copy: in all, into the busiest GPU, and the time given a bandwidth. */
  function showMigration(migration, shown) {
    const card = $("card-migration");
    card.hidden = !shown;
    card.dataset.totalBytes = migration.total_bytes;
    card.dataset.maxGpuBytes = migration.max_gpu_bytes;
    card.dataset.busiestGpu = migration.busiest_gpu;
    if (migration.seconds === null) delete card.dataset.seconds;
    else card.dataset.seconds = migration.seconds;
    card.querySelector(".total").textContent = formatBytes(migration.total_bytes);
    card.querySelector(".note").textContent = "copied in all; " +
      `${formatBytes(migration.max_gpu_bytes)} into GPU ${migration.busiest_gpu}, the busiest` +
      (migration.seconds === null
        ? "; give a link bandwidth for the time it takes"
        : `: ${formatMs(migration.seconds * 1000)} at ${migration.link_gb_per_s} GB/s`) +
      ` (${formatBytes(migration.expert_bytes)} per expert)`;
  }

  /** The layer clicked in the plan's charts, in detail: the loads, placement and cluster of
   *  the plan on screen. */
  function openLayer(layer) {
    const { plan } = store.get();
    if (plan === null || !(layer >= 0 && layer < plan.loads.numLayers)) return;
    layers.open({
      loads: plan.loads, files: { placement: plan.placement, after: planFile(plan) },
      fields: plan.cluster,
      names: { before: plan.placement ? "the placement in use" : null, after: "the plan" },
    }, layer);
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
    onPick($(`chart-${chart}`), (point) => openLayer(Number(point.y)));
  }
  onPick($("chart-balancedness"), (point) => openLayer(Number(point.x)));
  $("layer-open").addEventListener("submit", (event) => {
    event.preventDefault();
    openLayer(Number($("layer-number").value));
  });

  store.subscribe((state) => {
    const stale = state.plan !== null &&
      !isCurrent(state.plan.inputs, inputsOf(state, planFields(state)));
    results.classList.toggle("is-stale", stale);
    $("results-stale").hidden = !stale;
  });
  return { rebalance };
}
