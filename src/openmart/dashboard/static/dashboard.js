// openmart dashboard: live updates, in-place tab and feature switches, alert buttons.
// Shipped inside the package (no CDN). Pages work without it; it only saves reloads.
// The one global is window.openmartDashboard ({refresh, polls}), for tests and the curious.
(function () {
  "use strict";
  var body = document.body;
  var changesUrl = body.dataset.changesUrl;
  var api = body.dataset.api || "";
  var pollMs = parseInt(body.dataset.pollMs || "0", 10);
  var busy = false;
  var state = { polls: 0, refreshes: 0 };

  function main() { return document.querySelector("main"); }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function flash(message, kind) {
    var box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message || "";
    box.className = message ? (kind || "error") : "";
  }

  function withFragment(href) {
    var u = new URL(href, window.location.href);
    u.searchParams.set("fragment", "1");
    return u.toString();
  }

  // Fetch the page's <main> again and swap it in: no reload, the URL keeps tab, range, feature.
  function refresh(href) {
    var target = href || window.location.href;
    return fetch(withFragment(target), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        if (!r.ok) { throw new Error("the dashboard answered " + r.status); }
        var token = r.headers.get("X-Change-Token");
        return r.text().then(function (html) {
          var scrollY = window.scrollY;
          main().innerHTML = html;
          window.scrollTo(0, scrollY);
          if (token !== null) body.dataset.changeToken = token;
          state.refreshes += 1;
          document.dispatchEvent(new CustomEvent("openmart:updated"));
        });
      });
  }

  function poll() {
    if (busy || !changesUrl) return;
    busy = true;
    fetch(changesUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (answer) {
        state.polls += 1;
        if (answer && answer.token !== body.dataset.changeToken) return refresh();
        return null;
      })
      .catch(function () { /* the server may be restarting: the next poll tries again */ })
      .then(function () { busy = false; });
  }

  // Tabs and feature links: fetch the fragment and push the URL instead of loading the page.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("nav.tabs a[data-tab], a[data-inplace]");
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    var href = link.href;
    refresh(href).then(function () { window.history.pushState({}, "", href); flash(""); })
      .catch(function () { window.location.href = href; });
  });

  window.addEventListener("popstate", function () { refresh().catch(function () { window.location.reload(); }); });

  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select && select.name === "range" && select.form && select.form.id === "range") select.form.submit();
  });

  // Alert buttons: POST to the REST API with the CSRF token, then show the row as it now is.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-action]");
    if (!button || button.disabled) return;
    var id = button.dataset.alertId;
    var action = button.dataset.action;
    button.disabled = true;
    fetch(api + "/alerts/" + encodeURIComponent(id) + "/" + encodeURIComponent(action), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken(), Accept: "application/json" },
    })
      .then(function (r) {
        if (r.ok) { flash("alert #" + id + ": " + action + "d", "ok"); return refresh(); }
        return r.json().catch(function () { return {}; }).then(function (answer) {
          var message = (answer && answer.error && answer.error.message) || ("the API answered " + r.status);
          flash("could not " + action + " alert #" + id + ": " + message, "error");
          button.disabled = false;
        });
      })
      .catch(function (err) { flash("could not " + action + " alert #" + id + ": " + err.message, "error"); button.disabled = false; });
  });

  if (pollMs > 0 && changesUrl) window.setInterval(poll, pollMs);

  window.openmartDashboard = {
    refresh: refresh,
    get polls() { return state.polls; },
    get refreshes() { return state.refreshes; },
  };
})();
