// Drawing the server's Plotly figures, and keeping them inside their panels: a ResizeObserver
// resizes a chart whenever its element's width changes (a window resize, the layout switching
// to one column), and switches to the figure's narrow layout below its max_width. A chart can
// take clicks on its points (``onPick``): a heatmap's cell names its layer.
/* global Plotly */

const CONFIG = {
  displaylogo: false,
  modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d"],
  toImageButtonOptions: { format: "png", scale: 2 },
};

/** Per chart element: the figure drawn, whether in its narrow layout, and at what width. */
const drawn = new WeakMap();
/** Per chart element: what a click on one of its points calls, with the point. */
const picks = new WeakMap();

const observer = new ResizeObserver((entries) => {
  for (const entry of entries) fit(entry.target, entry.contentRect.width);
});

const isNarrow = (figure, width) => Boolean(figure.narrow) && width < figure.narrow.max_width;

/** Draw ``figure`` in ``element``; resolves once it is on screen. */
export function draw(element, figure) {
  const width = element.clientWidth;
  const narrow = isNarrow(figure, width);
  drawn.set(element, { figure, narrow, width });
  observer.observe(element);
  return render(element, figure, narrow);
}

/** Draw in the element's width. Plotly keeps and changes the layout it is given (ranges after
 *  a zoom): it gets a copy. Plotly.react keeps a plot's old size: resize when it differs. */
async function render(element, figure, narrow) {
  const layout = structuredClone(narrow ? figure.narrow.layout : figure.layout);
  await Plotly.react(element, figure.data, layout, CONFIG);
  if (element._fullLayout.width !== element.clientWidth) await Plotly.Plots.resize(element);
  // A new plot (Plotly.react may start one) comes without listeners: bind the click again.
  element.removeAllListeners("plotly_click");
  element.on("plotly_click", (event) => {
    const pick = picks.get(element);
    if (pick && event.points.length) pick(event.points[0]);
  });
}

/** Call ``pick(point)`` when a point of the chart in ``element`` is clicked (Plotly's point:
 *  ``x``, ``y``, ``z``, ``data``). */
export function onPick(element, pick) {
  picks.set(element, pick);
  element.classList.add("pickable");
}

function fit(element, width) {
  const chart = drawn.get(element);
  if (!chart || width === 0 || width === chart.width) return; // hidden, or only its height
  chart.width = width;
  const narrow = isNarrow(chart.figure, width);
  if (narrow !== chart.narrow) {
    chart.narrow = narrow;
    render(element, chart.figure, narrow);
  } else {
    Plotly.Plots.resize(element);
  }
}

/** Remove a chart (its element stays, empty). */
export function clear(element) {
  observer.unobserve(element);
  drawn.delete(element);
  Plotly.purge(element);
}
