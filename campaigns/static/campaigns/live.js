// The campaign page, live: every few seconds, fetch the campaign's JSON snapshot and copy its
// texts into the elements marked data-live="key" (the server formats every figure, once).
// The chart and the per-template/failures block refresh on a slower clock. No library.
(function () {
  "use strict";
  var page = document.querySelector(".campaign-page[data-live-url]");
  if (!page) return;
  var liveUrl = page.dataset.liveUrl;
  var interval = parseInt(page.dataset.liveInterval, 10) || 2000;
  var detailsInterval = parseInt(page.dataset.detailsInterval, 10) || 30000;
  var final = page.dataset.final === "true";

  function apply(snapshot) {
    var display = snapshot.display || {};
    page.querySelectorAll("[data-live]").forEach(function (el) {
      var key = el.dataset.live;
      if (Object.prototype.hasOwnProperty.call(display, key) && el.textContent !== display[key]) {
        el.textContent = display[key];
      }
    });
    var bar = document.getElementById("campaign-progress");
    if (bar && snapshot.progress) {
      bar.max = Math.max(snapshot.progress.queued, 1);
      bar.value = snapshot.progress.done;
    }
    var list = document.getElementById("campaign-waiting");
    if (list && snapshot.waiting) {
      list.textContent = "";
      if (!snapshot.waiting.length) {
        var none = document.createElement("li");
        none.className = "wac-muted";
        none.textContent = "Nothing waits beyond its turn.";
        list.appendChild(none);
      }
      snapshot.waiting.forEach(function (reason) {
        var item = document.createElement("li");
        item.textContent = reason.text;
        list.appendChild(item);
      });
    }
    page.dataset.updatedAt = String(Date.now());
    if (snapshot.final && !final) {
      final = true;
      refreshDetails();
      refreshChart();
    }
  }

  function poll() {
    fetch(liveUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(apply)
      .catch(function () { page.dataset.liveError = String(Date.now()); })
      .finally(function () { if (!final) window.setTimeout(poll, interval); });
  }

  function refreshChart() {
    var img = document.getElementById("campaign-chart-img");
    if (img) img.src = page.dataset.chartUrl + "?t=" + Date.now();
  }

  function refreshDetails() {
    var box = document.getElementById("campaign-details");
    if (!box) return;
    fetch(page.dataset.detailsUrl, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(); })
      .then(function (html) { box.innerHTML = html; })
      .catch(function () {});
  }

  refreshDetails();
  if (!final) {
    window.setTimeout(poll, interval);
    window.setInterval(function () {
      if (!final) { refreshDetails(); refreshChart(); }
    }, detailsInterval);
  }
})();
