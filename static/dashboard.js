// The dashboard page: load a load file (CSV, JSON, .pt) and optionally the placement in use,
// check the cluster shape, rebalance, replay a time series, draw the server's figures, offer the
// plan as files. Figures come ready from the server; this script only places them.
"use strict";

(() => {
  const PRESETS = {
    prefill: { num_replicas: 288, num_groups: 8, num_nodes: 4, num_gpus: 32 },
    decode: { num_replicas: 288, num_groups: 8, num_nodes: 9, num_gpus: 144 },
  };
  const LABELS = {
    num_replicas: "Slots", num_groups: "Groups", num_nodes: "Nodes", num_gpus: "GPUs",
    seed: "Seed",
  };
  const PLOT_CONFIG = {
    responsive: true,
    displaylogo: false,
    modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d"],
    toImageButtonOptions: { format: "png", scale: 2 },
  };
  const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const STRATEGIES = ["none", "greedy", "hybrid"];
  const DOWNLOADS = ["download-json", "download-csv", "download-map-json", "download-map-pt"];

  const $ = (id) => document.getElementById(id);
  const form = $("cluster-form");
  const fileInput = $("loads-file");
  const placementInput = $("placement-file");
  const windowInput = $("replay-window");
  const dropzone = $("dropzone");
  const rebalanceButton = $("rebalance");
  const replayButton = $("replay");
  const results = $("results");
  const replayResults = $("replay-results");

  /** What the page holds: the last load file that loaded (a series has numSteps), the placement
   *  in use, and the URLs of the last plan's files. */
  const state = {
    file: null, numExperts: null, numSteps: null, placement: null, busy: false,
    downloadUrls: [],
  };

  // ---- talking to the server ---------------------------------------------------------------

  /** POST a form; the parsed JSON body, or an Error carrying the server's reason in words. */
  async function postForm(url, body) {
    const response = await fetch(url, { method: "POST", body });
    const payload = await response.json().catch(() => null);
    if (!response.ok) throw new Error(describeError(response, payload));
    return payload;
  }

  /** POST JSON and take the answer as a file (a Blob), or an Error with the server's reason. */
  async function postForFile(url, json) {
    const response = await fetch(url, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(json),
    });
    if (!response.ok) {
      throw new Error(describeError(response, await response.json().catch(() => null)));
    }
    return response.blob();
  }

  /** The server's ``detail``: a sentence, or FastAPI's list of failed fields. */
  function describeError(response, payload) {
    const detail = payload && payload.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((item) => {
        const where = (item.loc || []).filter((part) => part !== "body").join(".");
        return where ? `${where}: ${item.msg}` : item.msg;
      }).join("; ");
    }
    return `the server answered ${response.status} ${response.statusText}`.trim();
  }

  // ---- loading a matrix --------------------------------------------------------------------

  /** Preview a load file; on success it becomes the loads to plan, else the old ones stay. */
  async function loadFile(file) {
    clearError();
    const body = new FormData();
    body.append("file", file);
    setBusy(true, "Reading…");
    try {
      const preview = await postForm("/dashboard/preview", body);
      state.file = file;
      state.numExperts = preview.num_experts;
      state.numSteps = preview.num_steps;
      showPreview(file.name, preview);
      clearResults();
    } catch (error) {
      const kept = state.file ? ` The matrix from ${state.file.name} is still loaded.` : "";
      showError(`Not loaded: ${error.message}.${kept}`);
    } finally {
      setBusy(false);
      fileInput.value = ""; // choosing the same file again, fixed, loads it again
      validate();
    }
  }

  function showPreview(name, preview) {
    $("data-name").textContent = name;
    $("data-shape").textContent =
      `${preview.num_layers} layers × ${preview.num_experts} experts`;
    const series = preview.num_steps !== null;
    $("data-steps-row").hidden = !series;
    $("data-steps").textContent = series ? `${integer.format(preview.num_steps)} steps` : "";
    $("data-total").textContent = `${integer.format(preview.total_tokens)} tokens`;
    $("data-summary").hidden = false;
    $("replay-panel").hidden = !series;
    if (series) windowInput.value = Math.max(1, Math.floor(preview.num_steps / 10));
    $("empty-state").hidden = true;
    $("input-panel").hidden = false;
    return Plotly.newPlot("chart-input", preview.figure.data, preview.figure.layout, PLOT_CONFIG);
  }

  /** The placement in use: sent with every plan and replay until removed. */
  function setPlacement(file) {
    state.placement = file;
    $("placement-name").textContent = file ? file.name : "";
    $("placement-chosen").hidden = !file;
    $("deploy-summary").textContent = file ? file.name : "optional: count the experts a plan moves";
    placementInput.value = "";
    clearError();
    clearResults();
  }

  async function loadExample() {
    clearError();
    try {
      const response = await fetch("/dashboard/example.csv");
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      const blob = await response.blob();
      await loadFile(new File([blob], "deepseek-v3-example.csv", { type: "text/csv" }));
    } catch (error) {
      showError(`The example did not load: ${error.message}`);
    }
  }

  // ---- the cluster form --------------------------------------------------------------------

  const wholeNumber = (text) => (/^\d+$/.test(String(text ?? "").trim()) ? Number(text) : NaN);

  function readParams() {
    const data = new FormData(form);
    const params = { algorithm: data.get("algorithm") };
    for (const name of Object.keys(LABELS)) params[name] = wholeNumber(data.get(name));
    return params;
  }

  /** Why the window cannot cut the loaded series into 2 windows or more, or null. */
  function windowProblem(window) {
    if (!Number.isSafeInteger(window) || window < 1) {
      return "Window must be a whole number of steps, at least 1.";
    }
    if (Math.floor(state.numSteps / window) < 2) {
      return `A replay needs at least 2 windows: ${state.numSteps} steps hold ` +
        `${Math.floor(state.numSteps / window)} of ${window}.`;
    }
    return null;
  }

  /** Why this cluster cannot hold the loaded experts (the core's rules), or null. */
  function shapeProblem(p, experts) {
    for (const [name, label] of Object.entries(LABELS)) {
      const least = name === "seed" ? 0 : 1;
      if (!Number.isSafeInteger(p[name]) || p[name] < least) {
        return `${label} must be a whole number of at least ${least}.`;
      }
    }
    if (experts !== null && p.num_replicas < experts) {
      return `${p.num_replicas} slots cannot hold ${experts} experts: ` +
        "give every expert at least one slot.";
    }
    if (p.num_replicas % p.num_gpus) {
      return `${p.num_replicas} slots cannot be split evenly over ${p.num_gpus} GPUs.`;
    }
    if (p.num_gpus % p.num_nodes) {
      return `${p.num_gpus} GPUs cannot be split evenly over ${p.num_nodes} nodes.`;
    }
    if (experts !== null && experts % p.num_groups) {
      return `${experts} experts cannot be split evenly into ${p.num_groups} groups.`;
    }
    return null;
  }

  /** Check the form; say why a shape is impossible, or what it means. True when it can run. */
  function validate() {
    const p = readParams();
    const problem = shapeProblem(p, state.numExperts);
    const message = $("validation");
    message.hidden = problem === null;
    message.textContent = problem ?? "";
    const hint = $("shape-hint");
    if (problem !== null) {
      hint.textContent = "";
    } else {
      const policy = p.num_groups % p.num_nodes === 0
        ? "hierarchical policy: each group stays on one node"
        : "global policy: groups do not split evenly over nodes";
      hint.textContent = `${p.num_replicas / p.num_gpus} slots per GPU · ` +
        `${p.num_gpus / p.num_nodes} GPUs per node · ${policy}` +
        (state.file ? "" : ". Load a matrix to rebalance.");
    }
    for (const chip of form.querySelectorAll("[data-preset]")) {
      const preset = PRESETS[chip.dataset.preset];
      chip.setAttribute("aria-pressed",
        String(Object.entries(preset).every(([name, value]) => p[name] === value)));
    }
    const ready = problem === null && state.file !== null;
    rebalanceButton.disabled = !ready || state.busy;
    replayButton.disabled = !validateWindow() || !ready || state.busy;
    return ready;
  }

  /** Check the replay window; say how it cuts the series. True when it can run. */
  function validateWindow() {
    if (state.numSteps === null) return false;
    const window = wholeNumber(windowInput.value);
    const problem = windowProblem(window);
    const hint = $("window-hint");
    hint.classList.toggle("invalid", problem !== null);
    if (problem !== null) {
      hint.textContent = problem;
      return false;
    }
    const windows = Math.floor(state.numSteps / window);
    const dropped = state.numSteps - windows * window;
    hint.textContent = `${windows} windows of ${window} steps, ${windows - 1} scored` +
      (dropped ? ` · the last ${dropped} steps dropped` : "");
    return true;
  }

  function applyPreset(name) {
    for (const [field, value] of Object.entries(PRESETS[name])) form.elements[field].value = value;
    validate();
  }

  // ---- rebalancing -------------------------------------------------------------------------

  /** The form, the load file and the placement in use, as the dashboard routes take them. */
  function planRequest() {
    const body = new FormData(form);
    body.append("file", state.file);
    if (state.placement) body.append("placement", state.placement);
    return body;
  }

  async function rebalance(event) {
    event.preventDefault();
    if (state.busy || !validate()) return;
    clearError();
    const pressed = performance.now();
    const body = planRequest();
    setBusy(true, "Planning…", rebalanceButton);
    try {
      const { result, figures } = await postForm("/dashboard/rebalance", body);
      results.hidden = false;
      delete results.dataset.drawnMs;
      const drawn = Promise.all([
        draw("chart-gpu", figures.gpu),
        draw("chart-node", figures.node),
        draw("chart-balancedness", figures.balancedness),
      ]).then(() => performance.now() - pressed);
      const [drawnMs, files] = await Promise.all([drawn, planFiles(result)]);
      showSummary(result, drawnMs);
      offerDownloads(files);
      results.dataset.drawnMs = drawnMs.toFixed(0);
    } catch (error) {
      showError(`Rebalance failed: ${error.message}`);
    } finally {
      setBusy(false);
      validate();
    }
  }

  async function replay() {
    if (state.busy || !validate() || !validateWindow()) return;
    clearError();
    const body = planRequest();
    body.delete("algorithm");  // a replay runs every algorithm
    body.append("window", String(wholeNumber(windowInput.value)));
    setBusy(true, "Replaying…", replayButton);
    try {
      const { result, figure } = await postForm("/dashboard/replay", body);
      replayResults.hidden = false;
      delete replayResults.dataset.drawn;
      await draw("chart-replay", figure);
      showReplaySummary(result);
      replayResults.dataset.drawn = "true";
    } catch (error) {
      showError(`Replay failed: ${error.message}`);
    } finally {
      setBusy(false);
      validate();
    }
  }

  const draw = (id, figure) => Plotly.newPlot(id, figure.data, figure.layout, PLOT_CONFIG);

  function showSummary(result, drawnMs) {
    setPair("card-balancedness", result.before.mean_balancedness,
      result.after.mean_balancedness, (x) => x.toFixed(3));
    setPair("card-worst", result.before.worst_max_over_mean,
      result.after.worst_max_over_mean, (x) => `${x.toFixed(2)}×`);
    const p = result.params;
    const moves = $("card-moves");
    moves.hidden = result.baseline !== "current";
    moves.dataset.total = result.moves.total;
    moves.querySelector(".moves").textContent = integer.format(result.moves.total);
    const slots = result.num_layers * p.num_replicas;
    const options = [p.renumber_gpus && "GPUs renumbered", p.keep_slots && "slots kept"]
      .filter(Boolean);
    moves.querySelector(".note").textContent =
      `of ${integer.format(slots)} slots change expert from the placement in use` +
      (options.length ? ` (${options.join(", ")})` : "");
    const policy = $("card-policy");
    policy.querySelector(".policy").textContent = result.plan.policy;
    policy.querySelector(".algorithm").textContent = result.plan.algorithm;
    policy.querySelector(".note").textContent =
      `${p.num_replicas} slots on ${p.num_gpus} GPUs in ${p.num_nodes} nodes, ` +
      `${p.num_groups} groups, seed ${p.seed}` +
      (result.num_steps === null ? "" : `; ${integer.format(result.num_steps)} steps summed`);
    const time = $("card-time");
    time.querySelector(".planning").textContent = formatMs(result.elapsed_ms);
    time.querySelector(".note").textContent =
      `planning on ${result.device}; charts drawn ${formatMs(drawnMs)} after pressing Rebalance`;
  }

  /** Each strategy's means, on the next window (the honest score) beside in-sample. */
  function showReplaySummary(result) {
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
        `next-window balancedness, mean of ${scored} windows; ` +
        `${integer.format(figures.total_moves / scored)} moves per window`;
    }
    const series = $("card-replay-series");
    series.querySelector(".windows").textContent = `${scored} windows scored`;
    series.querySelector(".note").textContent =
      `${result.num_windows} windows of ${result.window} steps` +
      (result.dropped_steps ? `, ${result.dropped_steps} steps dropped` : "") +
      `; ${formatMs(result.elapsed_ms)} on ${result.device}`;
  }

  function setPair(id, before, after, format) {
    const card = $(id);
    card.dataset.before = before;
    card.dataset.after = after;
    card.querySelector(".before").textContent = format(before);
    card.querySelector(".after").textContent = format(after);
  }

  const formatMs = (ms) => (ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`);

  function clearResults() {
    results.hidden = true;
    delete results.dataset.drawnMs;
    replayResults.hidden = true;
    delete replayResults.dataset.drawn;
    offerDownloads({});
  }

  // ---- downloads ---------------------------------------------------------------------------

  /** The plan as files, each written by the server's export routes (eplb_core.io). */
  async function planFiles(result) {
    const phy2log = result.plan.phy2log;
    const [plan, csv, mapJson, mapPt] = await Promise.all([
      postForFile("/export/plan.json", { phy2log }),
      postForFile("/export/phy2log.csv", { phy2log }),
      postForFile("/export/physical_to_logical_map.json", { phy2log }),
      postForFile("/export/physical_to_logical_map.pt", { phy2log }),
    ]);
    return {
      "download-json": plan,
      "download-csv": csv,
      "download-map-json": mapJson,
      "download-map-pt": mapPt,
    };
  }

  /** Point each download link at its file (a Blob), or disable it. */
  function offerDownloads(files) {
    state.downloadUrls.forEach((url) => URL.revokeObjectURL(url));
    state.downloadUrls = [];
    for (const id of DOWNLOADS) {
      const link = $(id);
      if (files[id]) {
        const url = URL.createObjectURL(files[id]);
        state.downloadUrls.push(url);
        link.href = url;
        link.classList.remove("disabled");
        link.removeAttribute("aria-disabled");
      } else {
        link.removeAttribute("href");
        link.classList.add("disabled");
        link.setAttribute("aria-disabled", "true");
      }
    }
  }

  // ---- page state --------------------------------------------------------------------------

  /** Busy: every action waits; ``button`` (when given) shows ``text`` and a spinner. */
  function setBusy(busy, text, button = rebalanceButton) {
    state.busy = busy;
    for (const [each, label] of [[rebalanceButton, "Rebalance"], [replayButton, "Replay"]]) {
      const pressed = busy && each === button;
      each.classList.toggle("busy", pressed);
      each.querySelector(".label").textContent = pressed ? text : label;
      each.disabled = busy;
    }
    $("busy").hidden = !busy;
    $("busy").lastChild.textContent = text ?? "";
    $("content").setAttribute("aria-busy", String(busy));
  }

  function showError(text) {
    const box = $("error");
    box.textContent = text;
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  // ---- wiring ------------------------------------------------------------------------------

  fileInput.addEventListener("change", () => {
    if (fileInput.files.length) loadFile(fileInput.files[0]);
  });
  for (const type of ["dragenter", "dragover"]) {
    dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      dropzone.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    dropzone.addEventListener(type, () => dropzone.classList.remove("over"));
  }
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    const [file] = event.dataTransfer.files;
    if (file) loadFile(file);
  });
  // A file dropped beside the drop zone must not replace the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  placementInput.addEventListener("change", () => {
    if (placementInput.files.length) setPlacement(placementInput.files[0]);
  });
  $("placement-clear").addEventListener("click", () => setPlacement(null));
  windowInput.addEventListener("input", validate);
  replayButton.addEventListener("click", replay);
  $("load-example").addEventListener("click", loadExample);
  for (const chip of form.querySelectorAll("[data-preset]")) {
    chip.addEventListener("click", () => applyPreset(chip.dataset.preset));
  }
  form.addEventListener("input", validate);
  form.addEventListener("submit", rebalance);
  validate();
})();
