// appendq console: the overview's two charts per account (uPlot), refreshed every minute.
// No inline script anywhere (the Content-Security-Policy forbids it); htmx does the live table.
(function () {
  "use strict";
  var charts = {};
  var COLOURS = { appended: "#116329", depth: "#0a58ca" };
  var LABELS = { appended: "records / min", depth: "queued records" };

  function summary(kind, series) {
    var ys = series[1], n = ys.length;
    if (!n) { return kind === "depth" ? "No samples yet: no tick has run in the last 24 hours." : "Nothing appended in the last 24 hours."; }
    var total = 0, peak = 0;
    for (var i = 0; i < n; i++) { total += ys[i]; if (ys[i] > peak) { peak = ys[i]; } }
    if (kind === "appended") {
      return total.toLocaleString() + " records appended in the last 24 hours; busiest minute " + peak.toLocaleString() + ".";
    }
    return "Now " + ys[n - 1].toLocaleString() + " queued; highest " + peak.toLocaleString() + " in the last 24 hours.";
  }

  // Both charts span the same 24 hours (the server's window), in APPENDQ_TIMEZONE.
  var span = [0, 0];
  var zone = document.documentElement.getAttribute("data-tz") || "UTC";

  function draw(el, kind, series) {
    var key = kind + ":" + el.getAttribute("data-account");
    var width = Math.max(el.clientWidth, 260);
    if (charts[key]) { charts[key].setData(series); charts[key].setSize({ width: width, height: 180 }); return; }
    charts[key] = new uPlot({
      width: width, height: 180,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), zone); },
      scales: { x: { time: true, range: function () { return [span[0], span[1]]; } } },
      axes: [{}, { size: 60 }],
      series: [{}, { label: LABELS[kind], stroke: COLOURS[kind], fill: COLOURS[kind] + "22", width: 1.5, spanGaps: false }]
    }, series, el);
  }

  function refresh() {
    var els = document.querySelectorAll("[data-chart]");
    if (!els.length || typeof uPlot === "undefined") { return; }
    fetch("/ui/charts.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 401) { clearInterval(timer); }  // signed out: stop asking
        if (!r.ok) { throw new Error("charts: HTTP " + r.status); }
        return r.json();
      })
      .then(function (data) {
        span = [data.since, data.until];
        var byAccount = {};
        data.accounts.forEach(function (a) { byAccount[a.account] = a; });
        els.forEach(function (el) {
          var a = byAccount[el.getAttribute("data-account")], kind = el.getAttribute("data-chart");
          if (!a) { return; }
          draw(el, kind, a[kind]);
          var sum = document.querySelector('[data-summary="' + kind + '"][data-account="' + CSS.escape(a.account) + '"]');
          if (sum) { sum.textContent = summary(kind, a[kind]); }
        });
      })
      .catch(function () {
        document.querySelectorAll(".chart-sum").forEach(function (el) { el.textContent = "Charts unavailable: reload the page (is the session still signed in?)."; });
      });
  }

  // The live part is replaced every 5 s: not while the keyboard is in it (the focused link would
  // vanish under the visitor) and not while the tab is hidden (no use, and an unattended tab
  // should not look busy).
  document.addEventListener("htmx:confirm", function (event) {
    var live = document.getElementById("live");
    if (event.target === live && (document.hidden || live.contains(document.activeElement))) {
      event.preventDefault();
    }
  });

  var resizing;
  window.addEventListener("resize", function () { clearTimeout(resizing); resizing = setTimeout(refresh, 200); });
  var timer;
  document.addEventListener("DOMContentLoaded", function () { refresh(); timer = setInterval(refresh, 60000); });
})();
