// pgpulse console: a small single-page app on the public API only.
// The API key is typed once, kept in this tab's sessionStorage and sent as
// "Authorization: Bearer <key>"; it never goes into a URL. Pages are hash routes
// (#/hosts, #/host/<name>?range=1h, #/explore?query=...), so a shared link never
// carries a key and the server only ever serves this one static page.
"use strict";

(function () {
  const KEY = "pgpulse.key";
  const RANGES = [["15m", 900], ["1h", 3600], ["6h", 21600], ["24h", 86400], ["7d", 604800],
                  ["30d", 2592000], ["90d", 7776000], ["1y", 31536000]];
  const HOST_CHARTS = [
    ["cpu_percent", "CPU", "%"], ["mem_percent", "Memory", "%"], ["load1", "Load (1 min)", ""],
    ["rootfs_percent", "Root filesystem", "%"], ["disk_read_bps", "Disk read", "B/s"],
    ["disk_write_bps", "Disk write", "B/s"], ["net_rx_bps", "Network in", "B/s"],
    ["net_tx_bps", "Network out", "B/s"]];
  const HEADLINE = ["cpu_percent", "mem_percent", "load1", "disk_read_bps", "disk_write_bps",
                    "net_rx_bps", "net_tx_bps", "rootfs_percent"];
  const FULL_PERCENT = 90;     // a filesystem this full is flagged
  const LIVE_MS = 10000;       // polling period of live pages
  const main = document.getElementById("main");
  let authOff = false;
  let timers = [];             // intervals of the current page, cleared on navigation
  let generation = 0;          // bumps on navigation: late answers of a left page are dropped

  // -- small helpers ---------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
      else if (k in node && typeof v !== "string") node[k] = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function announce(text) { document.getElementById("announce").textContent = text; }
  function fmt(v, unit) {
    if (unit === "num") return fmtValue(v);   // any magnitude: Explore's results
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (unit === "B/s") {
      const units = ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"];
      let i = 0;
      while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
      return `${v.toFixed(v < 10 && i ? 1 : 0)} ${units[i]}`;
    }
    const s = Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
    return unit === "%" ? `${s} %` : s;
  }
  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  }
  function rangeSeconds(name) {
    const r = RANGES.find(([n]) => n === name);
    return r ? r[1] : 3600;
  }
  function tiersText(answer) {
    const parts = (answer.tiers || []).map((t) => t.tier);
    const unique = parts.filter((t, i) => parts.indexOf(t) === i);
    return unique.length > 1 ? unique.join(" → ") : (answer.tier || unique[0] || "?");
  }
  function every(ms, fn) { timers.push(setInterval(fn, ms)); }

  // -- the API ---------------------------------------------------------------------
  class ApiError extends Error {
    // The message of the API's error ({"error": ...}) or of Prometheus's envelope
    // ({"status": "error", "errorType": ..., "error": ...}), else the status.
    constructor(status, body) {
      const object = body !== null && typeof body === "object";
      const text = typeof body === "string" && !body.trimStart().startsWith("<") ? body.trim().slice(0, 300) : "";
      super(object && body.error ? String(body.error) : text || `HTTP ${status}`);
      this.status = status;
      this.body = body;
      this.errorType = object && body.errorType ? String(body.errorType) : null;
    }
  }
  async function api(path, params, options) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
      else if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
    }
    const headers = Object.assign({ Accept: "application/json" }, (options && options.headers) || {});
    const key = sessionStorage.getItem(KEY);
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch(url, Object.assign({}, options || {}, { headers }));
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
    if (!response.ok || (body && body.status === "error" && body.errorType)) {
      if (response.status === 401 && !(options && options.login)) {
        sessionStorage.removeItem(KEY);
        showLogin("Your key was refused (revoked or unknown): log in again.");
      }
      throw new ApiError(response.status, body);
    }
    return body;
  }
  function errorBox(err) {
    const msg = err instanceof ApiError
      ? `${err.message} (${err.errorType ? `${err.errorType}, ` : ""}HTTP ${err.status})` : String(err.message || err);
    return el("p", { class: "error", role: "alert", text: msg });
  }

  // -- charts ----------------------------------------------------------------------
  const PALETTE = ["#1f5fa8", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#0a7c86", "#bf3989",
                   "#57606a", "#fb8500", "#2da44e"];
  function toAligned(series) {
    // uPlot wants one x array and one y array per series, aligned (null where missing).
    const xs = new Set();
    series.forEach((s) => s.points.forEach(([t]) => xs.add(t)));
    const x = Array.from(xs).sort((a, b) => a - b);
    const index = new Map(x.map((t, i) => [t, i]));
    const ys = series.map((s) => {
      const y = new Array(x.length).fill(null);
      s.points.forEach(([t, v]) => { y[index.get(t)] = v; });
      return y;
    });
    return [x, ...ys];
  }
  function chart(container, series, unit, names) {
    container.replaceChildren();
    const points = series.reduce((n, s) => n + s.points.length, 0);
    container.dataset.points = String(points);
    container.dataset.series = String(series.length);
    if (!points) {
      container.append(el("p", { class: "empty", text: "No data in this range" }));
      container.uplot = null;
      return;
    }
    const data = toAligned(series);
    const width = Math.max(280, container.clientWidth || 400);
    const opts = {
      width, height: 180,
      legend: { show: series.length <= 8 },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { size: 64, values: (u, vals) => vals.map((v) => fmt(v, unit)) }],
      series: [{}].concat(series.map((s, i) => ({
        label: names[i], stroke: PALETTE[i % PALETTE.length], width: 1.4, spanGaps: false,
        value: (u, v) => fmt(v, unit),
      }))),
    };
    if (typeof window.uPlot !== "function") {
      container.append(el("p", { class: "error", text: "the chart library did not load: run `make console`" }));
      return;
    }
    container.uplot = new window.uPlot(opts, data, container);
  }

  // -- routing ---------------------------------------------------------------------
  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, query] = raw.split("?");
    return { parts: path.split("/").filter(Boolean).map(decodeURIComponent),
             params: new URLSearchParams(query || "") };
  }
  function setHash(path, params, replace) {
    const q = params.toString();
    const target = `#/${path}${q ? "?" + q : ""}`;
    if (location.hash === target) return;
    if (replace) history.replaceState(null, "", target);
    else location.hash = target;
  }
  const PAGES = { hosts: hostsPage, host: hostPage, explore: explorePage, cardinality: cardinalityPage,
                  usage: usagePage, etl: etlPage, status: statusPage };
  function route() {
    timers.forEach(clearInterval);
    timers = [];
    generation += 1;
    if (!authOff && !sessionStorage.getItem(KEY)) { showLogin(); return; }
    const { parts, params } = parseHash();
    const name = PAGES[parts[0]] ? parts[0] : "hosts";
    document.getElementById("nav").hidden = false;
    document.getElementById("logout").hidden = authOff;
    document.querySelectorAll("#nav a").forEach((a) => {
      const target = a.getAttribute("href").slice(2);
      if (target === name || (name === "host" && target === "hosts")) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    main.replaceChildren();
    PAGES[name](parts.slice(1), params, generation);
  }
  function page(title) {
    document.title = `${title} · pgpulse`;
    const h1 = el("h1", { text: title });
    main.append(h1);
    return h1;
  }
  function current(gen) { return gen === generation; }

  // -- login -----------------------------------------------------------------------
  function showLogin(message) {
    timers.forEach(clearInterval);
    timers = [];
    generation += 1;
    document.getElementById("nav").hidden = true;
    document.getElementById("logout").hidden = true;
    document.title = "Log in · pgpulse";
    main.replaceChildren();
    const input = el("input", { id: "key", name: "key", type: "password", autocomplete: "off",
                                required: true, spellcheck: "false", "aria-describedby": "key-help" });
    const err = el("div", { id: "login-error" });
    const form = el("form", { class: "login", "aria-labelledby": "login-title" },
      el("h1", { id: "login-title", text: "Log in to pgpulse" }),
      el("p", { id: "key-help", class: "muted" },
        "Paste an API key (pgpk_…). `make run` printed an admin key on its first start; ",
        "make another with ", el("code", { text: "pgpulse keys create NAME --scope admin" }), "."),
      el("p", {}, el("label", { for: "key", text: "API key" }), el("br"), input),
      el("p", {}, el("button", { type: "submit", text: "Log in" })),
      err);
    if (message) err.append(el("p", { class: "error", role: "alert", text: message }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const key = input.value.trim();
      err.replaceChildren();
      sessionStorage.setItem(KEY, key);
      try {
        await api("/api/hosts", {}, { login: true });
      } catch (e) {
        sessionStorage.removeItem(KEY);
        err.append(errorBox(e.status === 401 ? new Error(`This key was refused: ${e.message}`) : e));
        input.focus();
        return;
      }
      input.value = "";
      announce("Logged in");
      if (!location.hash || location.hash === "#/") history.replaceState(null, "", "#/hosts");
      route();
      main.focus();
    });
    main.append(form);
    input.focus();
  }
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    showLogin("Logged out.");
  });

  // -- Hosts -----------------------------------------------------------------------
  async function hostsPage(_parts, _params, gen) {
    page("Hosts");
    const body = el("div", { id: "hosts" }, el("p", { class: "muted", text: "Loading hosts…" }));
    main.append(el("p", { class: "muted" },
      "Latest figures of every host sending snapshots; refreshed every ",
      `${LIVE_MS / 1000} s. Choose a host for its charts.`), body);
    async function load() {
      let hosts;
      const latest = {};
      try {
        hosts = (await api("/api/hosts")).hosts;
        const end = Math.floor(Date.now() / 1000);
        const answers = await Promise.all(HEADLINE.map((field) =>
          api("/api/hosts/query", { field, start: end - 900, end, step: "60s", agg: "last" })));
        answers.forEach((a, i) => a.series.forEach((s) => {
          const host = s.labels.host;
          latest[host] = latest[host] || {};
          latest[host][HEADLINE[i]] = s.points.length ? s.points[s.points.length - 1][1] : null;
        }));
      } catch (e) {
        if (current(gen)) body.replaceChildren(errorBox(e));
        return;
      }
      if (!current(gen)) return;
      if (!hosts.length) {
        body.replaceChildren(el("p", {}, "No host has sent a snapshot yet. ",
          "The collector of `make run` sends this machine's within a minute; ",
          "other hosts: run ", el("code", { text: "pgpulse collect" }), " there."));
        return;
      }
      const units = Object.fromEntries(HOST_CHARTS.map(([f, , u]) => [f, u]));
      const head = el("tr", {}, el("th", { scope: "col", text: "Host" }), el("th", { scope: "col", text: "Last seen" }),
        HEADLINE.map((f) => el("th", { scope: "col", class: "num",
          text: HOST_CHARTS.find(([n]) => n === f)[1] })));
      const rows = hosts.map(({ host, last_seen }) => {
        const v = latest[host] || {};
        return el("tr", { "data-host": host },
          el("th", { scope: "row" }, el("a", { href: `#/host/${encodeURIComponent(host)}`, text: host })),
          el("td", { text: ago(last_seen), title: last_seen || "" }),
          HEADLINE.map((f) => {
            const full = f === "rootfs_percent" && v[f] >= FULL_PERCENT;
            return el("td", { class: `num${full ? " bad" : ""}`, "data-field": f },
              fmt(v[f], units[f]), full ? " (nearly full)" : "");
          }));
      });
      body.replaceChildren(el("table", { "aria-label": "Hosts and their latest figures" },
        el("thead", {}, head), el("tbody", {}, rows)));
    }
    await load();
    every(LIVE_MS, load);
  }

  // -- one host --------------------------------------------------------------------
  async function hostPage(parts, params, gen) {
    const host = parts[0] || "";
    page(`Host ${host}`);
    const rangeName = RANGES.some(([n]) => n === params.get("range")) ? params.get("range") : "1h";
    const select = el("select", { id: "range", name: "range" },
      RANGES.map(([n]) => el("option", { value: n, selected: n === rangeName, text: `last ${n}` })));
    select.addEventListener("change", () => {
      setHash(`host/${encodeURIComponent(host)}`, new URLSearchParams({ range: select.value }));
    });
    const live = el("input", { type: "checkbox", id: "live", checked: rangeSeconds(rangeName) <= 86400 });
    const updated = el("span", { class: "muted", id: "updated" });
    main.append(el("p", {}, el("a", { href: "#/hosts", text: "← all hosts" })),
      el("div", { class: "bar" },
        el("label", { for: "range" }, "Range", select),
        el("label", { class: "inline", for: "live" }, live, "Live refresh"),
        updated));
    const grid = el("div", { class: "charts" });
    const figures = HOST_CHARTS.map(([field, title, unit]) => {
      const tier = el("span", { class: "tier", "data-role": "tier", text: "…" });
      const plot = el("div", { class: "plot", "data-role": "plot" });
      const fig = el("figure", { "data-field": field, role: "group", "aria-label": `${title} of ${host}` },
        el("figcaption", {}, el("span", { text: unit ? `${title} (${unit})` : title }), tier), plot);
      grid.append(fig);
      return { field, title, unit, fig, tier, plot };
    });
    const fsBox = el("div", { id: "filesystems" });
    main.append(grid, el("h2", { text: "Filesystems" }), fsBox);

    async function load() {
      const end = Math.floor(Date.now() / 1000);
      const start = end - rangeSeconds(rangeName);
      await Promise.all(figures.map(async (f) => {
        try {
          const a = await api("/api/hosts/query", { field: f.field, host, start, end });
          if (!current(gen)) return;
          const text = tiersText(a);
          f.fig.dataset.tier = a.tier;
          f.fig.dataset.tiers = text;
          f.tier.textContent = `tier ${text} · step ${a.step} s`;
          f.tier.title = "The rollup tier that served this chart (raw samples, 5-minute or 1-hour buckets)";
          chart(f.plot, a.series, f.unit, a.series.map(() => f.title));
          f.plot.setAttribute("role", "img");
          f.plot.setAttribute("aria-label",
            `${f.title} of ${host}, ${f.plot.dataset.points} points from tier ${text}`);
        } catch (e) {
          if (current(gen)) f.plot.replaceChildren(errorBox(e));
        }
      }));
      if (current(gen)) updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    }
    async function loadFilesystems() {
      const end = Math.floor(Date.now() / 1000);
      try {
        const rows = await api("/api/export", { source: "hosts", host, start: end - 900, end, format: "json" });
        if (!current(gen)) return;
        const last = rows.length ? rows[rows.length - 1].data : null;
        const fs = (last && last.filesystems) || {};
        const mounts = Object.keys(fs).sort();
        if (!mounts.length) {
          fsBox.replaceChildren(el("p", { class: "muted", text: "No snapshot in the last 15 minutes." }));
          return;
        }
        fsBox.replaceChildren(el("table", { "aria-label": `Filesystems of ${host}` },
          el("thead", {}, el("tr", {}, ["Mount", "Type", "Used", "Size"].map((t) =>
            el("th", { scope: "col", class: t === "Mount" || t === "Type" ? "" : "num", text: t })))),
          el("tbody", {}, mounts.map((m) => {
            const f = fs[m];
            const full = f.percent >= FULL_PERCENT;
            return el("tr", {}, el("th", { scope: "row", text: m }), el("td", { text: f.fstype || "" }),
              el("td", { class: `num${full ? " bad" : ""}` }, fmt(f.percent, "%"), full ? " (nearly full)" : ""),
              el("td", { class: "num", text: `${(f.total / 1e9).toFixed(1)} GB` }));
          }))));
      } catch (e) {
        if (current(gen)) fsBox.replaceChildren(errorBox(e));
      }
    }
    await Promise.all([load(), loadFilesystems()]);
    every(LIVE_MS, () => { if (live.checked) load(); });
  }

  // -- Explore ---------------------------------------------------------------------
  // The query box speaks PromQL (GET /api/v1/query_range, Prometheus's own API) or,
  // second, the native selector syntax of GET /api/query with its per-step aggregation.
  const STEP_POINTS = 300;     // the automatic step gives about this many points
  const MIN_STEP = 15;         // seconds: no finer automatic step (a common scrape interval)
  const TABLE_ROWS = 1000;     // the table lists at most this many series
  // PromQL's functions and aggregation operators (Prometheus 2.42), offered for completion.
  const PROMQL_WORDS = ["abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan",
    "atanh", "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "cos", "cosh", "count", "count_over_time", "count_values", "day_of_month", "day_of_week",
    "day_of_year", "days_in_month", "deg", "delta", "deriv", "exp", "floor", "group", "histogram_quantile",
    "hour", "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10",
    "log2", "max", "max_over_time", "min", "min_over_time", "minute", "month", "pi", "predict_linear",
    "present_over_time", "quantile", "quantile_over_time", "rad", "rate", "resets", "round", "scalar",
    "sgn", "sin", "sinh", "sort", "sort_desc", "sqrt", "stddev", "stddev_over_time", "stdvar",
    "stdvar_over_time", "sum", "sum_over_time", "tan", "tanh", "time", "timestamp", "topk", "vector", "year"];
  const completionCache = new Map();
  async function cached(key, fn) {
    if (!completionCache.has(key)) completionCache.set(key, fn().catch((e) => { completionCache.delete(key); throw e; }));
    return completionCache.get(key);
  }
  function unclosed(text, open, close) {
    // Where the last `open` without a `close` after it is, or -1.
    const i = text.lastIndexOf(open);
    return i >= 0 && text.indexOf(close, i) < 0 ? i : -1;
  }
  function inString(text) {
    // Whether `text` ends inside a PromQL string ("...", '...' or `...`).
    let quote = null;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quote) {
        if (c === "\\" && quote !== "`") i++;
        else if (c === quote) quote = null;
      } else if (c === '"' || c === "'" || c === "`") quote = c;
    }
    return quote !== null;
  }
  function quoted(value, regex) {
    // A label value as typed between double quotes; after =~ or !~ it is a regular
    // expression, so its metacharacters are escaped to match the value itself.
    const v = regex ? value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") : value;
    return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
  }
  async function suggestionsFor(text, promql) {
    // What to complete at the end of `text`: a metric name (or, in PromQL, a function),
    // a label name or a label value. A selector may sit anywhere in a PromQL expression
    // (`sum by (job) (rate(http_requests_total{job="`): the metric is the name just
    // before the last unclosed brace.
    const brace = unclosed(text, "{", "}");
    if (brace >= 0) {
      const metric = text.slice(0, brace).match(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/);
      const match = metric ? metric[1] : undefined;
      const value = text.slice(brace).match(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)$/);
      if (value) {
        const regex = value[2] === "=~" || value[2] === "!~";
        const values = await cached(`v:${match}:${value[1]}`, () =>
          api(`/api/labels/${encodeURIComponent(value[1])}/values`, { match, limit: 1000 }).then((a) => a.values));
        return { prefix: value[3], kind: "value",
                 items: values.map((v) => ({ text: v, insert: `${quoted(v, regex)}"` }))
                   .filter((it) => it.insert.startsWith(value[3])) };
      }
      if (inString(text.slice(brace))) return null;
      const name = text.slice(brace).match(/[{,]\s*([a-zA-Z_][a-zA-Z0-9_]*)?$/);
      if (name) {
        const prefix = name[1] || "";
        const labels = await cached(`l:${match}`, () => api("/api/labels", { match }).then((a) => a.labels));
        return { prefix, kind: "label",
                 items: labels.filter((l) => l !== "__name__" && l.startsWith(prefix))
                   .map((l) => ({ text: l, insert: `${l}="` })) };
      }
      return null;
    }
    if (inString(text) || unclosed(text, "[", "]") >= 0) return null;   // a string, a range or offset
    if (promql) {
      // Grouping labels: sum by (…), without (…), on (…), ignoring (…), group_left (…).
      const group = text.match(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)$/);
      if (group) {
        const name = group[2].match(/(?:^|,)\s*([a-zA-Z_][a-zA-Z0-9_]*)?$/);
        if (!name) return null;
        const prefix = name[1] || "";
        const labels = await cached("l:", () => api("/api/labels").then((a) => a.labels));
        return { prefix, kind: "label",
                 items: labels.filter((l) => l !== "__name__" && l.startsWith(prefix)).map((l) => ({ text: l, insert: l })) };
      }
    }
    const m = text.match(/(?:^|[^a-zA-Z0-9_:.])([a-zA-Z_:][a-zA-Z0-9_:]*)$/);
    const prefix = m ? m[1] : "";
    // Nothing typed yet: metric names where an expression may start.
    if (!m && text.trim() && !(promql && /(?:[(,+\-*/%^=<>]|\b(?:and|or|unless))\s*$/.test(text))) return null;
    const names = await cached("names", () => api("/api/labels/__name__/values", { limit: 10000 }).then((a) => a.values));
    const words = promql && prefix ? PROMQL_WORDS.filter((w) => w.startsWith(prefix))
      .map((w) => ({ text: `${w}()`, insert: `${w}(`, kind: "function" })) : [];
    return { prefix, kind: "metric",
             items: words.concat(names.filter((n) => n.startsWith(prefix)).map((n) => ({ text: n, insert: n }))) };
  }

  function autoStep(seconds) { return Math.max(MIN_STEP, Math.ceil(seconds / STEP_POINTS)); }
  function durationSeconds(text) {
    // Prometheus's step: seconds, or a duration such as 1m30s; null when neither.
    const t = text.trim();
    if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
    if (!/^(\d+(ms|[smhdwy]))+$/.test(t)) return null;
    const unit = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
    let total = 0;
    t.replace(/(\d+)(ms|[smhdwy])/g, (_, n, u) => { total += Number(n) * unit[u]; });
    return total;
  }
  function promValue(text) {
    // Prometheus sends values as strings, "NaN", "+Inf" and "-Inf" included.
    if (text === "+Inf") return Infinity;
    if (text === "-Inf") return -Infinity;
    return Number(text);
  }
  function seriesName(name, labels) {
    // name{label="value", ...}, labels sorted; `{}` for a series with neither.
    const inner = Object.keys(labels || {}).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(", ");
    return `${name || ""}${inner || !name ? `{${inner}}` : ""}`;
  }
  function fmtValue(v) {
    if (v === null || v === undefined) return "–";
    if (!Number.isFinite(v)) return Number.isNaN(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e9 || a < 1e-3)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  async function promqlQuery(query, start, end, stepText) {
    const a = await api("/api/v1/query_range", { query, start, end, step: stepText });
    const data = a.data || {};
    const result = data.resultType === "matrix" ? data.result || [] : [];
    const series = result.map((r) => {
      const labels = Object.assign({}, r.metric || {});
      const name = labels.__name__;
      delete labels.__name__;
      const values = r.values || [];
      return { name: seriesName(name, labels), last: values.length ? values[values.length - 1][1] : "–",
               points: values.map(([t, v]) => [t, promValue(v)]) };
    });
    // PromQL is evaluated on the raw samples (the rollup tiers serve the native API).
    return { series, warnings: a.warnings || [], tier: "raw", tierText: "raw",
             tierTitle: "PromQL is evaluated on the raw samples", step: durationSeconds(stepText) ?? stepText };
  }
  async function nativeQuery(query, start, end, stepText, agg, by) {
    const a = await api("/api/query", { query, start, end, step: stepText || undefined, agg, by: by || undefined });
    return { series: a.series.map((s) => ({ name: seriesName(s.name, s.labels), points: s.points,
                                             last: s.points.length ? fmt(s.points[s.points.length - 1][1], "") : "–" })),
             warnings: a.warnings || [], tier: a.tier, tierText: tiersText(a),
             tierTitle: "The rollup tier that served the query (raw samples, 5-minute or 1-hour buckets)", step: a.step };
  }

  function explorePage(_parts, params, gen) {
    page("Explore");
    // Old shared links carry agg= and no lang=: they were native selector queries.
    const native0 = params.get("lang") === "native" || (!params.get("lang") && params.has("agg"));
    const lang = el("select", { id: "lang", name: "lang" },
      el("option", { value: "promql", selected: !native0, text: "PromQL" }),
      el("option", { value: "native", selected: native0, text: "selector (native API)" }));
    const input = el("input", { id: "query", name: "query", type: "text", autocomplete: "off",
      spellcheck: "false", role: "combobox", "aria-autocomplete": "list", "aria-expanded": "false",
      "aria-controls": "suggestions", "aria-describedby": "query-help", value: params.get("query") || "" });
    const list = el("ul", { id: "suggestions", role: "listbox", "aria-label": "Completions", hidden: true });
    const rangeName = RANGES.some(([n]) => n === params.get("range")) ? params.get("range") : "1h";
    const range = el("select", { id: "explore-range", name: "range" },
      RANGES.map(([n]) => el("option", { value: n, selected: n === rangeName, text: `last ${n}` })));
    const step = el("input", { id: "step", name: "step", type: "text", value: params.get("step") || "",
      size: 8, spellcheck: "false", "aria-describedby": "step-help" });
    const agg = el("select", { id: "agg", name: "agg" },
      ["avg", "min", "max", "sum", "count", "last", "rate"].map((a) =>
        el("option", { value: a, selected: a === (params.get("agg") || "avg"), text: a })));
    const by = el("input", { id: "by", name: "by", type: "text", value: params.get("by") || "",
      placeholder: "host,zone", size: 14 });
    const aggLabel = el("label", { for: "agg" }, "Aggregation", agg);
    const byLabel = el("label", { for: "by" }, "Group by (labels)", by);
    const help = el("p", { id: "query-help", class: "muted" });
    const stepHelp = el("span", { id: "step-help", class: "sr-only" });
    const form = el("form", { role: "search", "aria-label": "Query" },
      el("div", { class: "bar" },
        el("label", { for: "lang" }, "Language", lang),
        el("label", { for: "query", class: "combo" }, "Query", input, list),
        el("label", { for: "explore-range" }, "Range", range),
        el("label", { for: "step" }, "Step", step, stepHelp),
        aggLabel, byLabel,
        el("button", { type: "submit", text: "Run query" })),
      help);
    const info = el("p", { id: "result-info", class: "muted", "aria-live": "polite" });
    const out = el("div", { id: "result" });
    main.append(form, info, out);

    function native() { return lang.value === "native"; }
    function describe() {
      // The controls and help of the chosen language; agg and by belong to the native API.
      aggLabel.hidden = byLabel.hidden = !native();
      const auto = native() ? "auto" : `auto: ${autoStep(rangeSeconds(range.value))} s`;
      step.placeholder = auto;
      stepHelp.textContent = `Seconds or a duration such as 1m30s; empty for ${auto}`;
      input.placeholder = native() ? 'cpu_temp{host="a"}' : 'sum by (host) (rate(http_requests_total{job="api"}[5m]))';
      help.replaceChildren(native()
        ? "Selector syntax of the native API: a metric name and label matchers (=, !=, =~, !~), aggregated per step. "
        : "PromQL, as Prometheus evaluates it: a selector, functions, aggregations and operators. ",
      "Type for completions of metric names, label names and values; ↑/↓ choose, Enter or Tab take one.");
    }
    lang.addEventListener("change", () => { close(); describe(); });
    range.addEventListener("change", () => { describe(); if (input.value.trim()) form.requestSubmit(); });
    describe();

    // completion
    let options = [];
    let active = -1;
    let pending = 0;
    function close() { list.hidden = true; input.setAttribute("aria-expanded", "false");
                       input.removeAttribute("aria-activedescendant"); options = []; active = -1; }
    function highlight(i) {
      active = i;
      [...list.children].forEach((li, j) => li.setAttribute("aria-selected", j === i ? "true" : "false"));
      if (i >= 0) { input.setAttribute("aria-activedescendant", `opt-${i}`); list.children[i].scrollIntoView({ block: "nearest" }); }
    }
    function accept(i) {
      const o = options[i];
      const before = input.value.slice(0, input.selectionStart);
      const after = input.value.slice(input.selectionStart);
      const head = before.slice(0, before.length - o.prefix.length) + o.insert;
      input.value = head + after;
      input.setSelectionRange(head.length, head.length);
      close();
      complete();
    }
    async function complete() {
      const ticket = ++pending;
      let s;
      try { s = await suggestionsFor(input.value.slice(0, input.selectionStart), !native()); } catch (e) { s = null; }
      if (ticket !== pending) return;
      if (!s || !s.items.length || (s.items.length === 1 && s.items[0].text === s.prefix)) { close(); return; }
      options = s.items.slice(0, 50).map((it) => Object.assign({ prefix: s.prefix }, it));
      list.replaceChildren(...options.map((o, i) => el("li", { id: `opt-${i}`, role: "option",
        "aria-selected": "false", "data-kind": o.kind || s.kind, text: o.text,
        on: { mousedown: (ev) => { ev.preventDefault(); accept(i); } } })));
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      active = -1;
    }
    input.addEventListener("input", complete);
    input.addEventListener("focus", () => { if (!input.value) complete(); });
    input.addEventListener("blur", () => setTimeout(close, 150));
    input.addEventListener("keydown", (ev) => {
      if (list.hidden) return;
      if (ev.key === "ArrowDown") { ev.preventDefault(); highlight(Math.min(active + 1, options.length - 1)); }
      else if (ev.key === "ArrowUp") { ev.preventDefault(); highlight(Math.max(active - 1, 0)); }
      else if ((ev.key === "Enter" || ev.key === "Tab") && active >= 0) { ev.preventDefault(); accept(active); }
      else if (ev.key === "Escape") { ev.preventDefault(); close(); }
    });

    let runs = 0;
    async function run() {
      const query = input.value.trim();
      if (!query) {
        out.replaceChildren(errorBox(new Error(native() ? "Type a selector, e.g. a metric name" : "Type a PromQL expression, e.g. a metric name")));
        return;
      }
      const ticket = ++runs;
      const seconds = rangeSeconds(range.value);
      const end = Math.floor(Date.now() / 1000);
      const start = end - seconds;
      const stepText = step.value.trim() || (native() ? "" : String(autoStep(seconds)));
      info.textContent = "Running…";
      out.setAttribute("aria-busy", "true");
      const t0 = performance.now();
      let r;
      try {
        r = native() ? await nativeQuery(query, start, end, stepText, agg.value, by.value.trim())
          : await promqlQuery(query, start, end, stepText);
      } catch (e) {
        if (!current(gen) || ticket !== runs) return;
        info.textContent = "";
        out.removeAttribute("aria-busy");
        out.replaceChildren(errorBox(e));
        return;
      }
      if (!current(gen) || ticket !== runs) return;
      const ms = Math.round(performance.now() - t0);
      const series = r.series;
      // The chart draws finite numbers; NaN and ±Inf stay in the table as Prometheus wrote them.
      const drawable = series.map((s) => ({ points: s.points.map(([t, v]) => [t, Number.isFinite(v) ? v : null]) }));
      const nPoints = series.reduce((n, s) => n + s.points.length, 0);
      info.replaceChildren(
        el("span", { id: "result-tier", "data-tier": r.tier, title: r.tierTitle, text: `tier ${r.tierText}` }), " · step ",
        el("span", { id: "result-step", "data-step": String(r.step), text: typeof r.step === "number" ? `${r.step} s` : r.step }),
        ` · ${series.length} series · ${nPoints} points · `,
        el("span", { id: "result-time", text: `${ms} ms` }));
      const shown = drawable.slice(0, 10);
      const names = series.slice(0, 10).map((s) => s.name);
      const plot = el("div", { class: "plot", id: "explore-plot", role: "img",
        "aria-label": `Chart of ${shown.length === series.length ? "" : `the first ${shown.length} of `}${series.length} series, tier ${r.tierText}` });
      const warnings = r.warnings.map((w) => el("p", { class: "warn", role: "status", text: `Warning: ${w}` }));
      const listed = series.slice(0, TABLE_ROWS);
      const table = el("table", { id: "series-table", "aria-label": "Series of the result" },
        el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Series" }),
          el("th", { scope: "col", class: "num", text: "Points" }), el("th", { scope: "col", class: "num", text: "Last value" }))),
        el("tbody", {}, listed.map((s) => el("tr", {},
          el("th", { scope: "row", text: s.name }),
          el("td", { class: "num", text: String(s.points.length) }),
          el("td", { class: "num", text: s.last })))));
      out.removeAttribute("aria-busy");
      out.replaceChildren(...warnings, plot,
        series.length > shown.length ? el("p", { class: "muted", text: `The chart shows the first ${shown.length} series.` }) : "",
        table,
        series.length > listed.length ? el("p", { class: "muted", text: `The table lists the first ${listed.length} of ${series.length} series.` }) : "");
      chart(plot, shown, "num", names);
    }
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      close();
      // The query, range and step are in the URL, to share; no reload.
      const p = new URLSearchParams({ query: input.value.trim(), range: range.value });
      if (step.value.trim()) p.set("step", step.value.trim());
      if (native()) {
        p.set("lang", "native");
        p.set("agg", agg.value);
        if (by.value.trim()) p.set("by", by.value.trim());
      }
      setHash("explore", p, true);
      run();
    });
    if (params.get("query")) run();
    input.focus();
  }

  // -- Cardinality -----------------------------------------------------------------
  async function cardinalityPage(_parts, _params, gen) {
    page("Cardinality");
    const box = el("div", {}, el("p", { class: "muted", text: "Loading…" }));
    main.append(box);
    let c;
    try { c = await api("/api/cardinality", { limit: 20 }); } catch (e) { if (current(gen)) box.replaceChildren(errorBox(e)); return; }
    if (!current(gen)) return;
    const share = c.limit ? c.series / c.limit : 0;
    box.replaceChildren(
      el("p", {}, el("label", { for: "series-meter" }, `Series: ${c.series} of the limit ${c.limit} (${(share * 100).toFixed(1)} %) `),
        el("meter", { id: "series-meter", min: 0, max: c.limit, value: c.series, low: c.limit * 0.7, high: c.limit * 0.9, optimum: 0 })),
      el("p", { class: "muted", text: `A metric may hold ${c.per_metric_limit} series; a batch that would pass a limit is refused (429).` }),
      el("h2", { text: "Top metrics by series" }),
      el("table", { id: "card-metrics", "aria-label": "Top metrics by series" },
        el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Metric" }), el("th", { scope: "col", class: "num", text: "Series" }),
          el("th", { scope: "col", class: "num", text: "Share of all" }), el("th", { scope: "col", class: "num", text: "Of the per-metric limit" }))),
        el("tbody", {}, c.metrics.map((m) => {
          const near = m.series / c.per_metric_limit;
          return el("tr", {}, el("th", { scope: "row" }, el("a", { href: `#/explore?query=${encodeURIComponent(m.name)}`, text: m.name })),
            el("td", { class: "num", text: String(m.series) }), el("td", { class: "num", text: `${(m.share * 100).toFixed(1)} %` }),
            el("td", { class: `num${near >= 0.9 ? " bad" : near >= 0.7 ? " warn" : ""}`, text: `${(near * 100).toFixed(1)} %` }));
        }))),
      el("h2", { text: "Top labels by series" }),
      el("table", { id: "card-labels", "aria-label": "Top labels by series" },
        el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Label" }), el("th", { scope: "col", class: "num", text: "Series" }),
          el("th", { scope: "col", class: "num", text: "Distinct values" }))),
        el("tbody", {}, c.labels.map((l) => el("tr", {}, el("th", { scope: "row", text: l.name }),
          el("td", { class: "num", text: String(l.series) }), el("td", { class: `num${l.values >= 0.9 * l.series && l.series > 100 ? " warn" : ""}`, text: String(l.values) }))))));
  }

  // -- Usage -----------------------------------------------------------------------
  async function usagePage(_parts, _params, gen) {
    page("Usage");
    const box = el("div", { id: "usage" }, el("p", { class: "muted", text: "Loading…" }));
    main.append(box);
    let u;
    try { u = await api("/api/usage", { months: 12 }); } catch (e) { if (current(gen)) box.replaceChildren(errorBox(e)); return; }
    if (!current(gen)) return;
    const month = (iso) => new Date(`${iso}T00:00:00Z`).toLocaleDateString(undefined, { year: "numeric", month: "long", timeZone: "UTC" });
    const reset = new Date(u.reset).toLocaleString();
    const share = u.quota ? u.used / u.quota : 0;
    box.replaceChildren(
      u.quota === null
        ? el("p", { id: "usage-summary", text: `Samples stored in ${month(u.month)}: ${u.used} (no monthly quota).` })
        : el("p", { id: "usage-summary" }, el("label", { for: "usage-meter" },
            `Samples stored in ${month(u.month)}: ${u.used} of the quota ${u.quota} (${(share * 100).toFixed(1)} %), ${u.remaining} left `),
          el("meter", { id: "usage-meter", min: 0, max: u.quota, value: u.used, low: u.quota * 0.7, high: u.quota * 0.9, optimum: 0 })),
      el("p", { class: "muted", text: `Tenant ${u.tenant}. Every ingest endpoint counts; a batch that would pass the quota is refused whole (429). The count restarts ${reset}.` }),
      el("table", { id: "usage-months", "aria-label": "Samples stored per month, newest first" },
        el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Month" }), el("th", { scope: "col", class: "num", text: "Samples stored" }))),
        el("tbody", {}, u.months.map((m) => el("tr", { "data-month": m.month }, el("th", { scope: "row", text: month(m.month) }),
          el("td", { class: "num", text: String(m.samples) }))))));
  }

  // -- Readings ETL ----------------------------------------------------------------
  async function etlPage(_parts, _params, gen) {
    page("Readings ETL");
    const runsBox = el("div", { id: "runs" });
    const rejectsBox = el("div", { id: "rejects" });
    const result = el("div", { id: "replay-result", "aria-live": "polite" });
    main.append(el("h2", { text: "Recent runs" }), runsBox, el("h2", { text: "Open rejects" }), result, rejectsBox);
    async function replay(body, button) {
      button.disabled = true;
      result.replaceChildren(el("p", { class: "muted", text: "Replaying…" }));
      try {
        const r = await api("/api/sync/rejects/replay", {}, { method: "POST", body: JSON.stringify(body),
          headers: { "Content-Type": "application/json" } });
        const outcomes = (r.rejects || []).map((x) => `#${x.id}: ${x.outcome || x.status || JSON.stringify(x)}`);
        result.replaceChildren(el("p", { class: "ok", role: "status" },
          `Replayed: ${r.run.loaded} loaded, ${r.run.rejected} rejected again. `, outcomes.join("; ")));
      } catch (e) {
        result.replaceChildren(errorBox(e.status === 403 ? new Error(`Replay needs an admin key: ${e.message}`) : e));
      }
      await load();
    }
    async function load() {
      let runs, rejects;
      try {
        [runs, rejects] = await Promise.all([api("/api/sync/runs", { limit: 20 }), api("/api/sync/rejects", { limit: 100 })]);
      } catch (e) {
        if (current(gen)) runsBox.replaceChildren(errorBox(e));
        return;
      }
      if (!current(gen)) return;
      runsBox.replaceChildren(runs.runs.length ? el("table", { "aria-label": "ETL runs, newest first" },
        el("thead", {}, el("tr", {}, ["Started", "Trigger", "Status", "Claimed", "Loaded", "Rejected", "Error"].map((t) =>
          el("th", { scope: "col", class: ["Claimed", "Loaded", "Rejected"].includes(t) ? "num" : "", text: t })))),
        el("tbody", {}, runs.runs.map((r) => el("tr", {},
          el("td", { text: new Date(r.started_at).toLocaleString(), title: r.id }), el("td", { text: r.trigger }),
          el("td", { class: r.status === "failed" ? "bad" : r.status === "succeeded" ? "ok" : "", text: r.status }),
          el("td", { class: "num", text: String(r.claimed) }), el("td", { class: "num", text: String(r.loaded) }),
          el("td", { class: "num", text: String(r.rejected) }), el("td", { text: r.error || r.warning || "" })))))
        : el("p", { class: "muted", text: "No run yet." }));
      const open = rejects.rejects;
      if (!open.length) { rejectsBox.replaceChildren(el("p", { class: "muted", text: "No open reject." })); return; }
      const all = el("button", { type: "button", class: "secondary", text: `Replay all ${open.length} open rejects` });
      all.addEventListener("click", () => replay({ all: true }, all));
      rejectsBox.replaceChildren(
        el("p", { class: "muted" }, "Fix the cause (the document in MongoDB, or a limit), then replay: the document goes through the ETL again. Replay needs an admin key. ", all),
        el("table", { "aria-label": "Open rejects, newest first" },
          el("thead", {}, el("tr", {}, ["Id", "Rejected", "Document", "Reason", ""].map((t) => el("th", { scope: "col", text: t || "Action" })))),
          el("tbody", {}, open.map((r) => {
            const b = el("button", { type: "button", "aria-label": `Replay reject ${r.id}`, text: "Replay" });
            b.addEventListener("click", () => replay({ ids: [r.id] }, b));
            return el("tr", { "data-reject": String(r.id) }, el("td", { text: String(r.id) }),
              el("td", { text: new Date(r.created_at).toLocaleString() }), el("td", { text: String(r.mongo_id) }),
              el("td", { text: r.reason }), el("td", {}, b));
          }))));
    }
    await load();
  }

  // -- Status ----------------------------------------------------------------------
  function parseMetrics(text) {
    // Prometheus text format: name{labels} value. Only the lines the page shows.
    const out = [];
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/);
      if (!m) continue;
      const labels = {};
      (m[3] || "").replace(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g, (_, k, v) => { labels[k] = v; });
      out.push({ name: m[1], labels, value: Number(m[4]) });
    }
    return out;
  }
  async function statusPage(_parts, _params, gen) {
    page("Status");
    const box = el("div", { id: "status" }, el("p", { class: "muted", text: "Loading…" }));
    const figures = el("div", { id: "figures" });
    main.append(box, el("h2", { text: "Ingest and errors" }), figures);
    let previous = null;
    async function loadMetrics() {
      let text;
      try {
        const r = await fetch("/metrics", { headers: { Accept: "text/plain" } });
        text = await r.text();
      } catch (e) { figures.replaceChildren(errorBox(e)); return; }
      if (!current(gen)) return;
      const m = parseMetrics(text);
      const sum = (name, pred) => m.filter((x) => x.name === name && (!pred || pred(x.labels))).reduce((n, x) => n + x.value, 0);
      const now = { t: performance.now() / 1000, samples: sum("pgpulse_proxy_samples_ingested_total"),
                    snapshots: sum("pgpulse_proxy_snapshots_ingested_total") };
      const rate = (k) => previous ? ((now[k] - previous[k]) / (now.t - previous.t)).toFixed(1) + " /s" : "measuring…";
      const rejected = {};
      m.filter((x) => x.name === "pgpulse_proxy_samples_rejected_total").forEach((x) => { rejected[x.labels.reason] = (rejected[x.labels.reason] || 0) + x.value; });
      const byStatus = {};
      m.filter((x) => x.name === "pgpulse_proxy_requests_total" && Number(x.labels.status) >= 400)
        .forEach((x) => { byStatus[x.labels.status] = (byStatus[x.labels.status] || 0) + x.value; });
      figures.replaceChildren(
        el("table", { "aria-label": "Ingest rates" }, el("tbody", {},
          el("tr", {}, el("th", { scope: "row", text: "Samples ingested" }), el("td", { class: "num", text: String(now.samples) }), el("td", { class: "num", text: rate("samples") })),
          el("tr", {}, el("th", { scope: "row", text: "Snapshots ingested" }), el("td", { class: "num", text: String(now.snapshots) }), el("td", { class: "num", text: rate("snapshots") })))),
        el("h2", { text: "Samples rejected, by reason" }),
        Object.keys(rejected).length ? el("table", { "aria-label": "Samples rejected by reason" }, el("tbody", {},
          Object.entries(rejected).map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: k }), el("td", { class: "num", text: String(v) })))))
          : el("p", { class: "muted", text: "None since the proxy started." }),
        el("h2", { text: "Error answers, by status" }),
        Object.keys(byStatus).length ? el("table", { "aria-label": "Error answers by status" }, el("tbody", {},
          Object.entries(byStatus).map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: k }), el("td", { class: "num", text: String(v) })))))
          : el("p", { class: "muted", text: "None since the proxy started." }),
        el("p", { class: "muted" }, "From ", el("a", { href: "/metrics", text: "/metrics" }), " of this proxy process, since it started."));
      previous = now;
    }
    async function load() {
      let s;
      try { s = await api("/api/status"); } catch (e) { if (current(gen)) box.replaceChildren(errorBox(e)); return; }
      if (!current(gen)) return;
      const lag = (x) => x === null ? "–" : x < 120 ? `${Math.round(x)} s` : x < 7200 ? `${Math.round(x / 60)} min` : `${(x / 3600).toFixed(1)} h`;
      box.replaceChildren(
        el("dl", {},
          el("dt", { text: "Engine" }), el("dd", { id: "engine", text: s.engine || "not migrated" }),
          el("dt", { text: "Schema revision" }), el("dd", { class: s.at_head ? "ok" : "bad",
            text: `${s.revision || "none"}${s.at_head ? " (current)" : ` (head is ${s.head}: run pgpulse migrate)`}` }),
          el("dt", { text: "API keys" }), el("dd", { text: s.auth === "on" ? "required" : "not required (PGPULSE_AUTH=off)" }),
          el("dt", { text: "Readings ETL" }), el("dd", { text: s.etl.on ? "on" : `off: ${s.etl.reason}` })),
        el("h2", { text: "Tiers" }),
        el("table", { id: "tiers", "aria-label": "Rows, newest time and lag of every tier" },
          el("thead", {}, el("tr", {}, ["Relation", "Tier", "Rows", "Newest", "Lag", "Late writes pending"].map((t) =>
            el("th", { scope: "col", class: ["Rows", "Lag", "Late writes pending"].includes(t) ? "num" : "", text: t })))),
          el("tbody", {}, s.tiers.map((t) => el("tr", {}, el("th", { scope: "row", text: t.relation }), el("td", { text: t.tier }),
            el("td", { class: "num", text: String(t.rows) }), el("td", { text: t.newest ? new Date(t.newest).toLocaleString() : "–" }),
            el("td", { class: "num", text: lag(t.lag_seconds) }),
            el("td", { class: "num", text: t.late_writes_pending === null ? "–" : String(t.late_writes_pending) }))))));
    }
    await Promise.all([load(), loadMetrics()]);
    every(5000, loadMetrics);
    every(30000, load);
  }

  // -- start -----------------------------------------------------------------------
  async function start() {
    window.addEventListener("hashchange", route);
    if (!sessionStorage.getItem(KEY)) {
      // A proxy running open (PGPULSE_AUTH=off) needs no key.
      try {
        const r = await fetch("/api/hosts", { headers: { Accept: "application/json" } });
        authOff = r.ok;
      } catch (e) { authOff = false; }
    }
    route();
  }
  start();
})();
