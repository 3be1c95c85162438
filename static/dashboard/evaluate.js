// Scoring without planning: the placement in use (chosen under Cluster) scored on the loads,
// beside a second placement (a plan downloaded earlier, another engine's map) and the plan on
// screen: a table of their figures, the per-GPU loads and the balancedness per layer, from
// POST /dashboard/evaluate. A click on the heatmap opens its layer in detail.

import { postLoads } from "./api.js";
import { draw, onPick } from "./charts.js";
import { $, reveal, showNotes } from "./dom.js";
import { formatInteger } from "./format.js";
import { rememberUploadId } from "./loads.js";
import { currentPlan, inputsOf, isCurrent, layerFields, scoreFields } from "./store.js";

const IN_USE = "the placement in use";

export function initEvaluate(store, cluster, layers) {
  const button = $("evaluate");
  const results = $("evaluate-results");
  const compareInput = $("compare-file");
  const chart = $("chart-evaluate-gpu");
  let pair = null; // the heatmaps drawn last, in both views
  let picked = null; // the view the user picked

  /** Why nothing can be scored now, or null. */
  function problem(state) {
    if (state.loads === null) return "Load the loads to score a placement on them.";
    if (state.placement === null) {
      return "Choose the placement in use (2 · Cluster › Placement in use, moves): it is what " +
        "gets scored.";
    }
    return cluster.problemOf(state);
  }

  /** What a score depends on: the plan's inputs, and the second placement. */
  const inputsNow = (state) => ({ ...inputsOf(state, scoreFields(state)), compare: state.compare });

  async function score() {
    const checked = await cluster.check();
    const state = store.get();
    if (!checked || !checked.ok || problem(state) !== null || state.busy !== null) return;
    const fields = scoreFields(state);
    const inputs = inputsNow(state);
    // With a second placement, it is the one scored and the placement in use its reference:
    // the moves and the speed-up go from the placement in use to it.
    const files = state.compare ? { placement: state.compare, compare: state.placement }
      : { placement: state.placement };
    const names = state.compare
      ? { placement_name: state.compare.name, compare_name: IN_USE } : { placement_name: IN_USE };
    store.set({ busy: { task: "evaluate", label: "Scoring…" }, error: null });
    delete results.dataset.drawn; // until this press's figures are drawn
    try {
      const answer = await postLoads("/dashboard/evaluate", state.loads, files,
        { ...fields, ...names });
      rememberUploadId(store, state.loads, answer.upload_id);
      results.hidden = false;
      $("empty-state").hidden = true;
      pair = answer.figures.gpu;
      await Promise.all([drawPair(), draw($("chart-evaluate-balancedness"),
        answer.figures.balancedness)]);
      showNotes($("evaluate-notes"), answer.result.notes);
      store.set({ busy: null, evaluation: {
        inputs, result: answer.result, compareName: state.compare && state.compare.name,
        loads: store.get().loads, placement: state.placement, compare: state.compare,
        cluster: layerFields(state),
      } });
      results.dataset.drawn = "true";
      reveal(results);
    } catch (error) {
      store.set({ busy: null, error: `Scoring failed: ${error.message}` });
    }
  }

  function drawPair() {
    const view = picked ?? pair.view;
    $("evaluate-gpu-view").querySelector(`input[value="${view}"]`).checked = true;
    return draw(chart, pair.views[view]);
  }

  /** The table: the placement in use, the second placement, and the plan on screen when it is
   *  the plan of these loads, this cluster and this placement in use. */
  function showTable(state) {
    const { evaluation } = state;
    const result = evaluation.result;
    const inUse = result.compare ?? result.placement;
    const rows = [{ key: "in-use", name: `In use (${evaluation.placement.name})`,
      figures: inUse, moves: null, speedup: null }];
    if (result.compare) {
      rows.push({ key: "compare", name: evaluation.compareName, figures: result.placement,
        moves: result.moves.total, speedup: result.speedup });
    }
    const plan = currentPlan(state);
    if (plan && plan.baseline === "current" && plan.placement === evaluation.placement &&
        isCurrent(evaluation.inputs, inputsNow(state))) {
      rows.push({ key: "plan", name: "The plan on screen", figures: plan.after,
        moves: plan.moves, speedup: plan.speedup });
    }
    const body = $("evaluate-table").tBodies[0];
    body.replaceChildren(...rows.map((row) => {
      const tr = document.createElement("tr");
      tr.dataset.placement = row.key;
      tr.dataset.meanBalancedness = row.figures.mean_balancedness;
      if (row.moves !== null) tr.dataset.moves = row.moves;
      const header = document.createElement("th");
      header.scope = "row";
      header.textContent = row.name;
      const nodes = row.figures.mean_nodes_per_token;
      const cells = [row.figures.mean_balancedness.toFixed(3),
        `${row.figures.worst_max_over_mean.toFixed(2)}×`,
        nodes === null ? "—" : nodes.toFixed(2),
        row.moves === null ? "—" : formatInteger(row.moves),
        row.speedup === null ? "reference" : `${row.speedup.toFixed(2)}×`];
      tr.append(header, ...cells.map((text) => {
        const cell = document.createElement("td");
        cell.textContent = text;
        return cell;
      }));
      return tr;
    }));
    const idle = new Set(result.idle_layers);
    const bounds = result.bound.filter((_, layer) => !idle.has(layer));
    const bound = bounds.reduce((sum, value) => sum + value, 0) / Math.max(bounds.length, 1);
    $("evaluate-bound").textContent = `No placement beats ${bound.toFixed(3)} mean ` +
      `balancedness on these loads under the ${result.params.policy} policy (the bound, mean ` +
      "over the layers with load).";
  }

  function setCompare(file) {
    store.set({ compare: file, error: null });
    $("compare-name").textContent = file ? file.name : "";
    $("compare-chosen").hidden = !file;
    compareInput.value = "";
  }

  button.addEventListener("click", score);
  compareInput.addEventListener("change", () => {
    if (compareInput.files.length) setCompare(compareInput.files[0]);
  });
  $("compare-clear").addEventListener("click", () => setCompare(null));
  $("evaluate-gpu-view").addEventListener("change", (event) => {
    picked = event.target.value;
    draw(chart, pair.views[picked]);
  });
  // A layer as placed now: the placement in use, and the second placement after it.
  onPick(chart, (point) => {
    const { evaluation } = store.get();
    if (!evaluation) return;
    layers.open({
      loads: evaluation.loads,
      files: { placement: evaluation.placement, after: evaluation.compare },
      fields: evaluation.cluster,
      names: { before: IN_USE, after: evaluation.compareName },
    }, Number(point.y));
  });

  store.subscribe((state) => {
    const why = problem(state);
    $("evaluate-hint").textContent = why ?? (state.compare
      ? `Scores ${state.placement.name} and ${state.compare.name} on the loads.`
      : `Scores ${state.placement.name} on the loads.`);
    $("evaluate-hint").classList.toggle("invalid", why !== null && state.loads !== null &&
      state.placement !== null);
    const running = state.busy && state.busy.task === "evaluate";
    button.classList.toggle("busy", Boolean(running));
    button.querySelector(".label").textContent = running ? state.busy.label : "Score";
    button.disabled = state.busy !== null || why !== null;
    if (!state.evaluation) return;
    const stale = !isCurrent(state.evaluation.inputs, inputsNow(state)) ||
      state.evaluation.inputs.compare !== state.compare;
    results.classList.toggle("is-stale", stale);
    $("evaluate-stale").hidden = !stale;
    showTable(state);
  });
}
