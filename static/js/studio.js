// The studio form: preview the reference frames and tell the quote which ones are attached.
(function () {
  function wireOne(name, flagId) {
    var input = document.getElementById(name);
    var flag = document.getElementById(flagId);
    var preview = document.getElementById(name + "-preview");
    if (flag) flag.value = input && input.files && input.files.length ? "1" : "0";
    if (!input || input.dataset.wired) return;
    input.dataset.wired = "1";
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      if (flag) flag.value = file ? "1" : "0";
      if (!preview) return;
      if (file) {
        preview.src = URL.createObjectURL(file);
        preview.hidden = false;
      } else {
        preview.hidden = true;
      }
    });
  }
  function wire() {
    wireOne("image", "has_image");
    wireOne("last_frame", "has_last_frame");
  }
  document.addEventListener("DOMContentLoaded", wire);
  document.addEventListener("htmx:afterSettle", wire);
})();
