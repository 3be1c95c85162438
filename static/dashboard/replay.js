// Replaying a time series: the window (and how it cuts the series), the Replay request, the
// cards of each strategy and the chart per window. Shown only when the loads are a series.

import { postLoads } from "./api.js";
import { draw } from "./charts.js";
import { $, showNotes } from "./dom.js";
import { count, formatInteger, formatMs } from "./format.js";
import { rememberUploadId } from "./loads.js";
import { inputsOf, isCurrent, replayFields } from "./store.js";

const STRATEGIES = ["none", "greedy", "hybrid"];
const DEFAULT_WINDOWS = 10;

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

  async function replay() {
    const checked = await cluster.check();
    const state = store.get();
    if (!checked || !checked.ok || !ready(state)) return;
    const fields = replayFields(state);
    const inputs = inputsOf(state, fields);
    store.set({ busy: { task: "replay", label: "Replaying…" }, error: null });
    try {
      const answer = await postLoads("/dashboard/replay", state.loads,
        state.placement, fields);
      rememberUploadId(store, state.loads, answer.upload_id);
      results.hidden = false;
      delete results.dataset.drawn;
      await draw($("chart-replay"), answer.figure);
      showSummary(answer.result);
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

  const isSeries = (state) => state.loads !== null && state.loads.numSteps !== null;
  const ready = (state) => isSeries(state) && cut(state).problem === null &&
    cluster.problemOf(state) === null && state.busy === null;

  windowInput.addEventListener("input", () => store.set({ window: windowInput.value.trim() }));
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
    const running = state.busy && state.busy.task === "replay";
    button.classList.toggle("busy", Boolean(running));
    button.querySelector(".label").textContent = running ? state.busy.label : "Replay";
    button.disabled = !ready(state);
  });
}
