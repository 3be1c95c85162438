// The page's one store of shared state. Each module owns a part of the page: it changes the
// store with set() and redraws its part when the store changes (subscribe).
//
// State: loads (the loaded file and its preview), placement (the placement-in-use File),
// compare (a second placement File to score beside it), form (the cluster fields and their
// check), window and budgets (the replay's), sweep (the advisor's choices), busy (the running
// task, with its progress), error (the message beside the form), and plan, replay,
// evaluation and advice: what the last ones were computed from (and the plan itself, for the
// downloads and the layer detail).

export function createStore(initial) {
  let state = Object.freeze({ ...initial });
  const listeners = [];
  return {
    get: () => state,
    set(changes) {
      state = Object.freeze({ ...state, ...changes });
      for (const listener of listeners) listener(state);
    },
    /** Call ``listener`` now and after every change. */
    subscribe(listener) {
      listeners.push(listener);
      listener(state);
    },
  };
}

const MIB = 1024 * 1024;
const CLUSTER = ["num_replicas", "num_groups", "num_nodes", "num_gpus"];

/** A share of all slots as the API reads it: a number with a point ("0.1", "1.0"). */
export const shareText = (share) => (Number.isInteger(share) ? share.toFixed(1) : String(share));

const pick = (fields, names) => Object.fromEntries(names.map((name) => [name, fields[name]]));

/** The form fields a plan sends: the cluster, the algorithm and policy (with its spill slots
 *  under the spill policy), the seed, how to deploy over the placement in use, the move
 *  budget (a share of all slots) when one is set, the expert's bytes and the link's GB/s when
 *  one is set. The form's own fields hold the budget in % and the expert size in MiB. */
export function planFields(state) {
  const form = state.form.fields;
  const fields = pick(form, [...CLUSTER, "algorithm", "policy", "seed", "keep_slots",
    "renumber_gpus"]);
  if (form.policy === "spill") fields.spill_slots = form.spill_slots;
  if (form.move_budget_pct !== "") fields.move_budget = shareText(Number(form.move_budget_pct) / 100);
  fields.expert_bytes = String(Math.round(Number(form.expert_mib) * MIB));
  if (form.link_gb_per_s !== "") fields.link_gb_per_s = form.link_gb_per_s;
  return fields;
}

/** The form fields a replay sends: the plan's but the algorithm (a replay runs each), its move
 *  budget and link (a replay has its own budgets), with the window and the budgets. */
export function replayFields(state) {
  const { algorithm, move_budget: budget, link_gb_per_s: link, ...fields } = planFields(state);
  return { ...fields, window: state.window, budgets: state.budgets };
}

/** The fields that score a placement without planning: the cluster and the policy. */
export const scoreFields = (state) => pick(state.form.fields, [...CLUSTER, "policy"]);

/** The fields of one layer's detail: the cluster and the policy (for its bound). */
export const layerFields = scoreFields;

/** What a result depends on: the loads and placement files, and the fields sent. */
export const inputsOf = (state, fields) => ({
  file: state.loads && state.loads.file,
  placement: state.placement,
  fields: JSON.stringify(fields),
});

/** Whether a result computed from ``inputs`` still shows what the page holds now. */
export const isCurrent = (inputs, now) =>
  inputs.file === now.file && inputs.placement === now.placement && inputs.fields === now.fields;

/** A plan on screen as a placement file the server reads: a JSON object with its phy2log. */
export const planFile = (plan) => [new Blob([JSON.stringify({ phy2log: plan.phy2log })],
  { type: "application/json" }), "plan.json"];

/** The plan on screen when it is the plan of the page's current inputs, else null. */
export const currentPlan = (state) => (state.plan !== null &&
  isCurrent(state.plan.inputs, inputsOf(state, planFields(state))) ? state.plan : null);
