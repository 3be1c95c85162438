// Replaying a time series: the window (and how it cuts the series), the move budgets to
// replay each algorithm under, the Replay request, the cards of each strategy, the chart per
// window and the frontier (balance against moves, a point per budget). Shown only when the
// loads are a series.

import { postLoads } from "./api.js";
import { clear, draw } from "./charts.js";
import { $, fillTable, showNotes } from "./dom.js";
import { count, formatBytes, formatInteger, formatMs } from "./format.js";
import { rememberUploadId } from "./loads.js";
import { inputsOf, isCurrent, replayFields, shareText } from "./store.js";

const STRATEGIES = ["none", "greedy", "hybrid"];
const DEFAULT_WINDOWS = 10;
// The most budgets a replay takes (ReplayParams.budgets).
const MAX_BUDGETS = 16;
const GIB = 1024 ** 3;

/** Budgets as written ("full, 5%, 10%, 500") -> the API's values ("full", "0.05", "0.1",
 *  "500": a share with a point, a number of slots without), or the problem. */
export function parseBudgets(text) {
  const values = [];
  for (const token of text.split(/[\s,;]+/).filter(Boolean)) {
    let value;
    if (/^(full|none)$/i.test(token)) value = "full";
    else if (/^\d+(\.\d+)?%$/.test(token) && Number(token.slice(0, -1)) <= 100) {
      value = shareText(Number(token.slice(0, -1)) / 100);
    } else if (/^\d+$/.test(token)) value = String(Number(token));
    else {
      return { problem: `"${token}" is not a move budget: write full, a share of the slots ` +
        "(10%) or a number of slots (500)." };
    }
    if (!values.includes(value)) values.push(value);
  }
  if (values.length > MAX_BUDGETS) {
    return { problem: `${count(values.length, "budget")}: a replay takes at most ${MAX_BUDGETS}.` };
  }
  return { problem: null, values };
}

/** A replayed budget as people read it. JSON cannot tell the share 1.0 from the slot count
 *  1: a number of slots is its own max_moves. */
function entryBudget(entry) {
  if (entry.budget === null) return "full plan";
  const slots = Number.isInteger(entry.budget) && entry.max_moves === entry.budget;
  return slots ? count(entry.budget, "slot") : budgetText(shareText(entry.budget));
}

/** A budget the API reads, as people read it: "full plan", "10%", "500 slots". */
function budgetText(value) {
  if (value === "full") return "full plan";
  return value.includes(".") ? `${Number((Number(value) * 100).toFixed(2))}%`
    : count(Number(value), "slot");
}

