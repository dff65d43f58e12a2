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
