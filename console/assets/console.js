// raftmq console: the little the pages need beyond htmx.
"use strict";

// A live view whose event stream dropped says so until it is back (htmx-sse reconnects
// by itself with backoff).
document.addEventListener("htmx:sseError", (e) => {
  e.target.classList.add("stale");
});
document.addEventListener("htmx:sseOpen", (e) => {
  e.target.classList.remove("stale");
});

// A request that failed before any answer (console stopped, network gone) shows an error
// where its answer would have gone, instead of nothing.
document.addEventListener("htmx:sendError", (e) => {
  const target = e.detail.target;
  if (target && target.id !== "progress") {
    target.innerHTML = "";
    const div = document.createElement("div");
    div.className = "error";
    div.setAttribute("role", "alert");
    div.textContent = "The console did not answer. Is it still running?";
    target.appendChild(div);
  }
});

// Charts page: one uPlot per `.chart`, redrawn from charts.json every 2 s.
const COLORS = ["#1f5fbf", "#1d7f3c", "#a36200"];

function drawCharts(root) {
  const charts = [...root.querySelectorAll(".chart")].map((el) => ({ el, plot: null }));
  const refresh = async () => {
    let data;
    try {
      const r = await fetch(root.dataset.src, { credentials: "same-origin" });
      if (!r.ok) throw new Error(`${r.status}`);
      data = await r.json();
      root.classList.remove("stale");
    } catch (e) {
      root.classList.add("stale");
      return;
    }
    for (const c of charts) {
      const names = c.el.dataset.series.split(",");
      const labels = c.el.dataset.labels.split(",");
      const cols = [data.t, ...names.map((n) => data[n])];
      if (!c.plot) {
        c.plot = new uPlot(
          {
            width: Math.max(320, c.el.clientWidth),
            height: 220,
            series: [{}, ...labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], spanGaps: true }))],
            axes: [{}, { size: 60 }],
          },
          cols,
          c.el,
        );
      } else {
        c.plot.setData(cols);
      }
    }
  };
  refresh();
  setInterval(refresh, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("charts");
  if (root && window.uPlot) drawCharts(root);
});
