// vramroute dashboard. Plain browser JavaScript, no build step, no library.
//
// Safety rule: every piece of record data reaches the page as text (textContent or a
// text node, after `clean`, which shows control and direction-override characters
// escaped). Nothing here assigns innerHTML/outerHTML or builds markup from data, and
// the server's Content-Security-Policy allows no inline script.
"use strict";
(() => {
  const POLL_MS = 2000;
  const HISTORY_MS = 15000;
  const FETCH_TIMEOUT_MS = 8000;
  const MAX_LIVE_SAMPLES = 5000;
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#0a6ed1", "#cf222e", "#116329", "#8250df", "#bc4c00", "#1b7c83", "#6e7781", "#bf3989"];
  const DASHES = ["", "6 3", "2 3", "8 3 2 3"];

  const $ = (id) => document.getElementById(id);

  // Control characters (C0, DEL, C1) and bidi overrides, shown as \uXXXX.
  const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  function clean(v) {
    const s = v === null || v === undefined ? "" : String(v);
    return s.replace(UNSAFE, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  }

  // An element; `props.text` becomes its textContent, other props attributes (cleaned);
  // children are elements or strings (text nodes).
  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") e.textContent = clean(v);
      else if (k === "class") {
        if (v) e.className = v;
      }
      else e.setAttribute(k, clean(v));
    }
    for (const k of kids) {
      if (k === null || k === undefined) continue;
      e.append(typeof k === "string" ? document.createTextNode(clean(k)) : k);
    }
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = clean(text);
    return e;
  }

  const gib = (mb) => (mb === null || mb === undefined ? "unknown" : (mb / 1024).toFixed(1) + " GiB");
  const num = (v, digits) => (v === null || v === undefined ? "—" : Number(v).toFixed(digits));
  function ago(s) {
    if (s === null || s === undefined || !isFinite(s)) return "unknown";
    if (s < 90) return Math.max(0, Math.round(s)) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    return (s / 3600).toFixed(1) + " h ago";
  }
  const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
  const fitName = (f) => (f && typeof f === "object" ? f.kind : f || "—");

  // With `admin_requires_key`, open the page as /#key=KEY: the fragment never leaves the
  // browser, and the key goes with every API request as a bearer token.
  const apiKey = new URLSearchParams(location.hash.slice(1)).get("key");

  async function getJson(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    const headers = { Accept: "application/json" };
    if (apiKey) headers.Authorization = "Bearer " + apiKey;
    try {
      const r = await fetch(path, { signal: ctl.signal, headers });
      let body = null;
      try {
        body = await r.json();
      } catch (_) {
        body = null;
      }
      if (!r.ok) {
        const msg = body && body.error ? body.error : "HTTP " + r.status;
        throw new Error(msg);
      }
      return body;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- status -----------------------------------------------------------------
  function setStatus(kind, text) {
    const s = $("status");
    s.className = "status status-" + kind;
    s.textContent = clean(text);
    document.body.dataset.health = kind;
  }

  // ---- nodes ------------------------------------------------------------------
  function rpcState(view, node) {
    if (!node.rpc) return "no rpc backend";
    const addr = node.rpc.host + ":" + node.rpc.port;
    const b = (view.rpc_backends || []).find((x) => x.host === node.rpc.host && x.port === node.rpc.port);
    if (!b) return addr + " (not registered)";
    if (!b.health) return addr + " (registered, not probed)";
    const h = b.health;
    let s = addr + " " + (h.state || "unknown");
    if (h.version) s += " v" + h.version.join(".");
    if (h.device_count !== null && h.device_count !== undefined) s += ", " + h.device_count + " device(s)";
    return s;
  }

  function gpuItem(g) {
    const total = g.memory_total_mb;
    let used = g.memory_used_mb;
    let free = g.memory_free_mb;
    if (used == null && total != null && free != null) used = Math.max(0, total - free);
    if (free == null && total != null && used != null) free = Math.max(0, total - used);
    const usable = g.memory_usable_mb;
    const reserved = total != null && usable != null && free != null ? Math.min(Math.max(0, total - usable), free) : null;
    const li = el("li", { class: "gpu" });
    li.append(el("div", { class: "gpu-name", text: "GPU " + g.index + ": " + g.name }));
    const label =
      "used " + gib(used) + ", free " + gib(free) +
      (reserved != null ? " (of which " + gib(reserved) + " reserved)" : "") +
      ", total " + gib(total);
    const known = total && used != null;
    const bar = el("div", { class: known ? "bar" : "bar bar-unknown", role: "img", "aria-label": label });
    if (known) {
      const pct = (v) => Math.max(0, Math.min(100, (100 * (v || 0)) / total)).toFixed(2) + "%";
      const seg = (cls, v, name) => {
        const s = el("span", { class: cls, title: name + " " + gib(v) });
        s.style.width = pct(v);
        return s;
      };
      bar.append(seg("seg-used", used, "used"));
      bar.append(seg("seg-free", (free || 0) - (reserved || 0), "free (routable)"));
      bar.append(seg("seg-reserved", reserved, "reserved"));
    }
    li.append(bar);
    li.append(el("div", { class: "gpu-figures", text: label }));
    const meta = [
      "utilization " + (g.utilization_percent == null ? "unknown" : g.utilization_percent + " %"),
      "temperature " + (g.temperature_c == null ? "unknown" : g.temperature_c + " °C"),
    ];
    if (g.ggml_device) meta.push("device " + g.ggml_device);
    li.append(el("div", { class: "gpu-meta", text: meta.join(" · ") }));
    return li;
  }

  function nodeCard(view, n) {
    const card = el("article", { class: "node" + (n.stale ? " stale" : ""), "data-node-id": n.id, "data-stale": n.stale ? "true" : "false", tabindex: "0", "aria-label": "node " + n.id + (n.stale ? " (stale)" : "") });
    const h = el("h3", null, el("span", { class: "node-id", text: n.id }));
    if (n.hostname) h.append(el("span", { class: "note", text: n.hostname }));
    const age = n.age_s; // the daemon recomputes report ages every second
    h.append(
      n.stale
        ? el("span", { class: "badge badge-stale", text: "STALE: no report for " + ago(age).replace(" ago", "") })
        : el("span", { class: "badge badge-fresh", text: "fresh" })
    );
    card.append(h);
    const dl = el("dl");
    const row = (k, v) => dl.append(el("dt", { text: k }), el("dd", { text: v }));
    row("Vendor", n.vendor);
    row("Report age", ago(age) + (n.stale ? " (stale)" : ""));
    row("Writer", n.writer);
    if (n.ollama_url) row("Ollama", n.ollama_url);
    row("RPC backend", rpcState(view, n));
    if (n.gpu_offload) row("GPU offload", n.gpu_offload);
    if (n.cpu_ram_total_mb != null) row("CPU RAM", gib(n.cpu_ram_free_mb) + " free of " + gib(n.cpu_ram_total_mb));
    if (n.note) row("Note", n.note);
    card.append(dl);
    if (n.gpus.length) {
      const ul = el("ul", { class: "gpus", "aria-label": "GPUs of " + n.id });
      for (const g of n.gpus) ul.append(gpuItem(g));
      card.append(ul);
    } else {
      card.append(el("p", { class: "note", text: "No GPU: CPU only." }));
    }
    if (n.loaded_models.length) {
      card.append(el("div", { class: "gpu-meta", text: "Loaded models:" }));
      const ul = el("ul", { class: "models" });
      for (const m of n.loaded_models) {
        ul.append(el("li", { text: m.name + (m.size_vram_mb != null ? " (" + gib(m.size_vram_mb) + " in VRAM)" : "") }));
      }
      card.append(ul);
    } else {
      card.append(el("div", { class: "gpu-meta", text: "Loaded models: none" }));
    }
    return card;
  }

  function renderNodes(view) {
    const box = $("nodes");
    // Keyboard focus survives the refresh: the focused card is focused again.
    const active = document.activeElement;
    const focused = active && active.closest ? active.closest("article.node") : null;
    const focusedId = focused ? focused.dataset.nodeId : null;
    const cards = view.nodes.map((n) => nodeCard(view, n));
    if (!cards.length) cards.push(el("p", { text: "No nodes in the registry yet." }));
    box.replaceChildren(...cards);
    if (focusedId !== null) {
      const again = cards.find((c) => c.dataset && c.dataset.nodeId === focusedId);
      if (again) again.focus({ preventScroll: true });
    }
    const t = view.totals;
    $("totals").textContent = clean(
      t.nodes + " node(s), " + t.stale_nodes + " stale, " + t.gpus + " GPU(s), " +
      gib(t.vram_free_mb) + " VRAM free of " + gib(t.vram_total_mb)
    );
  }

  // ---- history ----------------------------------------------------------------
  let streamPoints = [];
  const livePoints = new Map(); // "node|timestamp" -> point, what this page saw live
  let historyNote = "";

  function rememberLive(view) {
    for (const n of view.nodes) {
      const key = n.id + "|" + n.timestamp;
      if (livePoints.has(key)) continue;
      livePoints.set(key, {
        node_id: n.id,
        timestamp: n.timestamp,
        gpus: n.gpus.map((g) => ({
          index: g.index,
          name: g.name,
          memory_total_mb: g.memory_total_mb,
          memory_used_mb:
            g.memory_used_mb != null ? g.memory_used_mb
              : g.memory_total_mb != null && g.memory_free_mb != null ? Math.max(0, g.memory_total_mb - g.memory_free_mb) : null,
        })),
      });
    }
    while (livePoints.size > MAX_LIVE_SAMPLES) livePoints.delete(livePoints.keys().next().value);
  }

  function series(windowS, group) {
    const since = Date.now() / 1000 - windowS;
    const seen = new Set();
    const all = [];
    for (const p of streamPoints.concat(Array.from(livePoints.values()))) {
      const key = p.node_id + "|" + p.timestamp;
      if (p.timestamp < since || seen.has(key)) continue;
      seen.add(key);
      all.push(p);
    }
    all.sort((a, b) => a.timestamp - b.timestamp);
    const lines = new Map();
    const add = (key, label, t, v) => {
      if (v == null) return;
      if (!lines.has(key)) lines.set(key, { label, pts: [] });
      lines.get(key).pts.push([t, v]);
    };
    for (const p of all) {
      if (group === "node") {
        const known = p.gpus.filter((g) => g.memory_used_mb != null);
        add(p.node_id, p.node_id, p.timestamp, known.length ? known.reduce((s, g) => s + g.memory_used_mb, 0) : null);
      } else {
        for (const g of p.gpus) add(p.node_id + "#" + g.index, p.node_id + " GPU " + g.index + " (" + g.name + ")", p.timestamp, g.memory_used_mb);
      }
    }
    return { since, lines: Array.from(lines.values()) };
  }

  function renderChart() {
    const windowS = Number($("window").value);
    const group = $("group").value;
    const { since, lines } = series(windowS, group);
    const W = 1000, H = 280, L = 64, R = 12, T = 12, B = 30;
    const now = Date.now() / 1000;
    let maxMb = 1024;
    for (const l of lines) for (const [, v] of l.pts) maxMb = Math.max(maxMb, v);
    const maxGib = Math.ceil((maxMb / 1024) * 1.1);
    const x = (t) => L + ((t - since) / (now - since)) * (W - L - R);
    const y = (mb) => T + (1 - mb / 1024 / maxGib) * (H - T - B);
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "chart-title" });
    root.append(svg("title", { id: "chart-title" }, "VRAM used " + (group === "node" ? "per node" : "per GPU") + " over the last " + $("window").selectedOptions[0].textContent));
    for (let i = 0; i <= 4; i++) {
      const v = (maxGib * i) / 4;
      const yy = T + (1 - i / 4) * (H - T - B);
      root.append(svg("line", { x1: L, x2: W - R, y1: yy, y2: yy, stroke: "#d0d7de" }));
      root.append(svg("text", { x: L - 6, y: yy + 4, "text-anchor": "end", "font-size": 12, fill: "#57606a" }, v.toFixed(1) + " GiB"));
    }
    for (let i = 0; i <= 4; i++) {
      const t = since + ((now - since) * i) / 4;
      root.append(svg("text", { x: x(t), y: H - 8, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", "font-size": 12, fill: "#57606a" }, clock(t)));
    }
    const legend = $("chart-legend");
    const items = [];
    lines.forEach((l, i) => {
      const colour = PALETTE[i % PALETTE.length];
      const dash = DASHES[Math.floor(i / PALETTE.length) % DASHES.length];
      const pts = l.pts.map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
      const line = svg("polyline", { points: pts, fill: "none", stroke: colour, "stroke-width": 2, "stroke-dasharray": dash });
      line.append(svg("title", {}, l.label));
      root.append(line);
      if (l.pts.length === 1) root.append(svg("circle", { cx: x(l.pts[0][0]), cy: y(l.pts[0][1]), r: 3, fill: colour }));
      const last = l.pts[l.pts.length - 1][1];
      const sw = el("span", { class: "swatch" });
      sw.style.background = colour;
      items.push(el("li", null, sw, l.label + ": " + gib(last) + " now (" + l.pts.length + " point(s))"));
    });
    if (!items.length) items.push(el("li", { text: "No VRAM figures in this window yet." }));
    legend.replaceChildren(...items);
    $("chart").replaceChildren(root);
    $("history-note").textContent = clean(historyNote);
  }

  async function loadHistory() {
    const windowS = Number($("window").value);
    try {
      const h = await getJson("v1/history?since=-" + windowS + "&limit=5000");
      streamPoints = h.points.concat(h.live);
      historyNote =
        h.points.length + " point(s) from the registry's stats stream" +
        (h.truncated ? " (older ones left out)" : "") +
        (h.skipped ? ", " + h.skipped + " unreadable entr(y/ies) skipped" : "") +
        (h.stream === "none" ? " (this source has no stream: live view only)" : "") +
        ", plus what this page saw live.";
    } catch (e) {
      historyNote = "History from the registry is unavailable (" + e.message + "); showing what this page saw live.";
    }
    renderChart();
  }

  // ---- routing ----------------------------------------------------------------
  function table(caption, head, rows) {
    const t = el("table");
    t.append(el("caption", { text: caption }));
    const tr = el("tr");
    for (const h of head) tr.append(el("th", { scope: "col", text: h }));
    t.append(el("thead", null, tr));
    const body = el("tbody");
    for (const r of rows) {
      const row = el("tr");
      for (const c of r) row.append(el("td", { class: typeof c === "number" ? "num" : "", text: typeof c === "number" ? num(c, 3) : c }));
      body.append(row);
    }
    if (!rows.length) body.append(el("tr", null, el("td", { colspan: String(head.length), text: "none" })));
    t.append(body);
    return el("div", { class: "table-wrap" }, t);
  }

  function renderRoute(a) {
    const box = el("div", { class: "answer", "data-route-model": a.model });
    box.append(el("h3", { text: "Route for " + a.model }));
    const p = a.placement;
    const where = p
      ? "→ " + p.node + (p.gpu != null ? ", GPU " + p.gpu : "") + " (" + p.target + ", " + fitName(p.fit) + ", score " + num(p.score, 3) + ")"
      : "→ no node can take it";
    box.append(el("p", { class: "route-where", text: where }));
    box.append(el("p", { text: "Size " + gib(a.size_mb) + " (" + a.size_source + "), policy " + a.policy }));
    box.append(el("p", { class: "route-reason", text: "Reason: " + a.reason }));
    const ex = a.explanation;
    if (ex) {
      if (ex.no_route) box.append(el("p", { text: "No route: " + ex.no_route }));
      box.append(
        table(
          "Candidates, best first (" + ex.candidates.length + ")",
          ["Node", "Target", "GPU", "Fit", "Score", "Reason", "Score terms"],
          ex.candidates.map((c) => [
            c.node_id, c.target, c.gpu == null ? "—" : String(c.gpu), fitName(c.fit), c.score, c.reason,
            c.terms.map((t) => t.name + "=" + num(t.value, 3)).join(", "),
          ])
        )
      );
      box.append(
        table(
          "Not candidates (" + ex.rejected.length + ")",
          ["Node", "Why"],
          ex.rejected.map((r) => [r.node_id, r.text])
        )
      );
    }
    $("route-result").replaceChildren(box);
  }

  async function routeModel(model, size, policy) {
    const q = new URLSearchParams({ model, explain: "true" });
    if (size) q.set("size_mb", size);
    if (policy) q.set("policy", policy);
    $("route-result").replaceChildren(el("p", { text: "Routing " + model + "…" }));
    try {
      renderRoute(await getJson("v1/route?" + q.toString()));
    } catch (e) {
      $("route-result").replaceChildren(el("p", { class: "error", role: "alert", text: "Cannot route " + model + ": " + e.message }));
    }
    loadDecisions();
  }

  function renderDecisions(d) {
    const rows = d.decisions.map((x) => {
      const tr = el("tr");
      const cells = [
        clock(x.at), x.source, x.model,
        x.node == null ? "none" : x.node + (x.gpu != null ? " GPU " + x.gpu : ""),
        fitName(x.fit), x.score == null ? "—" : num(x.score, 3), x.reason,
      ];
      cells.forEach((c, i) => tr.append(el("td", { class: i === 5 ? "num" : "", text: c })));
      return tr;
    });
    if (!rows.length) rows.push(el("tr", null, el("td", { colspan: "7", text: "No decisions yet." })));
    $("decisions").replaceChildren(...rows);
  }

  async function loadDecisions() {
    try {
      renderDecisions(await getJson("v1/decisions?limit=30"));
    } catch (_) {
      // The status line already says when the coordinator cannot be reached.
    }
  }

  // ---- loops ------------------------------------------------------------------
  async function poll() {
    try {
      const [health, view] = await Promise.all([getJson("healthz"), getJson("v1/nodes")]);
      renderNodes(view);
      rememberLive(view);
      if (health.status === "ok") {
        setStatus("ok", "Live: registry OK, " + health.nodes + " node(s) — updated " + clock(Date.now() / 1000));
      } else {
        setStatus(
          "degraded",
          "DEGRADED: the registry cannot be read (" + (health.error || "unknown error") + "); showing the last view, read " +
            (health.last_ok ? clock(health.last_ok) : "never") + " — updated " + clock(Date.now() / 1000)
        );
      }
      await loadDecisions();
    } catch (e) {
      setStatus("down", "Cannot reach the coordinator (" + e.message + "); retrying every " + POLL_MS / 1000 + " s");
    }
    renderChart();
    setTimeout(poll, POLL_MS);
  }

  async function historyLoop() {
    await loadHistory();
    setTimeout(historyLoop, HISTORY_MS);
  }

  function start() {
    $("window").addEventListener("change", loadHistory);
    $("group").addEventListener("change", renderChart);
    $("history-form").addEventListener("submit", (e) => e.preventDefault());
    $("route-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const model = $("route-model").value.trim();
      if (!model) return;
      const size = $("route-size").value.trim();
      const policy = $("route-policy").value;
      const u = new URL(location.href);
      u.searchParams.set("route", model);
      history.replaceState(null, "", u);
      routeModel(model, size, policy);
    });
    const params = new URLSearchParams(location.search);
    const model = (params.get("route") || "").trim();
    if (model) {
      $("route-model").value = model;
      if (params.get("size_mb")) $("route-size").value = params.get("size_mb");
      if (params.get("policy")) $("route-policy").value = params.get("policy");
      routeModel(model, params.get("size_mb") || "", params.get("policy") || "");
    }
    poll();
    historyLoop();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
