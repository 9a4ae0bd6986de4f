// The live character count of a text field (an enhancement: the forms work without it).
// A <textarea data-count="… %(count)s … %(max)s …"> gets a line below it, read out politely after a
// pause in typing. No inline script: the page's Content-Security-Policy allows this file alone.
(function () {
  "use strict";
  document.querySelectorAll("textarea[data-count][maxlength]").forEach(function (area) {
    var max = parseInt(area.getAttribute("maxlength"), 10);
    var template = area.getAttribute("data-count");
    var line = document.createElement("p");
    line.className = "count";
    line.id = area.id + "-count";
    line.setAttribute("aria-live", "polite");
    area.insertAdjacentElement("afterend", line);
    var timer = null;
    function show() {
      line.textContent = template
        .replace("%(count)s", String(area.value.length))
        .replace("%(max)s", String(max));
    }
    show();
    area.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(show, 400);
    });
  });
})();
