// CheapLM: copy buttons. Everything works without this file; it only adds convenience.
"use strict";

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text);
  }
  // Plain-http deployments have no Clipboard API: fall back to a hidden textarea.
  return new Promise(function (resolve, reject) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "sr-only";
    document.body.appendChild(area);
    area.select();
    var ok = document.execCommand("copy");
    document.body.removeChild(area);
    if (ok) { resolve(); } else { reject(new Error("copy failed")); }
  });
}

function sourceFor(button) {
  var selector = button.getAttribute("data-copy");
  if (selector) { return document.querySelector(selector); }
  var figure = button.closest("figure");
  return figure ? figure.querySelector("pre code") : null;
}

document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button) { return; }
  var source = sourceFor(button);
  if (!source) { return; }
  var label = button.getAttribute("data-label") || button.textContent;
  button.setAttribute("data-label", label);
  copyText(source.textContent.trim()).then(function () {
    button.textContent = "Copied ✓";
    button.classList.add("copied");
  }, function () {
    // Clipboard refused (permissions): select the text so Ctrl+C / long-press works.
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "Press Ctrl+C";
  }).finally(function () {
    setTimeout(function () {
      button.textContent = label;
      button.classList.remove("copied");
    }, 2000);
  });
});

// Tabs: a .tabs group of code blocks becomes a tab bar showing one block at a time.
function buildTabs(group, groupIndex) {
  var figures = Array.prototype.filter.call(group.children, function (el) { return el.matches("figure.code"); });
  if (figures.length < 2) { return; }
  var bar = document.createElement("div");
  bar.className = "tab-bar";
  bar.setAttribute("role", "tablist");
  var tabs = figures.map(function (figure, i) {
    var tab = document.createElement("button");
    tab.type = "button";
    tab.className = "tab";
    tab.id = "tab-" + groupIndex + "-" + i;
    figure.id = figure.id || "panel-" + groupIndex + "-" + i;
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-controls", figure.id);
    figure.setAttribute("role", "tabpanel");
    figure.setAttribute("aria-labelledby", tab.id);
    tab.textContent = figure.querySelector("figcaption span").textContent;
    tab.addEventListener("click", function () { select(i); });
    bar.appendChild(tab);
    return tab;
  });
  function select(index, focus) {
    tabs.forEach(function (tab, i) {
      tab.setAttribute("aria-selected", i === index ? "true" : "false");
      tab.tabIndex = i === index ? 0 : -1;
      figures[i].hidden = i !== index;
    });
    if (focus) { tabs[index].focus(); }
  }
  bar.addEventListener("keydown", function (event) {
    var current = tabs.indexOf(document.activeElement);
    if (current < 0) { return; }
    var next = { ArrowRight: current + 1, ArrowLeft: current - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (next === undefined) { return; }
    event.preventDefault();
    select((next + tabs.length) % tabs.length, true);
  });
  group.insertBefore(bar, figures[0]);
  group.classList.add("js");
  select(0);
}

document.addEventListener("DOMContentLoaded", function () {
  Array.prototype.forEach.call(document.querySelectorAll(".tabs"), buildTabs);
});
