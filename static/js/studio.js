// The studio: reference frames, keyboard (D draws again, Ctrl+Enter generates), hover
// previews, finished-take notifications, and the lightbox over any take grid.
(function () {
  function csrf() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"]; } catch (e) { return ""; }
  }
  function typing(target) {
    var tag = (target && target.tagName) || "";
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  // --- reference frames -----------------------------------------------------------------
  function kept(name) {
    var img = document.querySelector(name === "image" ? "[data-testid=kept-image]" : "[data-testid=kept-last-frame]");
    if (!img) return false;
    var clear = document.querySelector("input[name=" + (name === "image" ? "clear_image" : "clear_last_frame") + "]");
    return !(clear && clear.checked);
  }
  function nearestAspect(width, height) {
    var select = document.getElementById("aspect_ratio");
    if (!select || !width || !height) return;
    var best = null, bestDiff = Infinity, ratio = width / height;
    Array.prototype.forEach.call(select.options, function (opt) {
      var parts = opt.value.split(":");
      if (parts.length !== 2) return;
      var diff = Math.abs(Math.log((+parts[0] / +parts[1]) / ratio));
      if (diff < bestDiff) { bestDiff = diff; best = opt.value; }
    });
    if (best && select.value !== best) {
      select.value = best;
      select.dispatchEvent(new Event("change", { bubbles: true }));
    }
  }
  function wireOne(name, flagId) {
    var input = document.getElementById(name);
    var flag = document.getElementById(flagId);
    var preview = document.getElementById(name + "-preview");
    if (flag) flag.value = (input && input.files && input.files.length) || kept(name) ? "1" : "0";
    if (!input || input.dataset.wired) return;
    input.dataset.wired = "1";
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      if (flag) flag.value = file || kept(name) ? "1" : "0";
      if (!preview) return;
      if (file) {
        preview.src = URL.createObjectURL(file);
        preview.hidden = false;
        if (name === "image") {
          preview.addEventListener("load", function once() {
            preview.removeEventListener("load", once);
            nearestAspect(preview.naturalWidth, preview.naturalHeight);
          });
        }
      } else {
        preview.hidden = true;
      }
    });
  }
  function wire() {
    wireOne("image", "has_image");
    wireOne("last_frame", "has_last_frame");
    document.querySelectorAll("[data-hover-play]").forEach(function (video) {
      if (video.dataset.wired) return;
      video.dataset.wired = "1";
      video.addEventListener("mouseenter", function () { video.play().catch(function () {}); });
      video.addEventListener("mouseleave", function () { video.pause(); });
    });
  }
  document.addEventListener("DOMContentLoaded", wire);
  document.addEventListener("htmx:afterSettle", wire);
  document.addEventListener("change", function (event) {
    var name = event.target && event.target.name;
    if (name === "clear_image" || name === "clear_last_frame") wire();
  });

  // --- finished takes: the tab title counts them, and a browser notification ------------
  var baseTitle = document.title;
  var inFlight = null;
  var finished = 0;
  function flightIds() {
    var ids = {};
    document.querySelectorAll("[data-testid=take-card]").forEach(function (card) {
      var status = card.dataset.status;
      if (["queued", "dispatching", "running", "finalizing"].indexOf(status) >= 0) ids[card.dataset.take] = true;
    });
    return ids;
  }
  function checkFinished() {
    var now = flightIds();
    if (inFlight) {
      var done = 0;
      Object.keys(inFlight).forEach(function (id) {
        var card = document.querySelector("[data-testid=take-card][data-take='" + id + "']");
        if (card && !now[id]) done += 1;
      });
      if (done) {
        finished += done;
        document.title = "(" + finished + " ✓) " + baseTitle;
        if (window.Notification && Notification.permission === "granted" && document.hidden) {
          new Notification(baseTitle, { body: finished + " ✓" });
        }
      }
    }
    inFlight = now;
  }
  document.addEventListener("DOMContentLoaded", function () {
    checkFinished();
    if (Object.keys(inFlight || {}).length && window.Notification && Notification.permission === "default") {
      document.addEventListener("click", function ask() {
        document.removeEventListener("click", ask);
        Notification.requestPermission();
      });
    }
  });
  document.addEventListener("htmx:afterSettle", checkFinished);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { finished = 0; document.title = baseTitle; }
  });

  // --- lightbox ----------------------------------------------------------------------------
  var box, video, label, index = -1;
  function cards() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-lightbox-grid] [data-testid=take-card][data-video]"));
  }
  function current() { return cards()[index]; }
  function render() {
    var card = current();
    if (!card) return close();
    video.src = card.dataset.video;
    video.poster = card.dataset.poster || "";
    label.textContent = card.dataset.label || "";
    var keep = box.querySelector("[data-lb=keep]");
    var chosen = card.dataset.chosen === "1";
    keep.textContent = chosen ? box.dataset.keptLabel : box.dataset.keepLabel;
    keep.disabled = chosen;
    keep.dataset.chosen = chosen ? "1" : "0";
    var fav = box.querySelector("[data-lb=favourite]");
    fav.textContent = card.dataset.favourite === "1" ? box.dataset.unfavLabel : box.dataset.favLabel;
    fav.dataset.favourite = card.dataset.favourite;
    document.getElementById("lightbox-page").href = card.dataset.pageUrl;
    video.play().catch(function () {});
  }
  function open(card) {
    index = cards().indexOf(card);
    if (index < 0) return;
    box.hidden = false;
    document.body.classList.add("lightbox-open");
    render();
  }
  function close() {
    if (!box) return;
    box.hidden = true;
    video.pause();
    video.removeAttribute("src");
    document.body.classList.remove("lightbox-open");
    index = -1;
  }
  function move(step) {
    var all = cards();
    if (!all.length) return;
    index = (index + step + all.length) % all.length;
    render();
  }
  function post(url, data) {
    var body = new URLSearchParams(data || {});
    return fetch(url, {
      method: "POST",
      headers: { "X-CSRFToken": csrf(), "Accept": "application/json" },
      body: body,
      credentials: "same-origin",
    }).then(function (r) { return r.json(); });
  }
  function keep() {
    var card = current();
    if (!card || card.dataset.chosen === "1") return;
    post(card.dataset.chooseUrl).then(function (state) {
      if (state.error) { label.textContent = state.error; return; }
      // One chosen take per shot: the shot's previous one loses its mark.
      document.querySelectorAll("[data-testid=take-card][data-shot='" + card.dataset.shot + "']").forEach(function (other) {
        other.dataset.chosen = other === card ? "1" : "0";
        other.classList.toggle("chosen", other === card);
      });
      render();
    });
  }
  function favourite() {
    var card = current();
    if (!card) return;
    var next = card.dataset.favourite === "1" ? "0" : "1";
    post(card.dataset.favouriteUrl, { favourite: next }).then(function (state) {
      card.dataset.favourite = state.favourite ? "1" : "0";
      render();
    });
  }
  function togglePlay() {
    if (video.paused) video.play().catch(function () {}); else video.pause();
  }
  document.addEventListener("DOMContentLoaded", function () {
    box = document.getElementById("lightbox");
    if (!box) return;
    video = document.getElementById("lightbox-video");
    label = document.getElementById("lightbox-label");
    box.addEventListener("click", function (event) {
      var action = event.target.dataset && event.target.dataset.lb;
      if (event.target === box) return close();
      if (action === "prev") move(-1);
      else if (action === "next") move(1);
      else if (action === "keep") keep();
      else if (action === "favourite") favourite();
      else if (action === "close") close();
    });
    document.addEventListener("click", function (event) {
      var thumb = event.target.closest && event.target.closest("[data-lightbox-grid] a.thumb");
      if (!thumb || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      var card = thumb.closest("[data-testid=take-card]");
      if (!card || !card.dataset.video) return;
      event.preventDefault();
      open(card);
    });
  });

  // --- keys ----------------------------------------------------------------------------------
  document.addEventListener("keydown", function (event) {
    if (box && !box.hidden) {
      var handled = true;
      if (event.key === "ArrowLeft") move(-1);
      else if (event.key === "ArrowRight") move(1);
      else if (event.key === "k" || event.key === "K") keep();
      else if (event.key === "f" || event.key === "F") favourite();
      else if (event.key === " ") togglePlay();
      else if (event.key === "Escape") close();
      else handled = false;
      if (handled) event.preventDefault();
      return;
    }
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      var form = document.getElementById("studio-form");
      if (form) { event.preventDefault(); form.requestSubmit(); }
      return;
    }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "d" || event.key === "D") {
      var again = document.querySelector("[data-testid=draw-again]");
      if (again && !again.disabled) {
        event.preventDefault();
        again.disabled = true;
        again.form.submit();
      }
    }
  });
})();
