// Drag to reorder a list (the storyboard's shots, the projects); the order is saved at once.
(function () {
  function csrf() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"]; } catch (e) { return ""; }
  }
  function save(list) {
    var ids = Array.prototype.map.call(list.querySelectorAll("[data-id]"), function (el) { return el.dataset.id; });
    list.dataset.saving = "1";
    return fetch(list.dataset.reorderUrl, {
      method: "POST",
      headers: { "X-CSRFToken": csrf(), "Accept": "application/json" },
      body: new URLSearchParams({ order: ids.join(",") }),
      credentials: "same-origin",
    }).then(function (response) {
      delete list.dataset.saving;
      list.dataset.saved = response.ok ? "1" : "0";
      if (!response.ok) window.location.reload();
      list.querySelectorAll(".shot-number").forEach(function (el, i) { el.textContent = i + 1; });
    });
  }
  function wire(list) {
    var dragging = null;
    list.addEventListener("dragstart", function (event) {
      dragging = event.target.closest("[data-id]");
      if (!dragging) return;
      dragging.classList.add("dragging");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", dragging.dataset.id);
    });
    list.addEventListener("dragover", function (event) {
      if (!dragging) return;
      event.preventDefault();
      var over = event.target.closest("[data-id]");
      if (!over || over === dragging) return;
      var box = over.getBoundingClientRect();
      // Tiles in a grid are ordered left to right; list rows top to bottom.
      var after = list.dataset.axis === "x"
        ? event.clientX > box.left + box.width / 2
        : event.clientY > box.top + box.height / 2;
      list.insertBefore(dragging, after ? over.nextSibling : over);
    });
    list.addEventListener("drop", function (event) { event.preventDefault(); });
    list.addEventListener("dragend", function () {
      if (!dragging) return;
      dragging.classList.remove("dragging");
      dragging = null;
      save(list);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".sortable[data-reorder-url]").forEach(wire);
  });
})();
