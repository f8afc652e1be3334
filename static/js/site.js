// Behaviour every page shares. The Content-Security-Policy allows no inline scripts, event
// handler attributes or style attributes, so what those did lives here (app.js has the
// phone menu, the workspace switcher and selects that submit on change):
// - [data-aspect="W / H"]: sets the element's aspect ratio (take players and cards);
// - video[data-hover-play]: plays while the pointer is over it.
(function () {
  "use strict";

  function applyAspect(root) {
    if (root.matches && root.matches("[data-aspect]")) {
      root.style.aspectRatio = root.dataset.aspect;
    }
    root.querySelectorAll("[data-aspect]").forEach(function (el) {
      el.style.aspectRatio = el.dataset.aspect;
    });
  }

  document.addEventListener("mouseover", function (event) {
    var video = event.target.closest && event.target.closest("video[data-hover-play]");
    if (video && video.paused) {
      video.play().catch(function () {});
    }
  });
  document.addEventListener("mouseout", function (event) {
    var video = event.target.closest && event.target.closest("video[data-hover-play]");
    if (video && !video.contains(event.relatedTarget)) {
      video.pause();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    applyAspect(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    applyAspect(event.target);
  });
})();
