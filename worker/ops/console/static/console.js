// Live parts of a page: an element with data-live="/events/..." is replaced by each
// Server-Sent Event's HTML (rendered and escaped by the server).
"use strict";
document.querySelectorAll("[data-live]").forEach(function (element) {
  var source = new EventSource(element.dataset.live);
  source.addEventListener("update", function (event) {
    var open = element.querySelector("form input:focus");
    if (open) { return; }  // never pull a form from under someone typing in it
    element.innerHTML = event.data;
    element.dataset.updated = String(Number(element.dataset.updated || "0") + 1);
  });
});
