// Behaviour every page shares. The Content-Security-Policy allows no inline scripts, event
// handler attributes or style attributes, so what those did lives here (app.js has the
// phone menu, the workspace switcher and selects that submit on change):
// - [data-aspect="W / H"]: sets the element's aspect ratio (take players and cards);
// - video[data-hover-play]: plays while the pointer is over it;
// - textarea.title-input (a project's or shot's name): one line of text that wraps to show
//   a long name whole; Enter submits its form, line breaks become spaces, and where CSS
//   `field-sizing` is missing its height follows its content.
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

  var sizesItself = window.CSS && CSS.supports && CSS.supports("field-sizing", "content");
  function fitTitle(field) {
    if (sizesItself) return;
    field.style.height = "auto";
    field.style.height = field.scrollHeight + "px";
  }
  document.addEventListener("keydown", function (event) {
    var field = event.target;
    if (event.key === "Enter" && field.matches && field.matches("textarea.title-input")) {
      event.preventDefault();
      if (field.form) field.form.requestSubmit();
    }
  });
  document.addEventListener("input", function (event) {
    var field = event.target;
    if (!field.matches || !field.matches("textarea.title-input")) return;
    if (/[\r\n]/.test(field.value)) field.value = field.value.replace(/[\r\n]+/g, " ");
    fitTitle(field);
  });

  document.addEventListener("DOMContentLoaded", function () {
    applyAspect(document);
    document.querySelectorAll("textarea.title-input").forEach(fitTitle);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    applyAspect(event.target);
  });
})();
