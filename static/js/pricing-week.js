// Colours the admin's pricing week grid: each cell's hue comes from its data-hue (set from
// JavaScript, since the Content-Security-Policy allows no style attributes in markup).
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("#pricing-week td[data-hue]").forEach(function (cell) {
    cell.style.background = "hsl(" + Number(cell.dataset.hue) + ", 70%, 70%)";
  });
});
