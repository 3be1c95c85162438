// The advisor: a sweep of slot counts, policies and, for a time series, rebalance windows on
// the loads (POST /dashboard/sweep), streamed with its progress and cancellable (closing the
// request stops the server's work); its charts show balance against slots and the memory they
// cost, against the moves each window size costs, and each policy's balance against traffic.

import { postLoads } from "./api.js";
import { clear, draw } from "./charts.js";
import { $, fillTable, reveal, showNotes } from "./dom.js";
import { count, formatInteger, formatMs } from "./format.js";
import { rememberUploadId } from "./loads.js";
import { planFields } from "./store.js";

// The default slot counts: the fewest that hold every expert, plus these many per GPU.
const EXTRA_PER_GPU = [0, 1, 2, 4, 8];
// The default windows cut the series into about these many windows.
const WINDOW_COUNTS = [20, 10, 5];
const POLICY = /^(auto|hierarchical|global|spill)(:\d{1,9})?$/;
const GIB = 1024 ** 3;

const tokens = (text) => text.split(/[\s,;]+/).filter(Boolean);

export function initAdvisor(store, config, cluster) {
  const fields = { replicas: $("sweep-replicas"), policies: $("sweep-policies"),
    windows: $("sweep-windows") };
  const button = $("sweep");
  const cancel = $("sweep-cancel");
  const results = $("advisor-results");
  const status = $("sweep-status");
  let edited = false; // the user changed the choices: they stay until reset
  let filledFor = null; // what the defaults were last filled for
  let abort = null; // the sweep under way

  const isSeries = (state) => state.loads !== null && state.loads.numSteps !== null;

  /** The policy the form asks for, as a sweep names it: "hierarchical", "spill:2". */
  function currentPolicy(state) {
    const form = state.form.fields;
    const check = state.form.check;
    const policy = form.policy === "auto" && check && check.ok ? check.policy : form.policy;
    return policy === "spill" ? `spill:${form.spill_slots}` : policy;
  }

  /** Choices worth comparing on these loads and this cluster, within the server's limits. */
  function defaults(state) {
    const form = state.form.fields;
    const gpus = Number(form.num_gpus);
    const base = Math.ceil(state.loads.numExperts / gpus) * gpus;
    const slots = EXTRA_PER_GPU.map((extra) => base + extra * gpus)
      .filter((each) => each <= config.max_replicas);
    const current = Number(form.num_replicas);
    if (current >= base && current <= config.max_replicas && current % gpus === 0 &&
        !slots.includes(current)) {
      slots.push(current);
      slots.sort((a, b) => a - b);
    }
    // Where groups stay on nodes (the plan's policy is hierarchical or spill), compare the
    // three; the server says so when a policy does not fit.
    const mine = currentPolicy(state);
    const grouped = /^(hierarchical|spill)/.test(mine);
    let policies = grouped ? ["hierarchical", "spill:1", "global"] : [mine];
    if (!policies.includes(mine)) policies = [mine, ...policies.filter((p) => !p.startsWith("spill"))];
    let windows = [];
    if (isSeries(state)) {
      const steps = state.loads.numSteps;
      windows = [...new Set(WINDOW_COUNTS.map((each) => Math.floor(steps / each)))]
        .filter((size) => size >= 1 && Math.floor(steps / size) >= 2 &&
          Math.floor(steps / size) <= config.max_windows);
    }
    const points = () => slots.length * policies.length * Math.max(windows.length, 1);
    if (points() > config.max_sweep_points) policies = [mine]; // windows before policies
    while (points() > config.max_sweep_points && slots.length > 1) {
      slots.splice(slots.findLastIndex((each) => each !== current), 1);
    }
    return { replicas: slots.join(", "), policies: policies.join(", "),
      windows: windows.join(", ") };
  }

  /** The choices as written: the lists, or the problem. */
  function choices(state) {
    const replicas = tokens(fields.replicas.value);
    const policies = tokens(fields.policies.value);
    const windows = isSeries(state) ? tokens(fields.windows.value) : [];
    const bad = (list, test) => list.find((each) => !test(each));
    const whole = (text) => /^\d{1,9}$/.test(text) && Number(text) > 0;
    let problem = null;
    if (!replicas.length) problem = "Give at least one slot count.";
    else if (bad(replicas, whole)) problem = `Slots: "${bad(replicas, whole)}" is not a whole number.`;
    else if (!policies.length) problem = "Give at least one policy.";
    else if (bad(policies, (p) => POLICY.test(p))) {
      problem = `Policies: "${bad(policies, (p) => POLICY.test(p))}" is none of hierarchical, ` +
        "spill:N, global, auto.";
    } else if (bad(windows, whole)) {
      problem = `Windows: "${bad(windows, whole)}" is not a whole number of steps.`;
    }
    const points = replicas.length * policies.length * Math.max(windows.length, 1);
    if (problem === null && points > config.max_sweep_points) {
      problem = `${count(points, "point")}: this server sweeps at most ` +
        `${formatInteger(config.max_sweep_points)} (EPLB_MAX_SWEEP_POINTS); take fewer slot ` +
        "counts, policies or windows.";
    }
    return { problem, replicas, policies, windows, points };
  }

  /** The fields a sweep sends: the cluster's, the choices (a bare "spill" with the form's
   *  spill slots), and the choice in use, whose point is ringed. */
  function sweepFields(state, chosen) {
    const plan = planFields(state);
    const spill = `spill:${/^\d+$/.test(state.form.fields.spill_slots)
      ? state.form.fields.spill_slots : 1}`;
    const sent = { num_groups: plan.num_groups, num_nodes: plan.num_nodes,
      num_gpus: plan.num_gpus, algorithm: plan.algorithm, seed: plan.seed,
      expert_bytes: plan.expert_bytes, num_replicas: chosen.replicas,
      policies: chosen.policies.map((policy) => (policy === "spill" ? spill : policy)),
      current_policy: currentPolicy(state), current_replicas: plan.num_replicas };
    if (chosen.windows.length) sent.windows = chosen.windows;
    return sent;
  }

  const inputsNow = (state, chosen) => ({ file: state.loads && state.loads.file,
    fields: JSON.stringify(sweepFields(state, chosen)) });

  async function run() {
    const checked = await cluster.check();
    const state = store.get();
    const chosen = choices(state);
    if (!checked || !checked.ok || !ready(state, chosen)) return;
    const sent = sweepFields(state, chosen);
    const inputs = inputsNow(state, chosen);
    abort = new AbortController();
    status.hidden = true;
    store.set({ busy: { task: "sweep", label: "Sweeping…", progress: null }, error: null });
    delete results.dataset.drawn; // until this press's figures are drawn
    try {
      const answer = await postLoads("/dashboard/sweep", state.loads, {}, sent, {
        signal: abort.signal,
        onProgress: ({ done, total }) => store.set({ busy: { task: "sweep",
          label: `Sweeping… ${formatInteger(done)} of ${count(total, "plan")}`,
          progress: { done, total } } }),
      });
      rememberUploadId(store, state.loads, answer.upload_id);
      results.hidden = false;
      $("empty-state").hidden = true;
      await show(answer);
      store.set({ busy: null, advice: { inputs } });
      results.dataset.drawn = "true";
      reveal(results);
    } catch (error) {
      if (error.name === "AbortError") {
        store.set({ busy: null });
        status.textContent = "Cancelled: the server stopped the sweep.";
        status.hidden = false;
      } else {
        store.set({ busy: null, error: `The advisor failed: ${error.message}` });
      }
    } finally {
      abort = null;
    }
  }

  async function show({ result, figures }) {
    const charts = [["slots", figures.slots], ["windows", figures.windows],
      ["policies", figures.policies]];
    // Without a policy chart, its panel says why: one policy swept, or no nodes per token.
    const policies = new Set(result.points.map((point) => `${point.policy}:${point.spill_slots}`));
    const note = $("sweep-policies-note");
    note.hidden = figures.policies !== null;
    note.textContent = policies.size < 2
      ? "One policy swept: add others to compare them (hierarchical, spill:1, global), with " +
        `fewer slot counts or windows to stay within ${formatInteger(config.max_sweep_points)} points.`
      : "No nodes per token here: the nodes or the groups do not split evenly.";
    await Promise.all(charts.map(([name, figure]) => {
      $(`panel-sweep-${name}`).hidden = figure === null && name !== "policies";
      const element = $(`chart-sweep-${name}`);
      element.hidden = figure === null;
      return figure === null ? clear(element) : draw(element, figure);
    }));
    $("advisor-summary").textContent = `${count(result.points.length, "point")} on ` +
      `${count(result.num_layers, "layer")} × ${count(result.num_experts, "expert")}` +
      (result.num_steps === null ? "" : ` (${count(result.num_steps, "step")})`) +
      `, ${result.params.algorithm}: ${formatMs(result.elapsed_ms)} on ${result.device}.`;
    showNotes($("advisor-notes"), result.notes);
    const figure = (value, digits) => (value === null ? "—" : value.toFixed(digits));
    fillTable($("sweep-table"), result.points.map((point) => [
      point.policy === "spill" ? `spill:${point.spill_slots}` : point.policy,
      formatInteger(point.num_replicas), String(point.slots_per_gpu),
      (point.extra_memory_per_gpu_bytes / GIB).toFixed(2),
      point.window === null ? "—" : formatInteger(point.window),
      point.mean_balancedness.toFixed(3), point.bound.toFixed(3), figure(point.next_window, 3),
      figure(point.mean_nodes_per_token, 2),
      point.moves_per_1000_steps === null ? "—" : formatInteger(point.moves_per_1000_steps)]));
  }

  const ready = (state, chosen) => state.loads !== null && chosen.problem === null &&
    cluster.problemOf(state) === null && state.busy === null;

  function fill(state) {
    const chosen = defaults(state);
    for (const [name, value] of Object.entries(chosen)) fields[name].value = value;
  }

  for (const input of Object.values(fields)) {
    input.addEventListener("input", () => {
      edited = true;
      store.set({ sweepEdits: (store.get().sweepEdits ?? 0) + 1 }); // redraw what depends on them
    });
  }
  $("sweep-defaults").addEventListener("click", () => {
    edited = false;
    fill(store.get());
    store.set({ sweepEdits: (store.get().sweepEdits ?? 0) + 1 });
  });
  button.addEventListener("click", run);
  cancel.addEventListener("click", () => abort && abort.abort());

  store.subscribe((state) => {
    const running = state.busy && state.busy.task === "sweep";
    $("sweep-windows-row").hidden = !isSeries(state);
    if (state.loads !== null && state.form.check && state.form.check.ok) {
      const form = state.form.fields;
      const key = JSON.stringify([state.loads.file && state.loads.name, state.loads.numSteps,
        form.num_replicas, form.num_gpus, currentPolicy(state)]);
      if (!edited && key !== filledFor && !running) {
        filledFor = key;
        fill(state);
      }
    }
    const chosen = choices(state);
    const hint = $("sweep-hint");
    hint.classList.toggle("invalid", state.loads !== null && chosen.problem !== null);
    hint.textContent = state.loads === null ? "Load the loads to run the advisor."
      : chosen.problem ?? `${count(chosen.points, "point")}: ` +
        `${count(chosen.replicas.length, "slot count")} × ${count(chosen.policies.length, "policy", "policies")}` +
        (chosen.windows.length ? ` × ${count(chosen.windows.length, "window")}` : "") +
        `, each a plan${chosen.windows.length ? " and a replay" : ""}.`;
    button.hidden = Boolean(running);
    cancel.hidden = !running;
    button.disabled = !ready(state, chosen);
    $("sweep-running").hidden = !running;
    if (running) {
      const bar = $("sweep-progress");
      const progress = state.busy.progress;
      if (progress) {
        bar.max = progress.total;
        bar.value = progress.done;
      } else {
        bar.removeAttribute("value"); // indeterminate until the first report
      }
      $("sweep-progress-text").textContent = progress
        ? `${formatInteger(progress.done)} of ${count(progress.total, "plan")}`
        : "Checking the choices…";
    }
    if (state.advice) {
      const now = inputsNow(state, chosen);
      const stale = now.file !== state.advice.inputs.file ||
        now.fields !== state.advice.inputs.fields;
      results.classList.toggle("is-stale", stale);
      $("advisor-stale").hidden = !stale;
    }
  });
}
