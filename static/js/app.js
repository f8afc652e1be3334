// Every page: the phone menu, and selects that submit their form when changed.
(function () {
  document.addEventListener("DOMContentLoaded", function () {
    var bar = document.getElementById("topbar");
    var toggle = bar && bar.querySelector(".menu-toggle");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var open = bar.classList.toggle("open");
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
      });
    }
    document.querySelectorAll("form[data-switcher]").forEach(function (form) {
      form.addEventListener("submit", function () { form.action = form.elements.ws.value; });
    });
    document.querySelectorAll("select[data-submit-on-change]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.requestSubmit(); });
    });
  });
})();
