// klp-conform report.html: renders the report embedded in #report-data (report.json's content,
// plus `extras`) into the page. No network, no libraries; data only ever reaches the page as
// text nodes and attribute values, never as markup.
(function () {
  "use strict";
  var root = document.documentElement;

  function showError(message) {
    root.setAttribute("data-status", "error");
    var box = document.getElementById("page-error");
    box.hidden = false;
    box.textContent = "This report could not be rendered: " + message;
  }
  window.addEventListener("error", function (e) { showError(e.message); });

  var data;
  try {
    data = JSON.parse(document.getElementById("report-data").textContent);
  } catch (e) {
    showError("its embedded data does not parse: " + e.message);
    return;
  }
  var report = data.report;
  var extras = data.extras || {};
  var STATUSES = ["pass", "fail", "skip", "error"];
  var LABEL = { pass: "PASS", fail: "FAIL", skip: "SKIP", error: "ERROR" };

  // ---- small DOM helpers -------------------------------------------------------------------
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") node.textContent = v;
        else if (k === "onclick") node.addEventListener("click", v);
        else node.setAttribute(k, v === true ? "" : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function append(node, kid) {
    if (kid === null || kid === undefined || kid === false) return;
    if (Array.isArray(kid)) { kid.forEach(function (k) { append(node, k); }); return; }
    node.appendChild(typeof kid === "string" ? document.createTextNode(kid) : kid);
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function secs(s) { return (s >= 10 ? s.toFixed(1) : s.toFixed(2)) + " s"; }
  function badge(status, extra) {
    return el("span", { "class": "pill st-" + status }, LABEL[status] || status, extra || null);
  }
  function kernelLabel(run) { return run.kernel.release || run.kernel.spec; }

  // A unified diff gets its lines coloured; anything else is plain preformatted text.
  function isDiff(text) {
    return /^(---|\+\+\+|@@) /m.test(text) && /^[+-]/m.test(text);
  }
  function pre(text, cls) {
    if (!isDiff(text)) return el("pre", { "class": cls || null, text: text });
    var p = el("pre", { "class": "diff" + (cls ? " " + cls : "") });
    text.replace(/\n$/, "").split("\n").forEach(function (line) {
      var c = null;
      if (/^@@/.test(line)) c = "hunk";
      else if (/^\+(?!\+\+ )/.test(line)) c = "add";
      else if (/^-(?!-- )/.test(line)) c = "del";
      p.appendChild(el("span", { "class": c, text: line === "" ? "\u00a0" : line }));
    });
    return p;
  }

  // ---- the model: cases (rows) × kernels (columns) -------------------------------------------
  var runs = report.runs || [];
  var rows = [];            // {id, suite, case, spec, cells: [outcome|null per run]}
  var byId = {};
  runs.forEach(function (run, k) {
    (run.cases || []).forEach(function (c) {
      var row = byId[c.id];
      if (!row) {
        row = { id: c.id, suite: c.suite, "case": c["case"], spec: c.spec || [], cells: runs.map(function () { return null; }) };
        byId[c.id] = row;
        rows.push(row);
      }
      row.cells[k] = c;
    });
  });
  var suites = [];
  rows.forEach(function (r) { if (suites.indexOf(r.suite) < 0) suites.push(r.suite); });
  // Keep each suite's cases together, in report order.
  rows.sort(function (a, b) { return suites.indexOf(a.suite) - suites.indexOf(b.suite); });

  function haystack(row) {
    var parts = [row.id, row.suite, row["case"], row.spec.join(" ")];
    row.cells.forEach(function (c) {
      if (!c) return;
      if (c.failure) parts.push(c.failure.step, c.failure.expected, c.failure.actual);
      parts.push(c.skip_reason || "", c.error || "", c.divergence || "");
    });
    return parts.join("\n").toLowerCase();
  }

  // ---- header ---------------------------------------------------------------------------------
  function renderSummary() {
    var s = report.summary || {};
    var box = clear(document.getElementById("summary"));
    STATUSES.forEach(function (st) {
      box.appendChild(el("span", { "class": "pill st-" + st + (s[st] ? "" : " zero"), id: "summary-" + st }, el("b", { text: String(s[st] || 0) }), st === "skip" ? "skipped" : st === "error" ? "errors" : st === "pass" ? "passed" : "failed"));
    });
    var starts = [];
    runs.forEach(function (r) { (r.cases || []).forEach(function (c) { if (c.started_at) starts.push(c.started_at); }); });
    starts.sort();
    var line = runs.length + (runs.length === 1 ? " kernel" : " kernels") + " · " + rows.length + " cases";
    if (starts.length) line += " · started " + starts[0].replace("T", " ").replace(/(\.\d+)?Z$/, " UTC");
    document.getElementById("run-line").textContent = line;
    var files = "Beside this page: report.json (" + (report.schema || "?") + "), junit.xml, kcidb.json and the logs.";
    document.getElementById("footer").textContent = (extras.generated_by ? extras.generated_by + " · " : "") + files;
  }

  // ---- the matrix -------------------------------------------------------------------------------
  var enabled = { pass: true, fail: true, skip: true, error: true };
  var selected = null;      // {id, k}
  var buttons = {};         // id + "@" + k → button

  // The filters start from the query, so CI can link to a view:
  // report.html?status=fail,error&suite=lifecycle&q=EAGAIN
  var query = new URLSearchParams(location.search);

  function renderFilters() {
    var fs = document.getElementById("status-filter");
    var wanted = query.get("status");
    if (wanted) STATUSES.forEach(function (st) { enabled[st] = wanted.split(",").indexOf(st) >= 0; });
    STATUSES.forEach(function (st) {
      var box = el("input", { type: "checkbox", checked: enabled[st], value: st, "aria-label": st });
      var label = el("label", { "class": "toggle st-" + st + (enabled[st] ? "" : " off"), "data-status": st }, box, LABEL[st]);
      box.addEventListener("change", function () {
        enabled[st] = box.checked;
        label.classList.toggle("off", !box.checked);
        applyFilters();
      });
      fs.appendChild(label);
    });
    var sel = document.getElementById("suite-filter");
    suites.forEach(function (s) { sel.appendChild(el("option", { value: s, text: s })); });
    if (suites.indexOf(query.get("suite")) >= 0) sel.value = query.get("suite");
    sel.addEventListener("change", applyFilters);
    var text = document.getElementById("text-filter");
    text.value = query.get("q") || "";
    text.addEventListener("input", applyFilters);
  }

  function renderMatrix() {
    var table = document.getElementById("matrix");
    var head = clear(table.tHead);
    var tr = el("tr", null, el("th", { text: "case" }));
    runs.forEach(function (run) {
      tr.appendChild(el("th", { "class": "kernel", scope: "col" }, kernelLabel(run), el("small", { text: [run.kernel.version, run.accel].filter(Boolean).join(" · ") })));
    });
    head.appendChild(tr);
    var body = clear(table.tBodies[0]);
    var lastSuite = null;
    rows.forEach(function (row) {
      if (row.suite !== lastSuite) {
        lastSuite = row.suite;
        body.appendChild(el("tr", { "class": "suite-row", "data-suite": row.suite }, el("th", { colspan: runs.length + 1, text: row.suite })));
      }
      var divergent = row.cells.some(function (c) { return c && c.divergence; });
      var tr = el("tr", { "class": "case-row", "data-case-id": row.id, "data-suite": row.suite },
        el("td", { "class": "case", title: row.id }, row["case"],
          divergent ? el("span", { "class": "mark-div", title: "diverges from the documented contract", text: "≠" }) : null,
          el("span", { "class": "spec", text: row.spec.join(" ") })));
      row.cells.forEach(function (c, k) {
        var td = el("td", { "class": "cell" });
        if (!c) {
          td.appendChild(el("span", { "class": "absent", text: "—", title: "not run on this kernel" }));
        } else {
          var b = el("button", {
            type: "button", "class": "st-" + c.status, "data-status": c.status, "aria-pressed": "false",
            title: LABEL[c.status] + " on " + kernelLabel(runs[k]),
            onclick: function () { select(row.id, k, true); }
          }, LABEL[c.status], c.started_at ? el("small", { text: secs(c.duration_s) }) : null);
          buttons[row.id + "@" + k] = b;
          td.appendChild(b);
        }
        tr.appendChild(td);
      });
      row.tr = tr;
      row.text = haystack(row);
      body.appendChild(tr);
    });
  }

  function applyFilters() {
    var suite = document.getElementById("suite-filter").value;
    var text = document.getElementById("text-filter").value.trim().toLowerCase();
    var shown = 0;
    var suiteShown = {};
    rows.forEach(function (row) {
      var ok = row.cells.some(function (c) { return c && enabled[c.status]; })
        && (!suite || row.suite === suite)
        && (!text || row.text.indexOf(text) >= 0);
      row.tr.hidden = !ok;
      if (ok) { shown++; suiteShown[row.suite] = true; }
    });
    Array.prototype.forEach.call(document.querySelectorAll("#matrix tr.suite-row"), function (tr) {
      tr.hidden = !suiteShown[tr.getAttribute("data-suite")];
    });
    document.getElementById("matrix-empty").hidden = shown > 0;
    document.getElementById("shown-count").textContent = shown + " of " + rows.length + " cases";
  }

  // ---- one case on one kernel -----------------------------------------------------------------
  function stepNumber(s) { var m = /^(\d+):/.exec(s || ""); return m ? m[1] : null; }
  var PALETTE = ["#2f5bd3", "#4f7be8", "#1f8f8f", "#5a67b8", "#3d8bd4", "#2b6f9e"];

  function timeline(c) {
    var steps = c.steps || [];
    var inSteps = steps.reduce(function (a, s) { return a + s.duration_s; }, 0);
    var rest = Math.max(0, c.duration_s - inSteps);
    var total = Math.max(c.duration_s, inSteps) || 1;
    var failed = c.failure ? stepNumber(c.failure.step) : null;
    var bar = el("div", { "class": "timeline", role: "img", "aria-label": "step timeline" });
    var table = el("table", { "class": "steps" });
    steps.forEach(function (s, i) {
      var isFailed = failed !== null && stepNumber(s.step) === failed;
      var pct = (100 * s.duration_s / total).toFixed(2) + "%";
      bar.appendChild(el("span", { style: "width:" + pct + ";background:" + (isFailed ? "var(--fail)" : PALETTE[i % PALETTE.length]), title: s.step + " — " + secs(s.duration_s) }));
      table.appendChild(el("tr", { "class": isFailed ? "failed" : null },
        el("td", { "class": "step", text: s.step }),
        el("td", { "class": "bar" }, el("span", { style: "width:" + (100 * s.duration_s / (Math.max.apply(null, steps.map(function (x) { return x.duration_s; })) || 1)).toFixed(2) + "%" })),
        el("td", { "class": "secs", text: secs(s.duration_s) })));
    });
    if (rest > 0.005) {
      bar.appendChild(el("span", { "class": "boot", style: "width:" + (100 * rest / total).toFixed(2) + "%", title: "guest boot, logs and power-off — " + secs(rest) }));
      table.appendChild(el("tr", { "class": "muted" }, el("td", { text: "guest boot, logs and power-off" }), el("td"), el("td", { "class": "secs", text: secs(rest) })));
    }
    return [bar, table];
  }

  function renderDetail(row, k) {
    var c = row.cells[k];
    var run = runs[k];
    var d = clear(document.getElementById("detail"));
    d.hidden = false;
    d.setAttribute("data-case-id", row.id);
    d.setAttribute("data-kernel", kernelLabel(run));
    d.setAttribute("data-status", c.status);
    d.appendChild(el("h2", null, badge(c.status), el("span", { "class": "where", text: c.suite + " › " + c["case"] }), el("span", { "class": "muted", text: "on " + kernelLabel(run) })));
    var kv = el("dl", { "class": "kv" });
    function item(k2, v) {
      if (v === null || v === undefined || v === "") return;
      kv.appendChild(el("dt", { text: k2 }));
      kv.appendChild(el("dd", null, v));
    }
    item("id", el("code", { text: c.id }));
    item("SPEC", c.spec && c.spec.length ? c.spec.map(function (s) { return el("span", { "class": "chip", text: s }); }) : null);
    item("duration", c.started_at ? secs(c.duration_s) : "not run");
    item("started", c.started_at || null);
    var logs = Object.keys(c.logs || {});
    item("logs", logs.length ? logs.map(function (name, i) { return [i ? " · " : "", el("a", { href: c.logs[name], text: name })]; }) : null);
    d.appendChild(kv);

    if (c.failure) {
      var f = c.failure;
      d.appendChild(el("div", { "class": "callout fail failure" },
        el("strong", { text: "Failed at step " + f.step + (f.line ? " (line " + f.line + ")" : "") })));
      d.appendChild(el("h3", { text: "expected" }));
      d.appendChild(pre(f.expected));
      d.appendChild(el("h3", { text: "actual" }));
      d.appendChild(pre(f.actual, "actual"));
    }
    if (c.skip_reason) d.appendChild(el("div", { "class": "callout skip-reason" }, el("strong", { text: "Skipped: " }), c.skip_reason));
    if (c.error) {
      d.appendChild(el("div", { "class": "callout error" }, el("strong", { text: "The harness could not judge this case" })));
      d.appendChild(pre(c.error, "error-text"));
    }
    if (c.divergence) d.appendChild(el("div", { "class": "callout divergence" }, el("strong", { text: "Divergence from the documented contract: " }), c.divergence));

    if ((c.notes || []).length) {
      // A user's module (--module): the kernel-log lines that name it, callbacks included.
      d.appendChild(el("h3", { text: "Kernel log of the module" }));
      d.appendChild(pre(c.notes.join("\n"), "notes"));
    }
    if ((c.steps || []).length) {
      d.appendChild(el("h3", { text: "Steps" }));
      append(d, timeline(c));
    }
    var snaps = c.snapshots || [];
    if (snaps.length) {
      d.appendChild(el("h3", { text: "Snapshots" }));
      var t = el("table", { "class": "steps snapshots" });
      snaps.forEach(function (s) {
        var st = { matched: "pass", changed: "fail", "new": "skip", accepted: "skip" }[s.status] || "skip";
        t.appendChild(el("tr", null, el("td", { "class": "step", text: s.name }), el("td", null, el("span", { "class": "pill st-" + st, text: s.status })), el("td", null, el("code", { text: s.file }))));
      });
      d.appendChild(t);
      snaps.forEach(function (s) {
        // The diff of the snapshot that failed the case is already shown as its `actual`.
        var shown = c.failure && c.failure.actual.indexOf(s.diff ? s.diff.trim() : "\u0000") >= 0;
        if (s.diff && !shown) {
          d.appendChild(el("h3", { text: "snapshot " + s.name + ": stored → this run" }));
          d.appendChild(pre(s.diff, "snapshot-diff"));
        }
      });
    }
  }

  function select(id, k, fromClick) {
    var row = byId[id];
    if (!row || !row.cells[k]) return;
    if (selected) {
      var old = buttons[selected.id + "@" + selected.k];
      if (old) old.setAttribute("aria-pressed", "false");
    }
    selected = { id: id, k: k };
    buttons[id + "@" + k].setAttribute("aria-pressed", "true");
    renderDetail(row, k);
    if (fromClick) {
      try { history.replaceState(null, "", "#" + encodeURIComponent(id) + "@" + encodeURIComponent(kernelLabel(runs[k]))); } catch (e) { /* file:// in some browsers */ }
      document.getElementById("detail").scrollIntoView({ behavior: "smooth", block: "nearest" });
    }
  }

  // `#<case id>@<kernel>` opens that cell; otherwise the first failure or error, if any.
  function initialSelection() {
    var h = decodeURIComponent(location.hash.replace(/^#/, ""));
    var at = h.lastIndexOf("@");
    if (at > 0) {
      var id = h.slice(0, at), label = h.slice(at + 1);
      var k = runs.findIndex(function (r) { return kernelLabel(r) === label; });
      if (byId[id] && k >= 0 && byId[id].cells[k]) return select(id, k, false);
    }
    for (var i = 0; i < rows.length; i++) {
      for (var j = 0; j < runs.length; j++) {
        var c = rows[i].cells[j];
        if (c && (c.status === "fail" || c.status === "error")) return select(rows[i].id, j, false);
      }
    }
  }

  // ---- kernels: accelerator, version notes, divergences --------------------------------------
  function renderKernels() {
    var box = clear(document.getElementById("kernels"));
    runs.forEach(function (run, k) {
      var counts = { pass: 0, fail: 0, skip: 0, error: 0 };
      (run.cases || []).forEach(function (c) { counts[c.status]++; });
      var card = el("div", { "class": "card kernel-card", "data-kernel": kernelLabel(run) });
      card.appendChild(el("h3", { text: kernelLabel(run) }));
      card.appendChild(el("div", { "class": "summary" }, STATUSES.filter(function (s) { return counts[s]; }).map(function (s) { return badge(s, el("b", { text: " " + counts[s] })); })));
      var kv = el("dl", { "class": "kv" });
      function item(a, b) { if (b) { kv.appendChild(el("dt", { text: a })); kv.appendChild(el("dd", null, b)); } }
      item("spec", el("code", { text: run.kernel.spec }));
      item("package", run.kernel.version);
      item("config", run.kernel.config ? el("a", { href: run.kernel.config, text: run.kernel.config }) : null);
      item("accelerator", run.accel + (run.accel_note ? " — " + run.accel_note : ""));
      card.appendChild(kv);

      var notes = run.version_notes || [];
      card.appendChild(el("h3", { text: "Version notes" }));
      if (!notes.length) card.appendChild(el("p", { "class": "muted", text: "None: this kernel follows SPEC.md (6.1) where the suites look." }));
      else card.appendChild(el("ul", { "class": "version-notes" }, notes.map(function (n) {
        return el("li", null, el("span", { "class": "chip", text: n.id }), el("code", { text: n.kernels }), " ", n.change, " ", el("span", { "class": "muted", text: "(" + n.source + ")" }));
      })));

      var divs = (run.cases || []).filter(function (c) { return c.divergence; });
      card.appendChild(el("h3", { text: "Divergences from the documented contract" }));
      if (!divs.length) card.appendChild(el("p", { "class": "muted", text: "None." }));
      else card.appendChild(el("ul", { "class": "divergences" }, divs.map(function (c) {
        return el("li", null, el("a", { href: "#" + c.id + "@" + kernelLabel(run), onclick: function (e) { e.preventDefault(); select(c.id, k, true); }, text: c.suite + " › " + c["case"] }), ": ", c.divergence);
      })));
      box.appendChild(card);
    });
  }

  function renderCoverage() {
    var box = clear(document.getElementById("coverage"));
    var cov = report.coverage;
    if (!cov) { box.appendChild(el("p", { "class": "muted", text: "This report has no SPEC coverage." })); return; }
    var n = (cov.covered || []).length;
    box.appendChild(el("p", null, el("strong", { text: n + " of " + cov.total }), " SPEC assertions checked by cases that ran to a verdict (pass or fail)."));
    box.appendChild(el("div", { "class": "bar-cov" }, el("span", { style: "width:" + (cov.total ? (100 * n / cov.total).toFixed(1) : 0) + "%" })));
    box.appendChild(el("div", null, (cov.covered || []).map(function (id) { return el("span", { "class": "chip covered", text: id }); })));
    if ((cov.missing || []).length) {
      box.appendChild(el("h3", { text: "Not covered" }));
      box.appendChild(el("div", null, cov.missing.map(function (id) { return el("span", { "class": "chip missing", text: id }); })));
    }
  }

  // ---- benchmark hook ---------------------------------------------------------------------------
  // extras.benchmarks: [{title, columns: [..], rows: [[..]], note?}] — tables of a benchmark
  // run (html.rs, Extras::benchmarks). Plots can be added here when the benchmark lands.
  function renderBenchmarks(tables) {
    if (!Array.isArray(tables) || !tables.length) return;
    var section = document.getElementById("benchmarks-section");
    var box = clear(document.getElementById("benchmarks"));
    tables.forEach(function (t) {
      box.appendChild(el("h3", { text: t.title }));
      var table = el("table", { "class": "bench" });
      table.appendChild(el("tr", null, (t.columns || []).map(function (c) { return el("th", { text: c }); })));
      (t.rows || []).forEach(function (r) { table.appendChild(el("tr", null, r.map(function (v) { return el("td", { text: String(v) }); }))); });
      box.appendChild(el("div", { "class": "bench" }, table));
      if (t.note) box.appendChild(el("p", { "class": "muted", text: t.note }));
    });
    section.hidden = false;
  }

  renderSummary();
  renderFilters();
  renderMatrix();
  applyFilters();
  renderKernels();
  renderCoverage();
  renderBenchmarks(extras.benchmarks);
  initialSelection();
  if (root.getAttribute("data-status") !== "error") root.setAttribute("data-status", "rendered");
})();
