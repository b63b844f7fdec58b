// Keyboard shortcuts for spillway serve: j/k move, o opens, a approves,
// r rejects. No sandbox byte is ever put into the page from here: the
// script only moves a class and follows links and forms the server made.
"use strict";
(function () {
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr.rec")); }
  function selected() { return document.querySelector("tr.rec.sel"); }
  function select(row) {
    var cur = selected();
    if (cur) { cur.classList.remove("sel"); }
    if (row) { row.classList.add("sel"); row.scrollIntoView({block: "nearest"}); }
  }
  function move(by) {
    var rs = rows(), cur = selected(), i = rs.indexOf(cur);
    if (rs.length === 0) { return false; }
    i = i < 0 ? 0 : Math.min(rs.length - 1, Math.max(0, i + by));
    select(rs[i]);
    return true;
  }
  function follow(id) {
    var a = document.getElementById(id);
    if (a) { window.location.assign(a.getAttribute("href")); }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var rs = rows();
    if (rs.length > 0) { select(rs[0]); }
    rs.forEach(function (r) {
      r.addEventListener("click", function () { select(r); });
    });
  });
  document.addEventListener("keyup", function (ev) {
    var t = ev.target, reason = document.getElementById("reason");
    if (ev.key !== "r" || ev.ctrlKey || ev.metaKey || ev.altKey || !reason) { return; }
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) { return; }
    reason.focus();
  });
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) {
      if (ev.key === "Escape") { t.blur(); }
      return;
    }
    var queue = document.getElementById("queue") !== null;
    var sel = selected();
    switch (ev.key) {
    case "j":
      if (queue) { move(1); } else { follow("next"); }
      break;
    case "k":
      if (queue) { move(-1); } else { follow("prev"); }
      break;
    case "o":
    case "Enter":
      if (queue && sel) { window.location.assign(sel.getAttribute("data-href")); }
      break;
    case "a":
      if (queue && sel) {
        sel.querySelector("form.approve").submit();
      } else if (document.getElementById("approve")) {
        document.getElementById("approve").submit();
      }
      break;
    case "r":
      if (queue && sel) {
        window.location.assign(sel.getAttribute("data-href"));
      }
      // The reason field gets the focus on keyup, so that the "r" itself
      // is not typed into it.
      break;
    default:
      return;
    }
    ev.preventDefault();
  });
})();
