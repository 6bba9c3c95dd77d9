// Small SVG charts written by hand: stacked bars, lines, horizontal bars, a share bar and a
// state strip. No dependencies; every text is set with textContent (data is never HTML).
"use strict";

const NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4b5563"];

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function frame(w, h, label) {
  const s = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, class: "chart", role: "img", "aria-label": label });
  s.appendChild(svgEl("title", {}, label));
  return s;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function axis(s, x0, y0, w, h, max, fmt) {
  for (let i = 0; i <= 4; i++) {
    const y = y0 + h - (h * i) / 4;
    s.appendChild(svgEl("line", { x1: x0, x2: x0 + w, y1: y, y2: y, stroke: "#e5e7eb" }));
    s.appendChild(svgEl("text", { x: x0 - 6, y: y + 4, "text-anchor": "end" }, fmt((max * i) / 4)));
  }
}

function legend(items) {
  const d = document.createElement("div");
  d.className = "legend";
  items.forEach(([name, color]) => {
    const sp = document.createElement("span");
    sp.textContent = name;
    sp.style.setProperty("--c", color);
    d.appendChild(sp);
  });
  return d;
}

// categories: [label...]; series: [{name, values: [..], color}] stacked; line: optional {name, values}
function stackedBars(label, categories, series, fmt, line) {
  const W = 640, H = 240, L = 70, T = 10, B = 40, R = 10;
  const w = W - L - R, h = H - T - B;
  const totals = categories.map((_, i) => series.reduce((a, s) => a + (s.values[i] || 0), 0));
  const max = niceMax(Math.max(...totals, ...(line ? line.values : [0]), 0));
  const s = frame(W, H, label);
  axis(s, L, T, w, h, max, fmt);
  const bw = Math.min(48, (w / Math.max(categories.length, 1)) * 0.7);
  categories.forEach((c, i) => {
    const cx = L + (w * (i + 0.5)) / categories.length;
    let y = T + h;
    series.forEach((ser) => {
      const v = ser.values[i] || 0;
      const bh = (h * v) / max;
      if (bh > 0) {
        const r = svgEl("rect", { x: cx - bw / 2, y: y - bh, width: bw, height: bh, fill: ser.color });
        r.appendChild(svgEl("title", {}, `${c} ${ser.name}: ${fmt(v)}`));
        s.appendChild(r);
      }
      y -= bh;
    });
    s.appendChild(svgEl("text", { x: cx, y: T + h + 16, "text-anchor": "middle" }, c));
  });
  if (line && categories.length) {
    const pts = line.values.map((v, i) => `${L + (w * (i + 0.5)) / categories.length},${T + h - (h * v) / max}`);
    s.appendChild(svgEl("polyline", { points: pts.join(" "), fill: "none", stroke: "#111827", "stroke-width": 2,
      "stroke-dasharray": "5 3" }));
    pts.forEach((pt, i) => {  // a marker per day: one day is a point, not a line
      const [x, y] = pt.split(",");
      const dot = svgEl("circle", { cx: x, cy: y, r: 4, fill: "#111827" });
      dot.appendChild(svgEl("title", {}, `${categories[i]} ${line.name}: ${fmt(line.values[i])}`));
      s.appendChild(dot);
    });
  }
  const box = document.createElement("div");
  box.appendChild(s);
  box.appendChild(legend([...series.map((x) => [x.name, x.color]), ...(line ? [[line.name, "#111827"]] : [])]));
  return box;
}

// points: [{x: number, y: number}], marks: [{y, label, color}]
function lineChart(label, points, fmt, marks, yMax) {
  const W = 640, H = 200, L = 70, T = 10, B = 30, R = 10;
  const w = W - L - R, h = H - T - B;
  const max = niceMax(yMax !== undefined ? yMax : Math.max(...points.map((p) => p.y), 0));
  const s = frame(W, H, label);
  axis(s, L, T, w, h, max, fmt);
  const n = Math.max(points.length - 1, 1);
  const xy = (p, i) => `${L + (w * i) / n},${T + h - (h * Math.max(0, p.y)) / max}`;
  if (points.length) {
    s.appendChild(svgEl("polyline", { points: points.map(xy).join(" "), fill: "none", stroke: PALETTE[0],
      "stroke-width": 2 }));
  }
  (marks || []).forEach((m) => {
    const y = T + h - (h * m.y) / max;
    s.appendChild(svgEl("line", { x1: L, x2: L + w, y1: y, y2: y, stroke: m.color, "stroke-dasharray": "6 4" }));
    s.appendChild(svgEl("text", { x: L + w - 4, y: y - 4, "text-anchor": "end", fill: m.color }, m.label));
  });
  return s;
}

// rows: [{label, values: [..]}], names: series names
function hBars(label, rows, names, fmt) {
  const rowH = 16 * names.length + 10, L = 150, W = 640, R = 70;
  const H = Math.max(rowH * rows.length + 10, 30);
  const w = W - L - R;
  const max = niceMax(Math.max(...rows.flatMap((r) => r.values.map((v) => v || 0)), 0));
  const s = frame(W, H, label);
  rows.forEach((r, i) => {
    const y0 = 5 + i * rowH;
    s.appendChild(svgEl("text", { x: L - 8, y: y0 + rowH / 2, "text-anchor": "end" }, r.label));
    r.values.forEach((v, j) => {
      const bw = (w * (v || 0)) / max;
      const rect = svgEl("rect", { x: L, y: y0 + j * 16, width: Math.max(bw, 1), height: 13, fill: PALETTE[j] });
      rect.appendChild(svgEl("title", {}, `${r.label} ${names[j]}: ${v === null ? "-" : fmt(v)}`));
      s.appendChild(rect);
      s.appendChild(svgEl("text", { x: L + bw + 4, y: y0 + j * 16 + 11 }, v === null ? "-" : fmt(v)));
    });
  });
  const box = document.createElement("div");
  box.appendChild(s);
  box.appendChild(legend(names.map((n, j) => [n, PALETTE[j]])));
  return box;
}

// parts: [{name, value, color}]
function shareBar(label, parts) {
  const W = 640, H = 36;
  const total = parts.reduce((a, p) => a + p.value, 0) || 1;
  const s = frame(W, H, label);
  let x = 0;
  parts.forEach((p) => {
    const w = (W * p.value) / total;
    const r = svgEl("rect", { x, y: 4, width: w, height: 28, fill: p.color });
    r.appendChild(svgEl("title", {}, `${p.name}: ${p.value}`));
    s.appendChild(r);
    if (w > 60) s.appendChild(svgEl("text", { x: x + 6, y: 23, fill: "#fff" }, `${p.name} ${Math.round((100 * p.value) / total)}%`));
    x += w;
  });
  const box = document.createElement("div");
  box.appendChild(s);
  box.appendChild(legend(parts.map((p) => [p.name, p.color])));
  return box;
}

// states: [true|false...] over time: a strip, green up / red down
function stateStrip(label, states) {
  const W = 640, H = 24;
  const s = frame(W, H, label);
  const n = Math.max(states.length, 1);
  states.forEach((up, i) => {
    s.appendChild(svgEl("rect", { x: (W * i) / n, y: 2, width: W / n + 0.5, height: 20, fill: up ? "#16a34a" : "#dc2626" }));
  });
  return s;
}

window.Charts = { stackedBars, lineChart, hBars, shareBar, stateStrip, PALETTE };
