// The studio form: preview the reference image and tell the quote whether one is attached.
(function () {
  function wire() {
    var input = document.getElementById("image");
    var flag = document.getElementById("has_image");
    var preview = document.getElementById("image-preview");
    if (flag) flag.value = input && input.files && input.files.length ? "1" : "0";
    if (!input || input.dataset.wired) return;
    input.dataset.wired = "1";
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      flag.value = file ? "1" : "0";
      if (file && preview) {
        preview.src = URL.createObjectURL(file);
        preview.hidden = false;
      } else if (preview) {
        preview.hidden = true;
      }
    });
  }
  document.addEventListener("DOMContentLoaded", wire);
  document.addEventListener("htmx:afterSettle", wire);
})();
