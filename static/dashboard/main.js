// The dashboard page: load loads (CSV, JSON, .pt) and optionally the placement in use, check
// the cluster shape, rebalance (under a move budget), replay a time series (under several),
// score placements without planning, run the advisor's sweep, open a layer in detail, draw the
// server's figures, download the plan's files. Each module owns one part of the page; they
// share only the store.

import { initAdvisor } from "./advisor.js";
import { initCluster } from "./cluster.js";
import { initDownloads } from "./downloads.js";
import { initEvaluate } from "./evaluate.js";
import { initFeedback } from "./feedback.js";
import { initLayer } from "./layer.js";
import { initLoads } from "./loads.js";
import { initReplay } from "./replay.js";
import { initResults } from "./results.js";
import { createStore } from "./store.js";

// The server's limits, rendered into the page (app/routes/pages.py).
const config = JSON.parse(document.getElementById("page-config").textContent);

const store = createStore({
  loads: null, placement: null, compare: null, form: null, window: "", budgets: [],
  sweepEdits: 0, busy: null, error: null, plan: null, replay: null, evaluation: null,
  advice: null,
});
initFeedback(store);
const layers = initLayer(store);
const cluster = initCluster(store, { onRebalance: () => results.rebalance() });
const results = initResults(store, layers);
initLoads(store, config, layers);
initReplay(store, config, cluster);
initEvaluate(store, cluster, layers);
initAdvisor(store, config, cluster);
initDownloads(store);
