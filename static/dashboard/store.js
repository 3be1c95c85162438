// The page's one store of shared state. Each module owns a part of the page: it changes the
// store with set() and redraws its part when the store changes (subscribe).
//
// State: loads (the loaded file and its preview), placement (the placement-in-use File),
// form (the cluster fields and their check), window (the replay window), busy (the running
// task), error (the message beside the form), plan and replay (what the last ones were
// computed from, and the plan itself for the downloads).

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

/** The form fields a plan sends (every cluster field, the algorithm, the options). */
export const planFields = (state) => state.form.fields;

/** The form fields a replay sends: the plan's but the algorithm (a replay runs each), and the
 *  window. */
export function replayFields(state) {
  const { algorithm, ...fields } = state.form.fields;
  return { ...fields, window: state.window };
}

/** What a result depends on: the loads and placement files, and the fields sent. */
export const inputsOf = (state, fields) => ({
  file: state.loads && state.loads.file,
  placement: state.placement,
  fields: JSON.stringify(fields),
});

/** Whether a result computed from ``inputs`` still shows what the page holds now. */
export const isCurrent = (inputs, now) =>
  inputs.file === now.file && inputs.placement === now.placement && inputs.fields === now.fields;
