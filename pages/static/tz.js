// Pick the visitor's own time zone on first visit; the server renders everything, this only fills the picker.
(function () {
  var select = document.getElementById("tz");
  if (!select || select.getAttribute("data-autodetect") !== "yes") return;
  var params = new URLSearchParams(window.location.search);
  if (params.has("tz")) return;
  var detected;
  try { detected = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!detected || detected === select.value) return;
  params.set("tz", detected);
  window.location.replace(window.location.pathname + "?" + params.toString());
})();
