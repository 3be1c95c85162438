// The cluster form: presets, the fields, and their check. The server checks the shape with
// the core's own rules (GET /dashboard/check, a moment after the last keystroke); the form
// shows its answer, and Rebalance waits for it.

import { RequestError, getJson } from "./api.js";
import { $ } from "./dom.js";
import { count, formatInteger, sentence } from "./format.js";

const CHECK_DELAY_MS = 250;
const SHAPE_FIELDS = ["num_replicas", "num_groups", "num_nodes", "num_gpus"];
const POLICY_MEANINGS = {
  hierarchical: "hierarchical policy: groups stay within nodes",
  global: "global policy: replicas go to any GPU",
  spill: "spill policy: groups stay within nodes, a few slots take other nodes' experts",
};
const NO_PLACEMENT = "optional: count the experts a plan moves, cap them";

export function initCluster(store, { onRebalance }) {
  const form = $("cluster-form");
  const button = $("rebalance");
  const presetSelect = $("preset");
  const presets = [...presetSelect.querySelectorAll("option[value]:not([value=''])")];
  let timer = null;
  let inFlight = null; // the check under way: its query, its answer (a promise), its abort

  /** Every named field as the routes take it; check boxes as "true"/"false". */
  function readFields() {
    const fields = {};
    for (const element of form.elements) {
      if (!element.name) continue;
      fields[element.name] = element.type === "checkbox"
        ? String(element.checked) : element.value.trim();
    }
    return fields;
  }

  /** The check's query: the shape, the policy, and the experts loaded (0: none yet). */
  function checkQuery({ form: { fields }, loads }) {
    const query = new URLSearchParams();
    for (const name of SHAPE_FIELDS) query.set(name, fields[name]);
    query.set("num_experts", loads ? loads.numExperts : 0);
    query.set("policy", fields.policy);
    if (fields.policy === "spill") query.set("spill_slots", fields.spill_slots);
    return query.toString();
  }

  const label = (name) => {
    const field = form.elements[name];
    return field && field.labels.length ? field.labels[0].firstChild.textContent.trim()
      .replace(/\s+/g, " ") : name;
  };

  /** The server's check of the fields as they are now: the last answer when it is for them,
   *  else a new one, which lands in the store. */
  function check() {
    clearTimeout(timer);
    timer = null;
    const state = store.get();
    const query = checkQuery(state);
    if (state.form.check && state.form.check.query === query) {
      return Promise.resolve(state.form.check);
    }
    if (inFlight && inFlight.query === query) return inFlight.answer;
    if (inFlight) inFlight.abort.abort();
    const abort = new AbortController();
    const answer = getJson(`/dashboard/check?${query}`, { signal: abort.signal, label })
      .catch((error) => {
        if (error.name === "AbortError") return null;
        const problem = error instanceof RequestError && error.status === 422
          ? error.message : `the shape could not be checked: ${error.message}`;
        return { ok: false, problem };
      })
      .then((result) => {
        if (result === null) return null; // replaced by a newer check
        if (inFlight && inFlight.query === query) inFlight = null;
        store.set({ form: { ...store.get().form, check: { query, ...result } } });
        return result;
      });
    inFlight = { query, answer, abort };
    return answer;
  }

  function scheduleCheck() {
    clearTimeout(timer);
    timer = setTimeout(check, CHECK_DELAY_MS);
  }

  /** Why the fields cannot be planned now, or null: the page's own checks of the fields the
   *  server's check does not see, then the server's answer. */
  function problemOf(state) {
    const { fields } = state.form;
    const seed = form.elements.seed;
    if (!seed.validity.valid || seed.value.trim() === "") {
      return "Seed must be a whole number of at least 0.";
    }
    if (fields.policy === "spill" && !/^\d+$/.test(fields.spill_slots)) {
      return "Spill slots must be a whole number of at least 0.";
    }
    const budget = fields.move_budget_pct;
    if (budget !== "" && !(Number(budget) >= 0 && Number(budget) <= 100)) {
      return "The move budget is a share of all slots, from 0 to 100%; leave it empty for no " +
        "limit.";
    }
    if (!(Number(fields.expert_mib) > 0)) return "The expert size must be more than 0 MiB.";
    if (fields.link_gb_per_s !== "" && !(Number(fields.link_gb_per_s) > 0)) {
      return "The link bandwidth must be more than 0 GB/s; leave it empty for no time.";
    }
    const result = state.form.check;
    return result && !result.ok ? sentence(result.problem) : null;
  }

  /** What the move budget allows, in slots, and what the expert size means. */
  function budgetHint({ form: { fields }, loads }) {
    const budget = fields.move_budget_pct;
    const slots = loads ? loads.numLayers * Number(fields.num_replicas) : NaN;
    if (budget === "" || !(Number(budget) >= 0 && Number(budget) <= 100)) {
      return "No move budget: the plan moves what it needs.";
    }
    if (!Number.isFinite(slots) || slots <= 0) return `At most ${budget}% of all slots move.`;
    const allowed = Math.floor((Number(budget) / 100) * loads.numLayers * Number(fields.num_replicas));
    return `At most ${count(allowed, "slot")} of ${formatInteger(slots)} ` +
      `(${count(loads.numLayers, "layer")} × ${formatInteger(Number(fields.num_replicas))}) ` +
      "change expert: the most balanced plan that budget buys.";
  }

  function meaningOf(state) {
    const result = state.form.check;
    if (!result || !result.ok) return "";
    const nodes = result.gpus_per_node === null
      ? "no per-node figures: the GPUs do not split evenly over the nodes"
      : `${count(result.gpus_per_node, "GPU")} per node`;
    return `${count(result.slots_per_gpu, "slot")} per GPU · ${nodes} · ` +
      `${POLICY_MEANINGS[result.policy] ?? `${result.policy} policy`}` +
      (state.loads ? "" : ". Load a matrix to rebalance.");
  }

  function render(state) {
    const problem = problemOf(state);
    $("validation").hidden = problem === null;
    $("validation").textContent = problem ?? "";
    const meaning = problem === null ? meaningOf(state) : "";
    $("shape-hint").textContent = meaning;
    $("shape-hint").hidden = meaning === "";
    const { fields } = state.form;
    const matched = presets.find((option) =>
      SHAPE_FIELDS.every((name) => option.dataset[camel(name)] === fields[name]));
    presetSelect.value = matched ? matched.value : "";
    $("preset-description").textContent = matched ? matched.dataset.description : "";
    $("preset-description").hidden = !matched;
    $("spill-row").hidden = fields.policy !== "spill";
    $("budget-hint").textContent = budgetHint(state);
    $("deploy-summary").textContent = [state.placement && state.placement.name,
      fields.move_budget_pct !== "" && `budget ${fields.move_budget_pct}%`]
      .filter(Boolean).join(" · ") || NO_PLACEMENT;
    const running = state.busy && state.busy.task === "rebalance";
    button.classList.toggle("busy", Boolean(running));
    button.querySelector(".label").textContent = running ? state.busy.label : "Rebalance";
    button.disabled = state.busy !== null || state.loads === null || problem !== null;
  }

  function changed() {
    store.set({ form: { ...store.get().form, fields: readFields() } });
    scheduleCheck();
  }

  function applyPreset() {
    const option = presetSelect.selectedOptions[0];
    if (!option.value) return; // "Custom cluster": the fields stay as they are
    for (const name of SHAPE_FIELDS) form.elements[name].value = option.dataset[camel(name)];
  }

  // The preset select is in the form: its input event fills the fields, then reads them.
  presetSelect.addEventListener("input", applyPreset);
  form.addEventListener("input", changed);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await check();
    const state = store.get();
    if (result && result.ok && problemOf(state) === null && state.busy === null && state.loads) {
      onRebalance();
    }
  });

  store.set({ form: { fields: readFields(), check: null } });
  let checkedExperts; // the experts of the loads the last check was for
  store.subscribe((state) => {
    const experts = state.loads ? state.loads.numExperts : null;
    if (experts !== checkedExperts) { // the loads decide whether the experts fit: check again
      checkedExperts = experts;
      check();
    }
    render(state);
  });
  return { check, problemOf };
}

/** A field name as its data attribute reads in dataset: num_gpus -> numGpus. */
const camel = (name) => name.replace(/_(\w)/g, (_, letter) => letter.toUpperCase());
