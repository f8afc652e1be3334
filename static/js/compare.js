// Side-by-side takes play in sync: one clock (the first video) drives the others.
(function () {
  var videos = Array.prototype.slice.call(document.querySelectorAll("[data-testid=compare-video]"));
  if (!videos.length) return;
  var lead = videos[0];
  function each(fn) { videos.forEach(fn); }
  function align() {
    each(function (v) {
      if (v !== lead && Math.abs(v.currentTime - lead.currentTime) > 0.05) v.currentTime = lead.currentTime;
    });
  }
  document.getElementById("play-all").addEventListener("click", function () {
    align();
    each(function (v) { v.play(); });
  });
  document.getElementById("pause-all").addEventListener("click", function () {
    each(function (v) { v.pause(); });
    align();
  });
  document.getElementById("restart-all").addEventListener("click", function () {
    each(function (v) { v.currentTime = 0; v.play(); });
  });
  lead.addEventListener("seeked", align);
  lead.addEventListener("ended", function () { each(function (v) { v.pause(); }); });
  setInterval(function () { if (!lead.paused) align(); }, 1000);
})();
// Space plays or pauses every take at once.
(function () {
  var play = document.getElementById("play-all");
  var pause = document.getElementById("pause-all");
  if (!play || !pause) return;
  document.addEventListener("keydown", function (event) {
    var tag = (event.target && event.target.tagName) || "";
    if (event.key !== " " || tag === "INPUT" || tag === "TEXTAREA" || tag === "BUTTON") return;
    event.preventDefault();
    var lead = document.querySelector("[data-testid=compare-video]");
    (lead && !lead.paused ? pause : play).click();
  });
})();
