// Small SVG charts drawn here: no library, nothing fetched from elsewhere.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// series: [{name, points: [[x, y], ...]}]; x is a time in seconds. Returns an <svg>.
function lineChart(series, { yFormat = String, width = 560, height = 200, yMax = null } = {}) {
  const pad = { left: 64, right: 12, top: 10, bottom: 24 };
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    svg.appendChild(svgEl("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no data yet"));
    return svg;
  }
  const xs = all.map((p) => p[0]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const top = yMax ?? Math.max(...all.map((p) => p[1]), 1);
  const sx = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const sy = (y) => height - pad.bottom - (y / top) * (height - pad.top - pad.bottom);
  for (const frac of [0, 0.5, 1]) {
    const y = sy(top * frac);
    svg.appendChild(svgEl("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "axis" }));
    svg.appendChild(svgEl("text", { x: pad.left - 6, y: y + 4, "text-anchor": "end" }, yFormat(top * frac)));
  }
  for (const [x, anchor] of [[x0, "start"], [x1, "end"]]) {
    svg.appendChild(svgEl("text", { x: sx(x), y: height - 6, "text-anchor": anchor }, shortTime(x)));
  }
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    const path = svgEl("path", { d, class: `s${i}` });
    path.appendChild(svgEl("title", {}, s.name));
    svg.appendChild(path);
    if (s.points.length <= 60) {  // few samples: show each one (a single point draws no line)
      for (const [x, y] of s.points) svg.appendChild(svgEl("circle", { cx: sx(x), cy: sy(y), r: 3, class: `d${i}` }));
    }
  });
  return svg;
}

// bars: [{label, value}] drawn as horizontal bars on one scale.
function barChart(bars, { format = String, width = 560 } = {}) {
  const row = 30, labelWidth = 140, height = bars.length * row + 8;
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const top = Math.max(...bars.map((b) => b.value), 1);
  bars.forEach((b, i) => {
    const y = 4 + i * row;
    const w = (b.value / top) * (width - labelWidth - 110);
    svg.appendChild(svgEl("text", { x: 0, y: y + 16 }, b.label));
    svg.appendChild(svgEl("rect", { x: labelWidth, y, width: Math.max(w, 1), height: row - 10, class: `bar${i % 2}` }));
    svg.appendChild(svgEl("text", { x: labelWidth + w + 6, y: y + 16 }, format(b.value)));
  });
  return svg;
}

function shortTime(seconds) {
  const d = new Date(seconds * 1000);
  return d.toISOString().replace("T", " ").slice(0, 16);
}
