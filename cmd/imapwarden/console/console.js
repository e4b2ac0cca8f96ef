// imapwarden console: confirmation before actions, optional refresh.
"use strict";
document.addEventListener("submit", function (e) {
  var msg = e.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) { e.preventDefault(); }
});
(function () {
  var box = document.getElementById("autorefresh");
  if (!box) { return; }
  box.checked = sessionStorage.getItem("imapwarden.refresh") === "1";
  var timer = null;
  function arm() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (box.checked) { timer = setTimeout(function () { location.reload(); }, 5000); }
  }
  box.addEventListener("change", function () {
    sessionStorage.setItem("imapwarden.refresh", box.checked ? "1" : "0");
    arm();
  });
  arm();
})();
