// The dashboard page: load a CSV, check the cluster shape, rebalance, draw the server's figures,
// offer the plan as files. Figures come ready from the server; this script only places them.
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

  const $ = (id) => document.getElementById(id);
  const form = $("cluster-form");
  const fileInput = $("csv-file");
  const dropzone = $("dropzone");
  const rebalanceButton = $("rebalance");
  const results = $("results");

  /** What the page holds: the last matrix that loaded, and the last plan. */
  const state = { file: null, numExperts: null, busy: false, downloadUrls: [] };

  // ---- talking to the server ---------------------------------------------------------------

  /** POST a form; the parsed JSON body, or an Error carrying the server's reason in words. */
  async function postForm(url, body) {
    const response = await fetch(url, { method: "POST", body });
    const payload = await response.json().catch(() => null);
    if (!response.ok) throw new Error(describeError(response, payload));
    return payload;
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

  /** Preview a CSV file; on success it becomes the matrix to rebalance, else the old one stays. */
  async function loadFile(file) {
    clearError();
    const body = new FormData();
    body.append("file", file);
    setBusy(true, "Reading…");
    try {
      const preview = await postForm("/dashboard/preview", body);
      state.file = file;
      state.numExperts = preview.num_experts;
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
    $("data-total").textContent = `${integer.format(preview.total_tokens)} tokens`;
    $("data-summary").hidden = false;
    $("empty-state").hidden = true;
    $("input-panel").hidden = false;
    return Plotly.newPlot("chart-input", preview.figure.data, preview.figure.layout, PLOT_CONFIG);
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

  function readParams() {
    const data = new FormData(form);
    const params = { algorithm: data.get("algorithm") };
    for (const name of Object.keys(LABELS)) {
      const text = String(data.get(name) ?? "").trim();
      params[name] = /^\d+$/.test(text) ? Number(text) : NaN;
    }
    return params;
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
    return ready;
  }

  function applyPreset(name) {
    for (const [field, value] of Object.entries(PRESETS[name])) form.elements[field].value = value;
    validate();
  }

  // ---- rebalancing -------------------------------------------------------------------------

  async function rebalance(event) {
    event.preventDefault();
    if (state.busy || !validate()) return;
    clearError();
    const pressed = performance.now();
    const body = new FormData(form);
    body.append("file", state.file);
    setBusy(true, "Planning…");
    try {
      const { result, figures } = await postForm("/dashboard/rebalance", body);
      results.hidden = false;
      delete results.dataset.drawnMs;
      await Promise.all([
        draw("chart-gpu", figures.gpu),
        draw("chart-node", figures.node),
        draw("chart-balancedness", figures.balancedness),
      ]);
      const drawnMs = performance.now() - pressed;
      showSummary(result, drawnMs);
      offerDownloads(result);
      results.dataset.drawnMs = drawnMs.toFixed(0);
    } catch (error) {
      showError(`Rebalance failed: ${error.message}`);
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
    const policy = $("card-policy");
    policy.querySelector(".policy").textContent = result.plan.policy;
    policy.querySelector(".algorithm").textContent = result.plan.algorithm;
    policy.querySelector(".note").textContent =
      `${p.num_replicas} slots on ${p.num_gpus} GPUs in ${p.num_nodes} nodes, ` +
      `${p.num_groups} groups, seed ${p.seed}`;
    const time = $("card-time");
    time.querySelector(".planning").textContent = formatMs(result.elapsed_ms);
    time.querySelector(".note").textContent =
      `planning on ${result.device}; charts drawn ${formatMs(drawnMs)} after pressing Rebalance`;
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
    offerDownloads(null);
  }

  // ---- downloads ---------------------------------------------------------------------------

  /** The plan as the files a serving engine reads, built from the last result. */
  function offerDownloads(result) {
    state.downloadUrls.forEach((url) => URL.revokeObjectURL(url));
    state.downloadUrls = [];
    const files = result === null ? {} : {
      "download-json": new Blob([JSON.stringify(planFile(result), null, 1)],
        { type: "application/json" }),
      "download-csv": new Blob([result.plan.phy2log.map((row) => row.join(",")).join("\n") + "\n"],
        { type: "text/csv" }),
    };
    for (const id of ["download-json", "download-csv"]) {
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

  function planFile(result) {
    const { phy2log, log2phy, logcnt, policy, algorithm } = result.plan;
    return {
      phy2log, log2phy, logcnt,
      parameters: result.params,
      summary: {
        num_layers: result.num_layers,
        num_experts: result.num_experts,
        policy,
        algorithm,
        mean_balancedness: { before: result.before.mean_balancedness,
          after: result.after.mean_balancedness },
        worst_max_over_mean: { before: result.before.worst_max_over_mean,
          after: result.after.worst_max_over_mean },
        elapsed_ms: result.elapsed_ms,
        device: result.device,
      },
    };
  }

  // ---- page state --------------------------------------------------------------------------

  function setBusy(busy, text) {
    state.busy = busy;
    rebalanceButton.classList.toggle("busy", busy);
    rebalanceButton.querySelector(".label").textContent = busy ? text : "Rebalance";
    rebalanceButton.disabled = busy;
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

  $("load-example").addEventListener("click", loadExample);
  for (const chip of form.querySelectorAll("[data-preset]")) {
    chip.addEventListener("click", () => applyPreset(chip.dataset.preset));
  }
  form.addEventListener("input", validate);
  form.addEventListener("submit", rebalance);
  validate();
})();
