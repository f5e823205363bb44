// The lab's page: the settings form, the runs, and their curves and boundary, drawn here (SVG
// and canvas) from the server's events. Plain JavaScript, no library, nothing from the network.
"use strict";
(() => {
  const token = new URLSearchParams(location.search).get("token") || "";
  const withToken = (path) => `${path}?token=${encodeURIComponent(token)}`;
  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7"];
  const LIGHT = ["#b3d3ea", "#f6dba6", "#a6dcc9", "#f2c1a6", "#eccbde"];
  const FRAME_MS = 90; // the boundary redraws at most this often, so a fast run is seen to bend
  const state = { form: null, touched: {}, jobs: new Map(), selected: null, compare: null,
                  pictures: [], lastPicture: 0, dirty: false };
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
                                      : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }

  // --- the form ----------------------------------------------------------------------------

  function shownValue(field) {
    if (field.name in state.touched) return state.touched[field.name];
    const dataset = state.touched.dataset || "";
    const own = (state.form.dataset_defaults[dataset] || {})[field.name];
    return own !== undefined ? own : field.default;
  }

  function buildForm(form) {
    state.form = form;
    const root = $("fields");
    for (const group of form.groups) {
      const set = el("fieldset", {}, el("legend", {}, group.title));
      for (const f of group.fields) {
        let input;
        if (f.choices.length) {
          input = el("select", { name: f.name });
          if (f.default === "") input.append(el("option", { value: "" }, "(default)"));
          for (const c of f.choices) input.append(el("option", { value: c }, c));
        } else {
          input = el("input", { name: f.name, type: "text", inputmode: "decimal" });
        }
        input.addEventListener("change", () => {
          state.touched[f.name] = input.value;
          refreshForm();
        });
        const label = el("label", { title: f.help }, el("code", {}, f.flag), input);
        set.append(el("div", { class: "field", id: `field-${f.name}` }, label,
                      el("p", { class: "meaning" }, f.meaning)));
      }
      root.append(set);
    }
    refreshForm();
  }

  function refreshForm() {
    for (const group of state.form.groups) {
      for (const f of group.fields) {
        const input = document.querySelector(`[name="${f.name}"]`);
        input.value = shownValue(f);
        $(`field-${f.name}`).classList.toggle("given", f.name in state.touched);
      }
    }
  }

  function preset(name) {
    const values = state.form.presets[name];
    state.touched = name === "defaults" ? {} : { ...state.touched, ...values };
    refreshForm();
  }

  async function train(event) {
    event.preventDefault();
    const error = $("error");
    const reply = await fetch(withToken("api/runs"), {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ settings: state.touched }) });
    const body = await reply.json();
    error.hidden = reply.ok;
    error.textContent = reply.ok ? "" : `refused: ${body.error}`;
    if (reply.ok) { state.selected = body.number; state.pictures = []; draw(); }
  }

  // --- the events --------------------------------------------------------------------------

  function job(number) {
    if (!state.jobs.has(number)) {
      state.jobs.set(number, { number, loss: [], live: [], epochs: [], findings: [],
                               log: [], given: {}, status: "queued" });
    }
    return state.jobs.get(number);
  }

  const handlers = {
    snapshot(data) {
      state.jobs.clear();
      for (const j of data.jobs) state.jobs.set(j.number, j);
      if (state.selected === null && data.jobs.length) {
        state.selected = data.jobs[data.jobs.length - 1].number;
      }
    },
    job(data) { Object.assign(job(data.number), data); },
    frame(data) {
      // The steps since the last frame: their losses from step `start` on, the live accuracy
      // after each chunk among them, and the plane after the last.
      const j = job(data.number);
      data.step_loss.forEach((v, k) => j.loss.push([data.start + k + 1, v === null ? NaN : v]));
      if (j.loss.length > 20000) j.loss = thin(j.loss, 10000);
      j.live.push(...data.live);
      if (data.plane) {
        j.picture = data.plane;
        if (data.number === state.selected) state.pictures.push(data.plane);
      }
    },
    epoch(data) {
      const j = job(data.number);
      j.epochs.push(...data.rows);
      j.findings = data.findings;
      j.healthy = data.healthy;
    },
    log(data) { job(data.number).log.push(data.line); },
  };

  function listen() {
    const source = new EventSource(withToken("api/events"));
    for (const kind of Object.keys(handlers)) {
      source.addEventListener(kind, (e) => {
        handlers[kind](JSON.parse(e.data));
        state.dirty = true;
      });
    }
    source.onopen = () => { $("connection").textContent = "connected"; };
    source.onerror = () => { $("connection").textContent = "not connected (is the lab running?)"; };
  }

  // --- drawing -----------------------------------------------------------------------------

  function thin(points, most = 1500) {
    if (points.length <= most) return points;
    const out = [], size = points.length / most;
    for (let i = 0; i < most; i++) {
      const part = points.slice(Math.floor(i * size), Math.floor((i + 1) * size));
      const ys = part.map((p) => p[1]).filter(Number.isFinite);
      out.push([part[part.length - 1][0], ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length
                                                    : NaN]);
    }
    return out;
  }

  function chart(svg, series, opts) {
    const W = 460, H = 250, L = 52, R = 10, T = 12, B = 34;
    svg.replaceChildren();
    const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[1]));
    if (!all.length) {
      svg.append(el("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, opts.empty));
      return;
    }
    const log = opts.log && all.every((p) => p[1] > 0);
    const fy = (v) => (log ? Math.log10(v) : v);
    const xs = all.map((p) => p[0]), ys = all.map((p) => fy(p[1]));
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
    let y0 = opts.y0 ?? Math.min(...ys), y1 = opts.y1 ?? Math.max(...ys);
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    const px = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
    const py = (y) => T + (1 - (fy(y) - y0) / (y1 - y0)) * (H - T - B);
    svg.append(el("svg:line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }),
               el("svg:line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    for (const t of [y0, (y0 + y1) / 2, y1]) {
      const v = log ? 10 ** t : t, y = py(v);
      svg.append(el("svg:line", { x1: L, y1: y, x2: W - R, y2: y, class: "grid" }),
                 el("svg:text", { x: L - 4, y: y + 4, "text-anchor": "end" }, opts.tick(v)));
    }
    svg.append(el("svg:text", { x: (L + W) / 2, y: H - 6, "text-anchor": "middle" },
                  `step (${Math.round(x1)} in all)`));
    series.forEach((s) => {
      const pts = s.points.filter((p) => Number.isFinite(p[1]));
      if (s.dots) {
        for (const p of pts) svg.append(el("svg:circle", { cx: px(p[0]), cy: py(p[1]), r: 3,
                                                        class: `s${s.colour}` }));
      } else if (pts.length) {
        svg.append(el("svg:polyline", { class: `s${s.colour}`,
          points: pts.map((p) => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(" ") }));
      }
    });
  }

  function curves(j) {
    return thin(j.loss.map(([step, v]) => [step, v === null ? NaN : v]));
  }

  function drawCharts(a, b) {
    const loss = [{ points: curves(a), colour: 0 }];
    const accuracy = [{ points: a.live.map((p) => [p[0], p[1]]), colour: 0 },
                      { points: a.epochs.filter((r) => r.test_accuracy !== null)
                          .map((r) => [r.epoch * a.steps, r.test_accuracy]), dots: true,
                        colour: 0 }];
    if (b) {
      loss.push({ points: curves(b), colour: 1 });
      accuracy.push({ points: b.live.map((p) => [p[0], p[1]]), colour: 1 });
    }
    const lossSvg = $("loss-chart"), accSvg = $("accuracy-chart");
    const last = (j) => (j.loss.length ? j.loss[j.loss.length - 1][0] : 0);
    const key = `${a.number}:${last(a)}:${a.epochs.length}:${b ? b.number + ":" + last(b) : ""}`;
    if (lossSvg.dataset.key !== key) {
      chart(lossSvg, loss, { log: true, tick: (v) => v.toPrecision(2),
                             empty: "the loss appears here as the run trains" });
      chart(accSvg, accuracy, { y0: 0, y1: 1, tick: (v) => `${Math.round(v * 100)}%`,
                                empty: "the test accuracy appears here" });
      lossSvg.dataset.key = key;
      if (a.loss.length) {
        lossSvg.dataset.draws = Number(lossSvg.dataset.draws) + 1;
        lossSvg.dataset.steps = last(a);
      }
    }
  }

  function drawPlane(j, picture) {
    const fig = $("plane-figure");
    fig.hidden = !j.plane;
    if (!j.plane || !picture) return;
    const { size, extent, points } = j.plane;
    const canvas = $("plane"), ctx = canvas.getContext("2d");
    const cell = canvas.width / size, classes = atob(picture);
    for (let r = 0; r < size; r++) {
      for (let c = 0; c < size; c++) {
        ctx.fillStyle = LIGHT[classes.charCodeAt(r * size + c) % LIGHT.length];
        ctx.fillRect(c * cell, canvas.height - (r + 1) * cell, cell + 0.5, cell + 0.5);
      }
    }
    const [xa, xb, ya, yb] = extent;
    for (const [x, y, k] of points) {
      ctx.fillStyle = COLOURS[k % COLOURS.length];
      ctx.beginPath();
      ctx.arc((x - xa) / (xb - xa) * canvas.width, (1 - (y - ya) / (yb - ya)) * canvas.height,
              2.2, 0, 2 * Math.PI);
      ctx.fill();
    }
    canvas.dataset.draws = Number(canvas.dataset.draws) + 1;
  }

  function pct(v) { return v === null || v === undefined ? "" : `${(v * 100).toFixed(1)}%`; }

  function drawRuns() {
    const body = $("runs").tBodies[0];
    body.replaceChildren();
    for (const j of [...state.jobs.values()].reverse()) {
      const last = j.epochs.length ? j.epochs[j.epochs.length - 1].test_accuracy : null;
      const live = j.live.length ? j.live[j.live.length - 1][1] : null;
      const tick = el("input", { type: "checkbox", "aria-label": `compare with run ${j.number}` });
      tick.checked = state.compare === j.number;
      tick.addEventListener("click", (e) => {
        e.stopPropagation();
        state.compare = tick.checked ? j.number : null;
        draw();
      });
      const actions = el("td");
      if (["queued", "preparing", "running"].includes(j.status)) {
        const stop = el("button", { type: "button", class: "stop" }, "stop");
        stop.addEventListener("click", async (e) => {
          e.stopPropagation();
          await fetch(withToken(`api/runs/${j.number}/stop`), { method: "POST" });
        });
        actions.append(stop);
      } else if (j.folder) {
        actions.append(el("a", { href: withToken(`runs/${j.number}/report.html`),
                                 target: "_blank" }, "its page"));
      }
      const dataset = (j.used && j.used.dataset) || j.given.dataset || "mnist";
      const row = el("tr", { "data-number": j.number, class: j.number === state.selected
                               ? "selected" : "" },
                     el("td", {}, String(j.number)), el("td", {}, dataset),
                     el("td", {}, el("span", { class: `badge ${j.status}` }, j.status)),
                     el("td", {}, pct(last ?? live)), el("td", {}, tick), actions);
      row.addEventListener("click", () => { state.selected = j.number; state.pictures = []; draw(); });
      body.append(row);
    }
  }

  function drawHead(j) {
    const head = $("run-head");
    head.replaceChildren();
    if (!j) return;
    head.append(el("h2", {}, `Run ${j.number}: ${j.status}`));
    if (j.folder) head.append(el("p", {}, "folder: ", el("code", { class: "folder" }, j.folder)));
    if (j.message) head.append(el("p", { class: "message" }, j.message));
    const given = Object.entries(j.given).map(([k, v]) => `--${k.replaceAll("_", "-")} ${v}`);
    head.append(el("p", { class: "quiet" }, given.length ? `given: ${given.join(" ")}`
                                                         : "given: nothing (the defaults)"));
    const box = $("findings");
    box.replaceChildren();
    if (j.findings && j.findings.length) {
      const list = el("ul", { class: "findings" });
      for (const f of j.findings) {
        const href = withToken(f.guide.split("#")[0]) + (f.guide.includes("#")
          ? `#${f.guide.split("#")[1]}` : "");
        list.append(el("li", { "data-code": f.code }, el("span", { class: "message" }, f.message),
                       el("p", { class: "advice" }, f.advice),
                       el("p", { class: "guide" }, el("a", { href, target: "_blank" },
                                                      "What this means, and what to try: the guide"))));
      }
      box.append(el("h3", {}, "What the diagnostics say"), list);
    } else if (j.healthy) {
      box.append(el("p", { class: "quiet" }, `diagnostics: ${j.healthy}`));
    }
    $("log").textContent = (j.log || []).join("\n");
  }

  function drawCompare(a, b) {
    const box = $("compare");
    box.replaceChildren();
    if (!a || !b || !a.used || !b.used) return;
    const row = (name, cls) => el("tr", { class: cls }, el("td", {}, name),
                                  el("td", {}, JSON.stringify(a.used[name])),
                                  el("td", {}, JSON.stringify(b.used[name])));
    const head = () => el("tr", {}, el("th", {}, "setting"), el("th", {}, `run ${a.number}`),
                          el("th", {}, `run ${b.number}`));
    const names = Object.keys(a.used);
    const same = (n) => JSON.stringify(a.used[n]) === JSON.stringify(b.used[n]);
    const differ = el("table", { class: "diff" }, el("caption", {},
      `Run ${a.number} (blue) against run ${b.number} (orange): the settings that differ`), head());
    for (const n of names.filter((n) => !same(n))) differ.append(row(n, "differs"));
    const shared = el("table", { class: "diff" }, head());
    for (const n of names.filter(same)) shared.append(row(n, ""));
    box.append(differ, el("details", {}, el("summary", {}, "the settings they share"), shared));
  }

  function draw() {
    state.dirty = false;
    drawRuns();
    const a = state.jobs.get(state.selected);
    const b = state.compare !== state.selected ? state.jobs.get(state.compare) : undefined;
    drawHead(a);
    if (a) drawCharts(a, b);
    drawCompare(a, b);
    if (a && !state.pictures.length && a.picture && $("plane").dataset.shown !== String(a.number)) {
      state.pictures.push(a.picture);
    }
    if (a) $("plane-figure").hidden = !a.plane;
  }

  function tick(now) {
    if (state.dirty) draw();
    const a = state.jobs.get(state.selected);
    if (a && state.pictures.length && now - state.lastPicture >= FRAME_MS) {
      // Never more than about a second behind: older frames are skipped.
      state.pictures.splice(0, Math.max(0, state.pictures.length - 10));
      drawPlane(a, state.pictures.shift());
      $("plane").dataset.shown = String(a.number);
      state.lastPicture = now;
    }
    requestAnimationFrame(tick);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("form").addEventListener("submit", train);
    $("preset-defaults").addEventListener("click", () => preset("defaults"));
    $("preset-notes").addEventListener("click", () => preset("notes"));
    buildForm(await (await fetch(withToken("api/form"))).json());
    listen();
    requestAnimationFrame(tick);
  });
})();
