// Auto-refresh without reloading the page: fetch this page's HTML fragment (rendered and
// escaped server-side) and swap it into <main>. A static file, so the Content-Security-Policy
// can forbid inline scripts altogether.
(function () {
  "use strict";
  var main = document.getElementById("content");
  var every = Math.max(0.5, Number(document.body.dataset.refresh || "5")) * 1000;
  var path = window.location.pathname === "/" ? "/fragment/" : "/fragment" + window.location.pathname;
  function tick() {
    fetch(path + window.location.search, { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var open = Array.prototype.map.call(main.querySelectorAll("details[open]"), function (d) {
          return d.dataset.component;
        });
        main.innerHTML = html;
        open.forEach(function (c) {
          var d = main.querySelector('details[data-component="' + CSS.escape(c || "") + '"]');
          if (d) d.open = true;
        });
        document.body.dataset.refreshed = String(Date.now());
      })
      .catch(function () { document.body.dataset.refreshFailed = String(Date.now()); })
      .then(function () { window.setTimeout(tick, every); });
  }
  window.setTimeout(tick, every);
})();
