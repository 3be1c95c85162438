// The loads panel: a file dropped, chosen or the example, previewed by the server (shape,
// total, heatmap, and the id to plan it by), and the placement in use. A click on the
// heatmap opens its layer in detail.

import { postForm } from "./api.js";
import { draw, onPick } from "./charts.js";
import { $ } from "./dom.js";
import { count } from "./format.js";
import { currentPlan, layerFields, planFile } from "./store.js";

const EXAMPLE_URL = "/dashboard/example.csv";
const EXAMPLE_NAME = "deepseek-v3-example.csv";

export function initLoads(store, config, layers) {
  const fileInput = $("loads-file");
  const dropzone = $("dropzone");
  const placementInput = $("placement-file");

  /** Preview a load file; on success it becomes the loads to plan, else the old ones stay. */
  async function load(file) {
    if (store.get().busy !== null) return; // the drop zone takes no file while a task runs
    const kept = store.get().loads;
    const keptText = kept ? ` The matrix from ${kept.name} is still loaded.` : "";
    if (file.size > config.max_upload_bytes) {
      store.set({ error: `Not loaded: the file '${file.name}' is larger than the ` +
        `${config.max_upload_text} upload limit (EPLB_MAX_UPLOAD_BYTES).${keptText}` });
      return;
    }
    store.set({ busy: { task: "load", label: "Reading…" }, error: null });
    try {
      const body = new FormData();
      body.append("file", file);
      const preview = await postForm("/dashboard/preview", body);
      store.set({
        loads: {
          file, name: file.name, uploadId: preview.upload_id, numLayers: preview.num_layers,
          numExperts: preview.num_experts, numSteps: preview.num_steps,
          totalTokens: preview.total_tokens,
        },
      });
      await showPreview(store.get().loads, preview.figure);
      store.set({ busy: null });
    } catch (error) {
      store.set({ busy: null, error: `Not loaded: ${error.message}.${keptText}` });
    } finally {
      fileInput.value = ""; // choosing the same file again, fixed, loads it again
    }
  }

  function showPreview(loads, figure) {
    $("data-name").textContent = loads.name;
    $("data-shape").textContent =
      `${count(loads.numLayers, "layer")} × ${count(loads.numExperts, "expert")}`;
    const series = loads.numSteps !== null;
    $("data-steps-row").hidden = !series;
    $("data-steps").textContent = series ? count(loads.numSteps, "step") : "";
    $("data-total").textContent = count(loads.totalTokens, "token");
    $("data-summary").hidden = false;
    $("empty-state").hidden = true;
    $("input-panel").hidden = false;
    return draw($("chart-input"), figure);
  }

  async function loadExample() {
    store.set({ error: null });
    try {
      const response = await fetch(EXAMPLE_URL);
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      const blob = await response.blob();
      await load(new File([blob], EXAMPLE_NAME, { type: "text/csv" }));
    } catch (error) {
      store.set({ error: `The example did not load: ${error.message}.` });
    }
  }

  /** The placement in use: sent with every plan and replay until removed. */
  function setPlacement(file) {
    store.set({ placement: file, error: null });
    $("placement-name").textContent = file ? file.name : "";
    $("placement-chosen").hidden = !file;
    placementInput.value = "";
  }

  fileInput.addEventListener("change", () => {
    if (fileInput.files.length) load(fileInput.files[0]);
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
    if (file) load(file);
  });
  // A file dropped beside the drop zone must not replace the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  $("load-example").addEventListener("click", loadExample);
  placementInput.addEventListener("change", () => {
    if (placementInput.files.length) setPlacement(placementInput.files[0]);
  });
  $("placement-clear").addEventListener("click", () => setPlacement(null));
  // A layer of the loads in detail: under the placement in use, and the plan on screen when it
  // is the plan of these loads and this cluster.
  onPick($("chart-input"), (point) => {
    const state = store.get();
    if (state.loads === null) return;
    const plan = currentPlan(state);
    layers.open({
      loads: state.loads, files: { placement: state.placement, after: plan && planFile(plan) },
      fields: layerFields(state),
      names: { before: state.placement ? "the placement in use" : null, after: "the plan" },
    }, Number(point.y));
  });

  store.subscribe(({ busy, loads }) => {
    $("load-example").disabled = busy !== null;
    fileInput.disabled = busy !== null;
    dropzone.classList.toggle("loaded", loads !== null);
  });
}

/** The server now keeps ``loads`` under ``uploadId`` (null: it does not, send the file). */
export function rememberUploadId(store, loads, uploadId) {
  if (store.get().loads === loads && loads.uploadId !== uploadId) {
    store.set({ loads: { ...loads, uploadId } });
  }
}
