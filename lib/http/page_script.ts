/**
 * The listing page's script, embedded as a string so a compiled binary serves it with no file
 * and no network: sorting by column, filtering by name (a paged folder's search, by the server,
 * as you type), uploads of files and whole folders (picked or dropped) with a progress bar and a
 * result for each, and rename, delete (confirmed) and new folder through one dialog, each with
 * its result. The listing works without it. It builds every element with textContent, never
 * innerHTML, so a name can only ever be text.
 * Served at `/?asset=page.js` under a Content-Security-Policy that allows no inline script.
 *
 * @module
 */

/**
 * Most rows the page re-sorts itself, in place, when a column's title is clicked: past it, a
 * browser spends seconds on each click, and the title's link asks the server for the folder
 * sorted instead (a page at a time, as a big folder always is).
 */
export const SORT_MAX = 5000;

/** The script's source. */
export const PAGE_SCRIPT = String.raw`"use strict";
(function () {
  var table = document.querySelector("table.listing");
  var tbody = table && table.tBodies[0];
  var upload = document.getElementById("upload");
  var tools = document.getElementById("tools");
  if (!tbody) return;
  if (tools) tools.hidden = false;

  // Sorting: each column's title is a link to the folder sorted by it, on the server (the
  // order of every page of a big folder). A folder shown whole, of at most SORT_MAX rows, is
  // re-sorted here instead, at once, in the server's very order: folders first, then by the key
  // (ties by name, as code units), reversed for a descending sort; the address follows, so a
  // reload shows the same order. Past SORT_MAX the links stay: a browser would take seconds.
  var SORT_MAX = ${SORT_MAX};
  var sortKey = table.dataset.sort || "name", sortDir = table.dataset.order === "desc" ? -1 : 1;
  function rows() {
    return Array.prototype.filter.call(tbody.rows, function (r) { return r.dataset.name !== undefined && !r.classList.contains("up"); });
  }
  function cmp(a, b) { return a < b ? -1 : a > b ? 1 : 0; }
  // The page's address with its parameters changed by edit (a URLSearchParams).
  function addressWith(edit) {
    var params = new URLSearchParams(location.search);
    edit(params);
    var search = params.toString();
    return location.pathname + (search ? "?" + search : "");
  }
  // Makes url the page's address, so a reload shows what the page shows.
  function showAddress(url) {
    if (url !== location.pathname + location.search) history.replaceState(null, "", url);
  }
  function sort() {
    // Each row's key is read once, and the rows go back in one move.
    var keyed = rows().map(function (r) {
      return { row: r, folder: r.dataset.folder === "1", name: r.dataset.name, key: sortKey === "name" ? 0 : Number(r.dataset[sortKey]) };
    });
    keyed.sort(function (a, b) {
      if (a.folder !== b.folder) return a.folder ? -1 : 1;
      return (cmp(a.key, b.key) || cmp(a.name, b.name)) * sortDir;
    });
    var moved = document.createDocumentFragment();
    keyed.forEach(function (k) { moved.appendChild(k.row); });
    tbody.appendChild(moved);
    Array.prototype.forEach.call(table.querySelectorAll("th[data-key]"), function (th) {
      th.setAttribute("aria-sort", th.dataset.key === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none");
    });
    showAddress(addressWith(function (params) {
      params.delete("sort"); params.delete("order");
      if (sortKey !== "name") params.set("sort", sortKey);
      if (sortDir < 0) params.set("order", "desc");
    }));
  }
  // A big folder comes a page at a time, sorted and searched by the server.
  var paged = table.dataset.paged === "1";
  var count = rows().length;
  if (!paged && count <= SORT_MAX) Array.prototype.forEach.call(table.querySelectorAll("th[data-key]"), function (th) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "sort";
    button.textContent = th.textContent;
    th.textContent = "";
    th.appendChild(button);
    button.addEventListener("click", function () {
      if (sortKey === th.dataset.key) sortDir = -sortDir; else { sortKey = th.dataset.key; sortDir = 1; }
      sort();
    });
  });

  // Filtering by name, as you type.
  var filter = document.getElementById("filter");
  function applyFilter() {
    var text = filter ? filter.value.trim().toLowerCase() : "";
    rows().forEach(function (r) { r.hidden = text !== "" && r.dataset.name.toLowerCase().indexOf(text) < 0; });
  }
  // A folder past SORT_MAX is filtered once typing pauses: each pass over its rows takes a while.
  var filterTimer;
  if (filter) filter.addEventListener("input", function () {
    if (count <= SORT_MAX) return applyFilter();
    clearTimeout(filterTimer);
    filterTimer = setTimeout(applyFilter, 250);
  });

  // Adds a row's rename and delete buttons, once the page knows it may (below).
  var decorate = function () {};

  // Refreshing the listing after uploads and changes, keeping the sort and the filter, or, for a
  // paged folder, showing another search's first page: the rows, the page's place and its links
  // are swapped for those of the page at url. Only the answer to the latest call is shown.
  var loads = 0;
  function load(url) {
    var mine = ++loads;
    return fetch(url, { headers: { accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html || mine !== loads) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var freshTable = doc.querySelector("table.listing");
        var fresh = freshTable && freshTable.tBodies[0];
        if (!fresh) return;
        // The folder grew past a page, or shrank to one: this page cannot become the other kind
        // in place. It is loaded anew, unless that would lose results the visitor has not read.
        if ((freshTable.dataset.paged === "1") !== paged) { changedKind(url); return; }
        rows().forEach(function (r) { r.remove(); });
        Array.prototype.forEach.call(fresh.rows, function (r) {
          if (r.dataset.name !== undefined) decorate(tbody.appendChild(document.importNode(r, true)));
        });
        ["#empty", "#pageinfo"].forEach(function (sel) {
          var mineEl = document.querySelector(sel), theirs = doc.querySelector(sel);
          if (mineEl && theirs) mineEl.replaceWith(document.importNode(theirs, true));
        });
        // A paged folder's column titles keep the search in their links.
        if (paged && freshTable.tHead && table.tHead) table.tHead.replaceWith(document.importNode(freshTable.tHead, true));
        var navs = document.querySelectorAll("nav.pages"), freshNavs = doc.querySelectorAll("nav.pages");
        Array.prototype.forEach.call(navs, function (nav, i) {
          if (freshNavs[i]) nav.replaceWith(document.importNode(freshNavs[i], true));
        });
        showAddress(url);
        if (!paged && count <= SORT_MAX) sort();
        applyFilter();
      });
  }
  function refresh() { return load(location.pathname + location.search); }
  function changedKind(url) {
    var list = document.getElementById("results");
    if (!list || list.children.length === 0) { location.assign(url); return; }
    if (document.getElementById("reshape")) return;
    var li = document.createElement("li");
    li.id = "reshape";
    var text = document.createElement("span");
    text.className = "f";
    text.textContent = paged ? "This folder now fits one page: " : "This folder now holds more than a page: ";
    var link = document.createElement("a");
    link.href = url;
    link.textContent = "reload it to see it as it is";
    text.appendChild(link);
    li.appendChild(text);
    list.appendChild(li);
  }

  // A paged folder's search asks the server, once typing pauses (or at Enter), for the first
  // page of the names that hold the text; without JavaScript the form does the same.
  var search = document.getElementById("search");
  var query = document.getElementById("q");
  function searchUrl() {
    // The first page of the search, in the order the page is shown in.
    return addressWith(function (params) {
      params.delete("after"); params.delete("q");
      var text = query.value.trim();
      if (text) params.set("q", text);
    });
  }
  var searchTimer;
  if (paged && search && query) {
    query.addEventListener("input", function () {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () { load(searchUrl()); }, 300);
    });
    search.addEventListener("submit", function (e) {
      e.preventDefault();
      clearTimeout(searchTimer);
      load(searchUrl());
    });
  }

  if (!upload) return;
  upload.hidden = false;
  var results = document.getElementById("results");
  var changes = table.dataset.change === "1";

  // Rename, delete and new folder: one modal dialog asks (Escape or Cancel backs out), then one
  // request (MOVE, DELETE, MKCOL) does it, and its result is listed as an upload's is.
  function here() { return location.pathname.replace(/\/?$/, "/"); }
  function shownHere() { try { return decodeURIComponent(here()); } catch (e) { return here(); } }
  function hrefIn(path) { return here() + path.split("/").map(encodeURIComponent).join("/"); }
  var dialog = document.createElement("dialog");
  var askForm = document.createElement("form");
  var question = document.createElement("p");
  var answer = document.createElement("input");
  answer.type = "text";
  answer.autocomplete = "off";
  answer.setAttribute("aria-label", "Name");
  var buttons = document.createElement("div");
  buttons.className = "row";
  var cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "no";
  cancel.textContent = "Cancel";
  var go = document.createElement("button");
  go.type = "submit";
  buttons.appendChild(cancel); buttons.appendChild(go);
  askForm.appendChild(question); askForm.appendChild(answer); askForm.appendChild(buttons);
  dialog.appendChild(askForm);
  document.body.appendChild(dialog);
  var onAnswer = null;
  cancel.addEventListener("click", function () { dialog.close(); });
  dialog.addEventListener("close", function () { onAnswer = null; });
  askForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var then = onAnswer, value = answer.value.trim();
    if (!answer.hidden && value === "") { answer.focus(); return; }
    dialog.close();
    if (then) then(value);
  });
  function ask(text, options, then) {
    question.textContent = text;
    answer.hidden = options.value === undefined;
    answer.value = options.value || "";
    go.textContent = options.action;
    onAnswer = then;
    dialog.showModal();
    if (!answer.hidden) { answer.focus(); answer.select(); } else cancel.focus();
  }
  function act(label, method, url, headers) {
    var li = document.createElement("li");
    var what = document.createElement("span");
    what.className = "f";
    what.textContent = label;
    var state = document.createElement("span");
    state.className = "state";
    state.textContent = "working";
    li.appendChild(what); li.appendChild(state);
    results.appendChild(li);
    headers.accept = "application/json";
    return fetch(url, { method: method, headers: headers, credentials: "same-origin" })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          li.className = r.ok ? "ok" : "fail";
          state.textContent = r.ok ? "done" : "failed (" + r.status + "): " + (body.error || r.statusText);
        });
      }, function () { li.className = "fail"; state.textContent = "failed: connection lost"; })
      .then(refresh);
  }
  function rename(row) {
    var name = row.dataset.name, folder = row.dataset.folder === "1";
    ask("Rename \u201c" + name + "\u201d to (a name, or a path under this folder):", { value: name, action: "Rename" }, function (to) {
      if (to === name) return;
      act("Rename " + name + " \u2192 " + to, "MOVE", hrefIn(name) + (folder ? "/" : ""), { destination: hrefIn(to) });
    });
  }
  function remove(row) {
    var name = row.dataset.name, folder = row.dataset.folder === "1";
    var text = folder ? "Delete the folder \u201c" + name + "\u201d and everything in it?" : "Delete \u201c" + name + "\u201d?";
    ask(text, { action: "Delete" }, function () {
      act("Delete " + name, "DELETE", hrefIn(name) + (folder ? "/?recursive" : ""), {});
    });
  }
  function button(text, label, onClick) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }
  decorate = function (row) {
    if (!changes || row.dataset.name === undefined || row.dataset.fixed === "1") return;
    var cell = row.cells[row.cells.length - 1];
    cell.appendChild(button("Rename", "Rename " + row.dataset.name, function () { rename(row); }));
    cell.appendChild(button("Delete", "Delete " + row.dataset.name, function () { remove(row); }));
  };
  rows().forEach(decorate);
  var newFolder = document.getElementById("newfolder");
  if (newFolder && changes) {
    newFolder.addEventListener("click", function () {
      ask("New folder in " + shownHere() + ":", { value: "", action: "Create" }, function (name) {
        act("New folder " + name, "MKCOL", hrefIn(name) + "/", {});
      });
    });
  }
  var overwrite = document.getElementById("overwrite");
  var drop = document.getElementById("drop");
  var queue = [], running = 0, LIMIT = 3, pendingRefresh = false;

  function urlOf(path) {
    var base = location.pathname.replace(/\/?$/, "/");
    return base + path.split("/").map(encodeURIComponent).join("/") + (overwrite && overwrite.checked ? "?overwrite" : "");
  }
  function human(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
  }
  function addItem(path, size) {
    var li = document.createElement("li");
    var name = document.createElement("span");
    name.className = "f";
    name.textContent = path + " (" + human(size) + ")";
    var bar = document.createElement("progress");
    bar.max = size || 1;
    bar.value = 0;
    bar.setAttribute("aria-label", "Upload of " + path);
    var state = document.createElement("span");
    state.className = "state";
    state.textContent = "waiting";
    li.appendChild(name); li.appendChild(bar); li.appendChild(state);
    results.appendChild(li);
    return { li: li, bar: bar, state: state };
  }
  function enqueue(file, path) {
    var item = addItem(path, file.size);
    queue.push({ file: file, path: path, item: item });
    pump();
  }
  function pump() {
    while (running < LIMIT && queue.length > 0) send(queue.shift());
    if (running === 0 && queue.length === 0 && pendingRefresh) { pendingRefresh = false; refresh(); }
  }
  function finish(job, ok, text) {
    job.item.li.className = ok ? "ok" : "fail";
    job.item.state.textContent = text;
    if (ok) job.item.bar.value = job.item.bar.max;
    running--;
    pendingRefresh = true;
    pump();
  }
  function send(job) {
    running++;
    job.item.state.textContent = "uploading";
    var xhr = new XMLHttpRequest();
    xhr.open("PUT", urlOf(job.path));
    xhr.upload.onprogress = function (e) { if (e.lengthComputable) job.item.bar.value = e.loaded; };
    xhr.onload = function () {
      var line = (xhr.responseText || "").split("\n")[0];
      if (xhr.status === 201) finish(job, true, "done");
      else if (xhr.status === 409) finish(job, false, "not uploaded: " + line);
      else finish(job, false, "failed (" + xhr.status + "): " + line);
    };
    xhr.onerror = function () { finish(job, false, "failed: connection lost"); };
    xhr.onabort = function () { finish(job, false, "cancelled"); };
    xhr.send(job.file);
  }

  // Picking: files, or a whole folder (its relative paths kept).
  function picked(input) {
    Array.prototype.forEach.call(input.files, function (f) { enqueue(f, f.webkitRelativePath || f.name); });
    input.value = "";
  }
  var pick = document.getElementById("pick");
  var pickDir = document.getElementById("pickdir");
  if (pick) pick.addEventListener("change", function () { picked(pick); });
  if (pickDir) pickDir.addEventListener("change", function () { picked(pickDir); });

  // Dropping: files and folders, walked through the entries API.
  function walk(entry, prefix) {
    if (entry.isFile) {
      entry.file(function (f) { enqueue(f, prefix + f.name); }, function () {});
      return;
    }
    if (!entry.isDirectory) return;
    var reader = entry.createReader();
    var more = function () {
      reader.readEntries(function (list) {
        if (list.length === 0) return;
        list.forEach(function (e) { walk(e, prefix + entry.name + "/"); });
        more();
      }, function () {});
    };
    more();
  }
  ["dragenter", "dragover"].forEach(function (type) {
    document.addEventListener(type, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    document.addEventListener(type, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  document.addEventListener("drop", function (e) {
    var items = e.dataTransfer && e.dataTransfer.items;
    if (items && items.length && items[0].webkitGetAsEntry) {
      Array.prototype.forEach.call(items, function (item) {
        if (item.kind !== "file") return;
        // An item without a file-system entry (a drop made by a script, some drags between
        // programs) is still a file: upload it rather than drop it silently.
        var entry = item.webkitGetAsEntry();
        if (entry) walk(entry, "");
        else { var f = item.getAsFile(); if (f) enqueue(f, f.name); }
      });
    } else if (e.dataTransfer) {
      Array.prototype.forEach.call(e.dataTransfer.files, function (f) { enqueue(f, f.name); });
    }
  });
  // The "choose files" and "a folder" labels are focusable: Enter or Space opens their picker.
  Array.prototype.forEach.call(drop.querySelectorAll("label[for]"), function (label) {
    label.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        document.getElementById(label.htmlFor).click();
      }
    });
  });
})();
`;