export function initReplay(store, config, cluster) {
  const panel = $("replay-panel");
  const windowInput = $("replay-window");
  const button = $("replay");
  const results = $("replay-results");

  /** How the window cuts the loaded series: a problem, or what it makes. */
  function cut({ loads, window: text }) {
    const steps = loads.numSteps;
    const size = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(size >= 1)) return { problem: "Window must be a whole number of steps, at least 1." };
    const windows = Math.floor(steps / size);
    if (windows < 2) {
      return { problem: `A replay needs at least 2 windows: ${count(steps, "step")} hold ` +
        `${formatInteger(windows)} of ${count(size, "step")}.` };
    }
    if (windows > config.max_windows) {
      return { problem: `${count(windows, "window")} of ${count(size, "step")}: this server ` +
        `replays at most ${formatInteger(config.max_windows)} (EPLB_MAX_WINDOWS); take a ` +
        "longer window." };
    }
    const dropped = steps - windows * size;
    return {
      problem: null,
      text: `${count(windows, "window")} of ${count(size, "step")}, ` +
        `${formatInteger(windows - 1)} scored` +
        (dropped ? ` · the last ${count(dropped, "step")} dropped` : ""),
    };
  }

  /** What the budgets field asks for: a problem, or what it replays. */
  function budgetsHint(state) {
    const parsed = parseBudgets(budgetsInput.value);
    if (parsed.problem) return parsed;
    if (!parsed.values.length) {
      return { problem: null, text: "No budgets: no frontier, only the full replans." };
    }
    const slots = state.loads.numLayers * Number(state.form.fields.num_replicas);
    const each = parsed.values.map((value) => (value.includes(".") && slots > 0
      ? `${budgetText(value)} (${formatInteger(Math.floor(Number(value) * slots))})`
      : budgetText(value)));
    return { problem: null, text: `Each algorithm under ${count(parsed.values.length, "budget")}` +
      `, each window planned from the one deployed before: ${each.join(", ")}.` };
  }

  async function replay() {
    const checked = await cluster.check();
    const state = store.get();
    if (!checked || !checked.ok || !ready(state)) return;
    const fields = replayFields(state);
    const inputs = inputsOf(state, fields);
    store.set({ busy: { task: "replay", label: "Replaying…" }, error: null });
    delete results.dataset.drawn; // until this press's figures are drawn
    try {
      const answer = await postLoads("/dashboard/replay", state.loads,
        { placement: state.placement }, fields);
      rememberUploadId(store, state.loads, answer.upload_id);
      results.hidden = false;
      $("panel-frontier").hidden = answer.frontier === null;
      await Promise.all([draw($("chart-replay"), answer.figure),
        answer.frontier === null ? clear($("chart-frontier")) : draw($("chart-frontier"), answer.frontier)]);
      showSummary(answer.result);
      showFrontier(answer.result);
      results.dataset.drawn = "true";
      store.set({ busy: null, replay: { inputs } });
    } catch (error) {
      store.set({ busy: null, error: `Replay failed: ${error.message}` });
    }
  }

  /** Each strategy's means, on the next window (the honest score) beside in-sample. */
  function showSummary(result) {
    const scored = result.num_windows - 1;
    for (const name of STRATEGIES) {
      const figures = result.strategies[name];
      const card = $(`card-replay-${name}`);
      card.dataset.nextWindow = figures.mean_next_window;
      card.dataset.inSample = figures.mean_in_sample;
      card.dataset.moves = figures.total_moves;
      card.querySelector(".next").textContent = figures.mean_next_window.toFixed(3);
      card.querySelector(".in-sample").textContent =
        `in-sample ${figures.mean_in_sample.toFixed(3)}`;
      card.querySelector(".note").textContent =
        `next-window balancedness, mean of ${count(scored, "window")}; ` +
        `${count(Math.round(figures.total_moves / scored), "move")} per window`;
    }
    const series = $("card-replay-series");
    series.querySelector(".windows").textContent = `${count(scored, "window")} scored`;
    series.querySelector(".note").textContent =
      `${count(result.num_windows, "window")} of ${count(result.window, "step")}` +
      (result.dropped_steps ? `, ${count(result.dropped_steps, "step")} dropped` : "") +
      `; ${formatMs(result.elapsed_ms)} on ${result.device}`;
    showNotes($("replay-notes"), result.notes);
  }

  /** Each algorithm under each budget, as the frontier's table. */
  function showFrontier(result) {
    const entries = [...result.budgets].sort((a, b) =>
      a.algorithm.localeCompare(b.algorithm) || a.moves_per_window - b.moves_per_window);
    fillTable($("frontier-table"), entries.map((entry) => [
      entry.algorithm, entryBudget(entry),
      entry.mean_next_window.toFixed(3), entry.mean_in_sample.toFixed(3),
      formatInteger(entry.moves_per_window), formatBytes(entry.gib_per_window * GIB)]));
  }

  const isSeries = (state) => state.loads !== null && state.loads.numSteps !== null;
  const ready = (state) => isSeries(state) && cut(state).problem === null &&
    state.budgets !== null && cluster.problemOf(state) === null && state.busy === null;

  windowInput.addEventListener("input", () => store.set({ window: windowInput.value.trim() }));
  const budgetsInput = $("replay-budgets");
  const setBudgets = () => store.set({ budgets: parseBudgets(budgetsInput.value).values ?? null });
  budgetsInput.addEventListener("input", setBudgets);
  setBudgets();
  button.addEventListener("click", replay);

  let seriesFile = null; // the series the window was last set for
  store.subscribe((state) => {
    const stale = state.replay !== null &&
      !isCurrent(state.replay.inputs, inputsOf(state, replayFields(state)));
    results.classList.toggle("is-stale", stale);
    $("replay-stale").hidden = !stale;
    panel.hidden = !isSeries(state);
    if (!isSeries(state)) {
      button.disabled = true;
      return;
    }
    if (state.loads.file !== seriesFile) { // a new series: a window that makes 10 of them
      seriesFile = state.loads.file;
      windowInput.value = Math.max(1, Math.floor(state.loads.numSteps / DEFAULT_WINDOWS));
      store.set({ window: windowInput.value });
      return;
    }
    const { problem, text } = cut(state);
    const hint = $("window-hint");
    hint.classList.toggle("invalid", problem !== null);
    hint.textContent = problem ?? text;
    const budgets = budgetsHint(state);
    $("budgets-hint").classList.toggle("invalid", budgets.problem !== null);
    $("budgets-hint").textContent = budgets.problem ?? budgets.text;
    const running = state.busy && state.busy.task === "replay";
    button.classList.toggle("busy", Boolean(running));
    button.querySelector(".label").textContent = running ? state.busy.label : "Replay";
    button.disabled = !ready(state);
  });
}
