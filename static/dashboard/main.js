// The dashboard page: load loads (CSV, JSON, .pt) and optionally the placement in use, check
// the cluster shape, rebalance, replay a time series, draw the server's figures, download the
// plan's files. Each module owns one part of the page; they share only the store.

import { initCluster } from "./cluster.js";
import { initDownloads } from "./downloads.js";
import { initFeedback } from "./feedback.js";
import { initLoads } from "./loads.js";
import { initReplay } from "./replay.js";
import { initResults } from "./results.js";
import { createStore } from "./store.js";

// The server's limits, rendered into the page (app/routes/pages.py).
const config = JSON.parse(document.getElementById("page-config").textContent);

const store = createStore({
  loads: null, placement: null, form: null, window: "", busy: null, error: null, plan: null,
  replay: null,
});
initFeedback(store);
const cluster = initCluster(store, { onRebalance: () => results.rebalance() });
const results = initResults(store);
initLoads(store, config);
initReplay(store, config, cluster);
initDownloads(store);
