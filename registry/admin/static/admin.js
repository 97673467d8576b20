// The admin page: hash routes over the admin JSON API. DOM built with textContent only (names,
// labels and env values are untrusted text).
"use strict";

const API = "/admin/api";
const main = () => document.getElementById("main");

// -- small helpers ------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    const first = body && body.errors && body.errors[0];
    super(first ? `${first.code}: ${first.message}` : `HTTP ${status}`);
    this.status = status;
    this.code = first ? first.code : null;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(API + path, init);
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(v < 10 ? 2 : 1) : v} ${units[i]}`;
}

function ago(seconds) {
  if (!seconds) return h("span", { class: "muted" }, "never");
  const d = Date.now() / 1000 - seconds;
  const text = d < 60 ? "just now" : d < 3600 ? `${Math.floor(d / 60)} min ago`
    : d < 86400 ? `${Math.floor(d / 3600)} h ago` : `${Math.floor(d / 86400)} d ago`;
  return h("time", { datetime: new Date(seconds * 1000).toISOString(), title: new Date(seconds * 1000).toISOString() }, text);
}

// A time to come (a scheduled run), shown like ago() shows one past.
function soon(seconds) {
  if (!seconds) return h("span", { class: "muted" }, "–");
  const d = seconds - Date.now() / 1000;
  const text = d < 60 ? "within a minute" : d < 3600 ? `in ${Math.floor(d / 60)} min`
    : d < 86400 ? `in ${Math.floor(d / 3600)} h` : `in ${Math.floor(d / 86400)} d`;
  return h("time", { datetime: new Date(seconds * 1000).toISOString(), title: new Date(seconds * 1000).toISOString() }, text);
}

const shortDigest = (d) => d.replace(/^(sha\d+:)(.{12}).*$/, "$1$2");
const repoLink = (name) => `#/repo/${encodeURIComponent(name)}`;
const manifestLink = (name, digest) => `#/manifest/${encodeURIComponent(name)}/${encodeURIComponent(digest)}`;

function toast(text, isError = false) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.className = isError ? "error" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

// A modal confirmation before anything is deleted; resolves true only on the explicit button.
function confirmDialog(title, text, action = "Delete") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = action;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Plain http on another host is not a secure context: fall back to a selected textarea.
    const area = h("textarea", {}, text);
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 1500);
}

function pullCommand(name, reference) {
  const sep = reference.includes(":") ? "@" : ":";
  const command = `docker pull ${location.host}/${name}${sep}${reference}`;
  const button = h("button", { type: "button", class: "copy", onclick: (e) => copyText(command, e.currentTarget) }, "Copy");
  return h("div", { class: "pull" }, h("code", { class: "pull-command", title: command }, command), button);
}

function table(headers, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { class: x.endsWith("#") ? "num" : null }, x.replace(/#$/, ""))))),
    h("tbody", {}, rows));
}

// A "More" button under a list: fetches the page after `next` from `path` and hands it to addRows.
function moreButton(id, label, next, path, addRows) {
  const button = h("button", { type: "button", id, hidden: !next, onclick: async () => {
    const page = await api(`${path}&last=${encodeURIComponent(next)}`);
    addRows(page);
    next = page.next;
    button.hidden = !next;
  } }, label);
  return button;
}

function card(label, value, id) {
  return h("div", { class: "card", id }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

function showError(err) {
  main().replaceChildren(h("p", { class: "error" }, String(err.message || err)));
}

// -- views ------------------------------------------------------------------------------
async function overview() {
  const [storage, history] = await Promise.all([api("/storage"), api("/storage/history?points=40")]);
  const view = [h("h1", {}, "Overview"),
    h("div", { class: "cards" },
      card("Repositories", storage.repositories, "card-repositories"),
      card("Tags", storage.tags, "card-tags"),
      card("Stored (physical)", bytes(storage.physical_bytes), "card-physical"),
      card("Logical (all repositories)", bytes(storage.logical_bytes), "card-logical"),
      card("Saved by deduplication", bytes(storage.dedup_saved_bytes), "card-saved"),
      card("Uploads in progress", storage.uploads, "card-uploads")),
    h("div", { class: "grid2" },
      h("div", { class: "panel" }, h("h2", {}, "Storage growth"),
        h("div", { class: "legend" }, h("span", { class: "k0" }, "logical"), h("span", { class: "k1" }, "physical")),
        lineChart([
          { name: "logical bytes", points: history.points.map((p) => [p.time, p.logical_bytes]) },
          { name: "physical bytes", points: history.points.map((p) => [p.time, p.physical_bytes]) }], { yFormat: bytes }),
        h("p", { class: "muted" }, "Content held now, by when it arrived.")),
      h("div", { class: "panel" }, h("h2", {}, "Deduplication"),
        barChart([{ label: "logical", value: storage.logical_bytes }, { label: "physical", value: storage.physical_bytes }],
          { format: bytes }),
        h("p", {}, storage.dedup_ratio ? `Each stored byte is used ${storage.dedup_ratio}× on average (${storage.blobs} blobs, backend ${storage.backend}).`
          : "Nothing stored yet.")))];
  main().replaceChildren(...view);
  const mirror = await api("/mirror/history").catch(() => null);
  if (mirror) main().append(h("div", { class: "panel" }, h("h2", {}, "Mirror hit rate"), hitRateChart(mirror)));
}

function hitRateChart(history) {
  const series = {};
  const samples = history.samples;
  for (let i = 1; i < samples.length; i++) {
    for (const [alias, now] of Object.entries(samples[i].upstreams)) {
      const before = samples[i - 1].upstreams[alias];
      if (!before) continue;
      const hits = now.hits - before.hits, misses = now.misses - before.misses;
      if (hits + misses === 0) continue;
      (series[alias] = series[alias] || []).push([samples[i].time, (100 * hits) / (hits + misses)]);
    }
  }
  const names = Object.keys(series);
  return h("div", {}, h("div", { class: "legend" }, names.map((n, i) => h("span", { class: `k${i % 2}` }, n))),
    lineChart(names.map((n) => ({ name: n, points: series[n] })), { yFormat: (v) => `${Math.round(v)}%`, yMax: 100 }));
}

async function repositories(params) {
  const q = params.get("q") || "";
  const last = params.get("last") || "";
  const query = new URLSearchParams({ limit: "50" });
  if (q) query.set("q", q);
  if (last) query.set("last", last);
  const page = await api(`/repositories?${query}`);
  const search = h("input", { type: "search", id: "repo-search", placeholder: "Search repositories", value: q });
  const form = h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); location.hash = `#/repositories?q=${encodeURIComponent(search.value)}`; } },
    search, h("button", { type: "submit" }, "Search"));
  const rows = page.repositories.map((r) => h("tr", { dataset: { repository: r.name } },
    h("td", {}, h("a", { href: repoLink(r.name) }, r.name), r.mirror_of ? h("span", { class: "tag mirror-cache", title: `A pull-through cache of upstream ${r.mirror_of}: filled by pulls, never pushed to` }, `mirror of ${r.mirror_of}`) : null),
    h("td", { class: "num" }, r.tag_count),
    h("td", { class: "num size" }, bytes(r.size)),
    h("td", { class: "num" }, bytes(r.unique_size)),
    h("td", {}, ago(r.last_push)),
    h("td", {}, ago(r.last_pull)),
    h("td", {}, h("button", { type: "button", class: "danger delete-repository", onclick: () => deleteRepository(r.name) }, "Delete"))));
  const nav = h("div", { class: "toolbar" },
    last ? h("a", { href: `#/repositories${q ? `?q=${encodeURIComponent(q)}` : ""}` }, "« First page") : null,
    page.next ? h("a", { id: "next-page", href: `#/repositories?${new URLSearchParams({ ...(q ? { q } : {}), last: page.next })}` }, "Next page »") : null);
  main().replaceChildren(h("h1", {}, "Repositories"), form,
    rows.length ? table(["Name", "Tags#", "Size#", "Unique size#", "Last push", "Last pull", ""], rows, { id: "repositories" })
      : h("p", { class: "muted" }, q ? "No repository matches." : "No repositories yet."), nav);
}

async function deleteRepository(name) {
  if (!(await confirmDialog(`Delete repository ${name}?`,
    "Every tag and manifest of this repository goes. Blobs no other repository uses are freed by the next GC."))) return;
  try {
    await api(`/repositories/${name}`, { method: "DELETE" });
    toast(`Deleted ${name}`);
    location.hash = "#/repositories";
    await render();
  } catch (err) { toast(err.message, true); }
}

async function repository(name) {
  const [summary, tags, untagged] = await Promise.all([api(`/repositories/${name}`),
    api(`/repositories/${name}/tags?limit=100`), api(`/repositories/${name}/untagged?limit=100`)]);
  const body = h("tbody", {});
  const addRows = (page) => {
    for (const t of page.tags) {
      body.append(h("tr", { dataset: { tag: t.tag } },
        h("td", {}, h("strong", {}, t.tag), t.immutable ? h("span", { class: "tag immutable", title: `Neither moved nor deleted: ${t.immutable}` }, "immutable") : null),
        h("td", {}, h("a", { href: manifestLink(name, t.digest), class: "mono" }, shortDigest(t.digest))),
        h("td", {}, t.platforms.map((p) => h("span", { class: "tag" }, p))),
        h("td", { class: "num size" }, bytes(t.size)),
        h("td", {}, ago(t.updated_at)),
        h("td", { class: "pushed-by" }, t.pushed_by || h("span", { class: "muted" }, "–")),
        h("td", {}, ago(t.last_pulled_at)),
        h("td", {}, pullCommand(name, t.tag)),
        h("td", {}, h("button", { type: "button", class: "danger delete-tag", disabled: Boolean(t.immutable),
          title: t.immutable ? `Immutable (${t.immutable})` : null, onclick: () => deleteTag(name, t.tag) }, "Delete"))));
    }
  };
  addRows(tags);
  const more = moreButton("more-tags", "More tags", tags.next, `/repositories/${name}/tags?limit=100`, addRows);
  main().replaceChildren(
    h("h1", {}, name),
    ...(summary.mirror_of ? [h("p", { class: "muted mirror-cache" }, `A pull-through cache of upstream ${summary.mirror_of}: filled by pulls through the mirror, never pushed to.`)] : []),
    h("div", { class: "cards" },
      card("Tags", summary.tag_count), card("Manifests", summary.manifest_count),
      card("Size", bytes(summary.size), "repo-size"), card("Unique size", bytes(summary.unique_size)),
      card("Last push", ago(summary.last_push)), card("Last pull", ago(summary.last_pull))),
    h("h2", {}, "Tags"),
    body.children.length ? h("table", { id: "tags" },
      h("thead", {}, h("tr", {}, ["Tag", "Digest", "Platforms", "Size", "Pushed", "Pushed by", "Pulled", "Pull", ""].map((x) => h("th", {}, x)))), body)
      : h("p", { class: "muted", id: "no-tags" }, "No tags."),
    more,
    ...untaggedSection(name, untagged),
    h("div", { class: "toolbar" }, h("button", { type: "button", class: "danger", onclick: () => deleteRepository(name) }, "Delete repository")));
}

// Manifests no tag points at (pushed by digest, or left behind when a tag moved), each with its referrers.
function untaggedSection(name, first) {
  const body = h("tbody", {});
  const referrerLinks = (m) => m.referrers.map((r) => h("a", { href: manifestLink(name, r.digest), class: "tag referrer",
    title: r.digest }, r.artifact_type || r.media_type));
  const addRows = (page) => {
    for (const m of page.manifests) {
      const more = m.referrer_count - m.referrers.length;
      body.append(h("tr", { dataset: { digest: m.digest } },
        h("td", {}, h("a", { href: manifestLink(name, m.digest), class: "mono" }, shortDigest(m.digest))),
        h("td", {}, m.platforms.length ? m.platforms.map((p) => h("span", { class: "tag" }, p))
          : (m.artifact_type || m.media_type),
          m.missing_subject ? h("span", { class: "muted", title: m.missing_subject }, " (its subject is gone)") : null),
        h("td", { class: "num size" }, bytes(m.size)),
        h("td", {}, ago(m.created_at)),
        h("td", {}, ago(m.last_pulled_at)),
        h("td", { class: "referrers" }, m.referrer_count ? [...referrerLinks(m), more > 0 ? ` and ${more} more` : null]
          : h("span", { class: "muted" }, "–")),
        h("td", {}, h("button", { type: "button", class: "danger delete-untagged",
          onclick: () => deleteUntagged(name, m) }, "Delete"))));
    }
  };
  addRows(first);
  const more = moreButton("more-untagged", "More untagged manifests", first.next,
    `/repositories/${name}/untagged?limit=100`, addRows);
  return [h("h2", {}, "Untagged manifests"),
    body.children.length ? h("table", { id: "untagged" },
      h("thead", {}, h("tr", {}, ["Digest", "Platforms or type", "Size", "Pushed", "Pulled", "Referrers", ""].map((x) => h("th", {}, x)))), body)
      : h("p", { class: "muted", id: "no-untagged" }, "No untagged manifests."),
    more];
}

async function deleteUntagged(name, m) {
  const referrers = m.referrer_count ? ` and its ${m.referrer_count} referrer${m.referrer_count === 1 ? "" : "s"}` : "";
  if (!(await confirmDialog(`Delete manifest ${shortDigest(m.digest)}${referrers}?`,
    "They go from the repository at once; blobs nothing else uses are freed by the next GC."))) return;
  try {
    const done = await api(`/repositories/${name}/manifests/${m.digest}${m.referrer_count ? "?referrers=true" : ""}`, { method: "DELETE" });
    toast(`Deleted ${shortDigest(m.digest)}${done.referrers.length ? ` and ${done.referrers.length} referrers` : ""}`);
    await render();
  } catch (err) { toast(err.message, true); }
}

async function deleteTag(name, tag) {
  if (!(await confirmDialog(`Delete tag ${name}:${tag}?`,
    "The tag goes; the manifest stays reachable by digest until GC removes untagged manifests."))) return;
  try {
    await api(`/repositories/${name}/tags/${encodeURIComponent(tag)}`, { method: "DELETE" });
    toast(`Deleted ${name}:${tag}`);
    await render();
  } catch (err) { toast(err.message, true); }
}

async function manifest(name, digest) {
  const m = await api(`/repositories/${name}/manifests/${digest}`);
  const kv = (pairs) => h("dl", { class: "kv" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const parts = [h("h1", {}, `${name}@${shortDigest(digest)}`), pullCommand(name, digest),
    h("div", { class: "panel" }, kv([
      ["Digest", h("span", { class: "mono" }, m.digest)], ["Media type", m.media_type], ["Artifact type", m.artifact_type],
      ["Image size", bytes(m.size)], ["Manifest size", bytes(m.manifest_size)],
      ["Tags", m.tags.length ? m.tags.map((t) => h("span", { class: "tag" }, t)) : "untagged"],
      ["Pushed", ago(m.created_at)], ["Last pull", ago(m.last_pulled_at)],
      ["Subject", m.subject ? h("a", { href: manifestLink(name, m.subject), class: "mono" }, m.subject) : null],
      ["In indexes", m.parents.length ? m.parents.map((p) => h("a", { href: manifestLink(name, p), class: "mono" }, shortDigest(p), " ")) : null]]))];
  if (m.manifests.length) {
    parts.push(h("h2", {}, "Platforms"), table(["Platform", "Digest", "Size#"], m.manifests.map((c) => h("tr", {},
      h("td", {}, c.platform || c.artifact_type || "–"),
      h("td", {}, c.stored ? h("a", { href: manifestLink(name, c.digest), class: "mono" }, shortDigest(c.digest)) : h("span", { class: "mono muted" }, shortDigest(c.digest))),
      h("td", { class: "num" }, bytes(c.size))))));
  }
  if (m.config) {
    const c = m.config;
    parts.push(h("h2", {}, "Config"), h("div", { class: "panel" }, kv([
      ["Created", c.created], ["Platform", [c.os, c.architecture, c.variant].filter(Boolean).join("/")],
      ["Entrypoint", c.entrypoint ? h("code", {}, JSON.stringify(c.entrypoint)) : null],
      ["Cmd", c.cmd ? h("code", {}, JSON.stringify(c.cmd)) : null], ["Working dir", c.working_dir], ["User", c.user],
      ["Ports", c.exposed_ports.join(", ")], ["Env", c.env.length ? h("pre", {}, c.env.join("\n")) : null],
      ["Labels", Object.keys(c.labels).length ? h("pre", {}, Object.entries(c.labels).map(([k, v]) => `${k}=${v}`).join("\n")) : null],
      ["History", `${c.history} steps`]])));
  }
  if (m.layers) {
    const total = m.layers.reduce((a, l) => a + (l.size || 0), 0);
    parts.push(h("h2", {}, `Layers (${m.layers.length}, ${bytes(total)})`), table(["#", "Digest", "Media type", "Size#"],
      m.layers.map((l, i) => h("tr", {}, h("td", {}, i + 1), h("td", { class: "mono" }, shortDigest(l.digest)),
        h("td", { class: "muted" }, l.media_type || ""), h("td", { class: "num" }, bytes(l.size))))));
  }
  parts.push(h("h2", {}, "Referrers"), m.referrers.length ? table(["Artifact type", "Digest", "Size#"], m.referrers.map((r) => h("tr", {},
    h("td", {}, r.artifact_type || r.media_type), h("td", {}, h("a", { href: manifestLink(name, r.digest), class: "mono" }, shortDigest(r.digest))),
    h("td", { class: "num" }, bytes(r.size))))) : h("p", { class: "muted" }, "No signatures, SBOMs or other referrers."));
  if (m.annotations && Object.keys(m.annotations).length) {
    parts.push(h("h2", {}, "Annotations"), h("pre", {}, Object.entries(m.annotations).map(([k, v]) => `${k}=${v}`).join("\n")));
  }
  parts.push(h("div", { class: "toolbar" }, h("button", { type: "button", class: "danger", id: "delete-manifest", onclick: async () => {
    const referrers = m.referrers.length ? ` and its ${m.referrers.length} referrer${m.referrers.length === 1 ? "" : "s"}` : "";
    if (!(await confirmDialog(`Delete manifest ${shortDigest(digest)}${referrers}?`,
      `The manifest, its tags (${m.tags.join(", ") || "none"})${referrers ? " and what refers to it" : ""} go from ${name}.`))) return;
    try {
      await api(`/repositories/${name}/manifests/${digest}${m.referrers.length ? "?referrers=true" : ""}`, { method: "DELETE" });
      toast("Manifest deleted");
      location.hash = repoLink(name);
    } catch (err) { toast(err.message, true); }
  } }, "Delete manifest")));
  main().replaceChildren(...parts);
}

async function uploads() {
  const page = await api("/uploads?limit=200");
  main().replaceChildren(h("h1", {}, "Uploads in progress"), page.uploads.length ? table(
    ["Repository", "Session", "Staged#", "Started", "Last write", "Writing", ""], page.uploads.map((u) => h("tr", {},
      h("td", {}, h("a", { href: repoLink(u.repository) }, u.repository)), h("td", { class: "mono" }, u.id.slice(0, 12) + "…"),
      h("td", { class: "num" }, bytes(u.size)), h("td", {}, ago(u.created_at)), h("td", {}, ago(u.updated_at)),
      h("td", {}, u.writing ? "yes" : "no"),
      h("td", {}, h("button", { type: "button", class: "danger", onclick: async () => {
        if (!(await confirmDialog("Cancel this upload?", `The client pushing to ${u.repository} will have to start over.`, "Cancel upload"))) return;
        try { await api(`/uploads/${encodeURIComponent(u.id)}`, { method: "DELETE" }); toast("Upload cancelled"); await render(); }
        catch (err) { toast(err.message, true); }
      } }, "Cancel"))))) : h("p", { class: "muted" }, "No uploads in progress."),
  page.next ? h("p", { class: "muted" }, "More sessions exist than shown.") : null);
}

async function mirror() {
  let stats;
  try { stats = await api("/mirror"); } catch (err) {
    if (err.status === 404) { main().replaceChildren(h("h1", {}, "Mirror"), h("p", { class: "muted" }, "No upstreams are configured (mirror.upstreams).")); return; }
    throw err;
  }
  const history = await api("/mirror/history");
  const image = h("input", { type: "text", placeholder: "hub/library/alpine:3.20", id: "mirror-image" });
  const act = (path, method, label) => h("button", { type: "button", onclick: async () => {
    try { await api(path, { method, body: { image: image.value } }); toast(`${label}: ${image.value}`); await render(); }
    catch (err) { toast(err.message, true); }
  } }, label);
  main().replaceChildren(h("h1", {}, "Mirror"),
    h("div", { class: "cards" }, card("Cache", bytes(stats.cache_bytes)), card("Cap", stats.cache_cap_bytes ? bytes(stats.cache_cap_bytes) : "none"),
      card("Fetches in progress", stats.fills_in_progress)),
    table(["Upstream", "Hits#", "Misses#", "Hit rate#", "From upstream#", "Served#", "429s#", "Stale serves#"], stats.upstreams.map((u) => h("tr", {},
      h("td", {}, u.alias, " ", h("span", { class: "muted" }, u.url)), h("td", { class: "num" }, u.hits), h("td", { class: "num" }, u.misses),
      h("td", { class: "num" }, u.hits + u.misses ? `${Math.round((100 * u.hits) / (u.hits + u.misses))}%` : "–"),
      h("td", { class: "num" }, bytes(u.bytes_from_upstream)), h("td", { class: "num" }, bytes(u.bytes_served)),
      h("td", { class: "num" }, u.throttled), h("td", { class: "num" }, u.stale_serves)))),
    h("div", { class: "panel" }, h("h2", {}, "Hit rate over time"), hitRateChart(history)),
    h("h2", {}, "Pre-warm and pins"), h("div", { class: "toolbar" }, image, act("/mirror/prewarm", "POST", "Pre-warm"), act("/mirror/pins", "POST", "Pin")),
    stats.pins.length ? table(["Pinned image", ""], stats.pins.map((p) => h("tr", {}, h("td", { class: "mono" }, p),
      h("td", {}, h("button", { type: "button", onclick: async () => {
        if (!(await confirmDialog(`Unpin ${p}?`, "It may then be evicted when the cache is over its cap.", "Unpin"))) return;
        try { await api("/mirror/pins", { method: "DELETE", body: { image: p } }); await render(); } catch (err) { toast(err.message, true); }
      } }, "Unpin"))))) : h("p", { class: "muted" }, "No pins."),
    h("div", { class: "toolbar" }, h("button", { type: "button", class: "danger", disabled: !stats.cache_cap_bytes,
      title: stats.cache_cap_bytes ? "" : "No cap is set (mirror.cache_bytes): nothing is ever over it", onclick: async () => {
      if (!(await confirmDialog("Run an eviction pass now?", `Least recently used cached images are deleted until the cache is under its cap of ${bytes(stats.cache_cap_bytes)}; the next pull of each goes upstream again. Pinned images stay.`, "Evict"))) return;
      try {
        const r = await api("/mirror/evict", { method: "POST" });
        toast(`Eviction: ${r.evicted_links} links, ${bytes(r.freed_bytes)} freed; cache now ${bytes(r.usage_after)}`);
        await render();
      } catch (err) { toast(err.message, true); }
    } }, "Run eviction now")));
}

const MAINTENANCE = [
  { kind: "gc", title: "Garbage collection", text: "Removes manifests and blobs nothing references, and stale uploads." },
  { kind: "retention", title: "Retention", text: "Applies the retention rules to tags and manifests." },
  { kind: "fsck", title: "Consistency check", text: "Checks the database against the stored blobs.", body: { sample: null, repair: false } },
];

// Whether the server has an endpoint at all: a method it does not serve answers 405 on a known
// route and 404 on an unknown one (GET's 404 also means "no report yet").
async function hasEndpoint(path) {
  const response = await fetch(API + path, { method: "OPTIONS", credentials: "same-origin" });
  return response.status !== 404;
}

async function maintenance() {
  const panels = [];
  for (const m of MAINTENANCE) {
    if (!(await hasEndpoint(`/${m.kind}`))) continue;
    const last = await api(`/${m.kind}`).catch(() => null);
    const out = h("div", {}, last ? reportView(last) : h("p", { class: "muted" }, "No run yet."));
    const run = (dryRun) => h("button", { type: "button", class: dryRun ? null : "primary", id: `${m.kind}-${dryRun ? "dry" : "run"}`, onclick: async (e) => {
      const button = e.currentTarget;
      if (!dryRun && !(await confirmDialog(`Run ${m.title.toLowerCase()} now?`, `${m.text} This deletes for real.`, "Run"))) return;
      button.disabled = true;
      try { out.replaceChildren(reportView(await api(`/${m.kind}`, { method: "POST", body: { ...(m.body || {}), dry_run: dryRun } }))); }
      catch (err) { toast(err.message, true); }
      finally { button.disabled = false; }
    } }, dryRun ? "Dry run" : "Run");
    panels.push(h("div", { class: "panel", id: `maintenance-${m.kind}` }, h("h2", {}, m.title), h("p", { class: "muted" }, m.text),
      h("div", { class: "toolbar" }, run(true), run(false)), out));
  }
  main().replaceChildren(h("h1", {}, "Maintenance"), ...(panels.length ? panels : [h("p", { class: "muted" }, "This server has no maintenance endpoints.")]));
}

// Immutable-tag rules: the configuration's (read-only here) and those added through the API.
async function immutable() {
  const { rules } = await api("/immutable-tags");
  const repositories = h("input", { type: "text", id: "immutable-repositories", placeholder: "prod/**", required: true });
  const tags = h("input", { type: "text", id: "immutable-tags", placeholder: "v*", required: true });
  const form = h("form", { class: "toolbar", id: "immutable-add", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const rule = await api("/immutable-tags", { method: "POST", body: { repositories: repositories.value, tags: tags.value } });
      toast(`Immutable: ${rule.repositories} ${rule.tags}`);
      await render();
    } catch (err) { toast(err.message, true); }
  } }, repositories, tags, h("button", { type: "submit", class: "primary" }, "Add rule"));
  const rows = rules.map((r) => h("tr", { dataset: { source: r.source, id: r.id === null ? "" : r.id } },
    h("td", { class: "mono" }, r.repositories), h("td", { class: "mono" }, r.tags),
    h("td", {}, r.source === "config" ? h("span", { class: "muted" }, "configuration (immutable_tags)") : "admin API"),
    h("td", {}, r.created_at ? ago(r.created_at) : "–"), h("td", {}, r.created_by || "–"),
    h("td", {}, r.source === "config" ? h("span", { class: "muted", title: "Change it in the configuration" }, "read-only")
      : h("button", { type: "button", class: "danger delete-rule", onclick: async () => {
        if (!(await confirmDialog(`Delete the rule ${r.repositories} ${r.tags}?`,
          "Tags it holds can then be moved and deleted again, in every process at once."))) return;
        try { await api(`/immutable-tags/${r.id}`, { method: "DELETE" }); toast("Rule deleted"); await render(); }
        catch (err) { toast(err.message, true); }
      } }, "Delete"))));
  main().replaceChildren(h("h1", {}, "Immutable tags"),
    h("p", { class: "muted" }, "A tag a rule holds, once pushed, is neither moved to another image nor deleted, and retention keeps it. ",
      "Repositories: * and ? within a path segment, ** across segments (prod/** is everything under prod/). Tags: *, ?, [...]. ",
      "A mirror's cache follows its upstream and is never held."),
    form,
    rows.length ? table(["Repositories", "Tags", "Source", "Added", "By", ""], rows, { id: "immutable-rules" })
      : h("p", { class: "muted", id: "no-rules" }, "No rules: every tag can be moved and deleted."));
}

function reportView(r) {
  const d = r.deleted || {};
  return h("div", {}, h("p", {}, `${r.dry_run ? "Dry run" : "Run"} finished `, ago(r.finished_at),
    `: ${d.manifests || 0} manifests, ${d.tags || 0} tags, ${d.blobs || 0} blobs${r.dry_run ? " would go" : " deleted"}, ${bytes(r.freed_bytes || 0)} ${r.dry_run ? "to free" : "freed"}.`),
  (r.problems || []).length ? h("pre", { class: "error" }, r.problems.map((p) => JSON.stringify(p)).join("\n")) : null,
  (r.items || []).length ? h("pre", {}, r.items.slice(0, 200).map((i) => (typeof i === "string" ? i : JSON.stringify(i))).join("\n")) : null);
}

async function notifications() {
  const { endpoints } = await api("/notifications");
  if (!endpoints.length) {
    main().replaceChildren(h("h1", {}, "Webhooks"), h("p", { class: "muted" }, "No webhook endpoints are configured (notifications.endpoints)."));
    return;
  }
  const rows = endpoints.map((e) => {
    const result = h("span", { class: "test-result muted" });
    return h("tr", { dataset: { endpoint: e.name } },
      h("td", {}, h("strong", {}, e.name), e.disabled ? h("span", { class: "tag" }, "disabled") : null, h("div", { class: "muted mono" }, e.url),
        e.sender ? h("div", { class: "muted sender" }, `sent by ${e.sender}`) : null),
      h("td", { class: "num sent" }, e.sent), h("td", { class: "num failed" }, e.failed),
      h("td", { class: "num pending" }, e.pending_capped ? `${e.pending}+` : e.pending),
      h("td", { class: "last-success" }, ago(e.last_success_at)),
      h("td", { class: "last-error" }, e.last_error ? h("span", { class: "error", title: e.last_error }, e.last_error, " ", ago(e.last_failure_at)) : "–"),
      h("td", {}, h("button", { type: "button", class: "send-test", onclick: async (ev) => {
        const button = ev.currentTarget;
        button.disabled = true;
        try {
          const r = await api(`/notifications/${encodeURIComponent(e.name)}/test`, { method: "POST" });
          result.textContent = r.delivered ? `delivered (${r.status})` : `not delivered: ${r.error}`;
          result.className = `test-result ${r.delivered ? "" : "error"}`;
        } catch (err) { toast(err.message, true); }
        finally { button.disabled = false; }
      } }, "Send test event"), " ", result));
  });
  main().replaceChildren(h("h1", {}, "Webhooks"),
    h("p", { class: "muted" }, "Every push, pull, mount and delete goes to each endpoint in CNCF Distribution's envelope, in order, at least once; counters are shared by all registry processes."),
    table(["Endpoint", "Sent#", "Failed#", "Pending#", "Last success", "Last error", ""], rows, { id: "endpoints" }));
}

const AUDIT_ACTIONS = ["push", "pull", "mount", "delete", "login", "denied", "admin"];
const AUDIT_FILTERS = ["repository", "actor", "action", "since", "until"];

// A datetime-local input's value (local time) as seconds since the epoch, and back.
const toEpoch = (value) => (value ? String(Math.floor(new Date(value).getTime() / 1000)) : "");
function fromEpoch(seconds) {
  if (!seconds) return "";
  const d = new Date(Number(seconds) * 1000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function who(actor) {
  if (actor.kind === "anonymous") return h("span", {}, "anonymous", h("span", { class: "muted" }, ` ${actor.address || ""}`));
  return h("span", {}, actor.name || actor.kind, actor.kind === "robot" ? h("span", { class: "tag" }, "robot") : null,
    actor.address ? h("span", { class: "muted" }, ` ${actor.address}`) : null);
}

function auditDetail(e) {
  const d = e.detail || {};
  const parts = [];
  if (e.from_repository) parts.push(`from ${e.from_repository}`);
  if (d.reason) parts.push(d.reason);
  if (d.action) parts.push(`wanted ${d.action}`);
  if (d.method && d.path) parts.push(`${d.method} ${d.path}${d.status ? ` → ${d.status}` : ""}`);
  if (e.size !== null && e.size !== undefined) parts.push(bytes(e.size));
  return parts.join("; ");
}

async function audit(params) {
  const query = new URLSearchParams();
  for (const k of [...AUDIT_FILTERS, "before"]) if (params.get(k)) query.set(k, params.get(k));
  query.set("limit", "100");
  const page = await api(`/audit?${query}`);
  const input = (name, attrs) => h("input", { name, id: `audit-${name}`, value: params.get(name) || "", ...attrs });
  const action = h("select", { name: "action", id: "audit-action" }, h("option", { value: "" }, "any action"),
    AUDIT_ACTIONS.map((a) => h("option", { value: a, selected: params.get("action") === a }, a)));
  const since = input("since-local", { type: "datetime-local", value: fromEpoch(params.get("since")), title: "from" });
  const until = input("until-local", { type: "datetime-local", value: fromEpoch(params.get("until")), title: "until" });
  const repository = input("repository", { type: "text", placeholder: "repository" });
  const actor = input("actor", { type: "text", placeholder: "who (account name)" });
  const chosen = () => {
    const q = new URLSearchParams();
    if (repository.value) q.set("repository", repository.value);
    if (actor.value) q.set("actor", actor.value);
    if (action.value) q.set("action", action.value);
    if (since.value) q.set("since", toEpoch(since.value));
    if (until.value) q.set("until", toEpoch(until.value));
    return q;
  };
  const form = h("form", { class: "toolbar", id: "audit-filters", onsubmit: (e) => { e.preventDefault(); location.hash = `#/audit?${chosen()}`; } },
    repository, actor, action, since, until, h("button", { type: "submit", class: "primary" }, "Filter"));
  const filtersNow = new URLSearchParams();
  for (const k of AUDIT_FILTERS) if (params.get(k)) filtersNow.set(k, params.get(k));
  const exportLink = (format) => h("a", { href: `${API}/audit/export?${new URLSearchParams({ ...Object.fromEntries(filtersNow), format })}`, id: `audit-export-${format}`, download: `audit.${format}` }, `Export ${format.toUpperCase()}`);
  const rows = page.entries.map((e) => h("tr", { dataset: { action: e.action, outcome: e.outcome, seq: e.seq } },
    h("td", {}, h("time", { datetime: e.timestamp, title: e.timestamp }, new Date(e.time * 1000).toLocaleString())),
    h("td", {}, h("strong", {}, e.action), " ", h("span", { class: `tag outcome outcome-${e.outcome}` }, e.outcome)),
    h("td", { class: "who" }, who(e.actor)),
    h("td", {}, e.repository ? h("a", { href: repoLink(e.repository) }, e.repository) : h("span", { class: "muted" }, e.target)),
    h("td", { class: "mono reference", title: e.digest || "" }, e.tag || (e.digest ? shortDigest(e.digest) : "")),
    h("td", { class: "muted detail" }, auditDetail(e))));
  const older = page.next ? h("a", { id: "audit-older", href: `#/audit?${new URLSearchParams({ ...Object.fromEntries(filtersNow), before: page.next })}` }, "Older »") : null;
  main().replaceChildren(h("h1", {}, "Audit"), form,
    h("div", { class: "toolbar" }, exportLink("csv"), exportLink("json"),
      params.get("before") ? h("a", { href: `#/audit?${filtersNow}` }, "« Newest") : null, older),
    rows.length ? table(["When", "What", "Who", "Repository", "Reference", "Detail"], rows, { id: "audit" })
      : h("p", { class: "muted", id: "no-audit" }, "No entries match."));
}

// -- replication ------------------------------------------------------------------------
// Rules of the configuration (read-only here) and of the API (edited here), runs on request and
// their history. While a run is asked for or going on, the rules and the history refresh every
// second; the form is left alone, so nothing typed in it is lost.
const RULE_TEXTS = ["url", "username", "ca_file", "versions", "destination_prefix", "schedule"];
const RULE_LISTS = ["repositories", "tags", "platforms"];
const RULE_FLAGS = { on_push: false, delete: false, referrers: true, enabled: true };
let replicationView = null;  // the view shown now: a refresh of an older one stops there
let replicationTimer = null;

const ruleLink = (name) => `#/replication?rule=${encodeURIComponent(name)}`;
const statusTag = (status) => h("span", { class: `tag status status-${status}` }, status);
const runFigures = (run) => `${run.manifests} manifests, ${run.blobs} blobs, ${bytes(run.bytes)}, ${run.mounted} mounted, ${run.errors} errors`;
const commaList = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

function seconds(s) {
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function ruleFilters(r) {
  return [["repositories", r.repositories.join(", ")], ["tags", r.tags.join(", ")], ["versions", r.versions],
    ["platforms", r.platforms.join(", ")], ["prefix", r.destination_prefix]]
    .filter(([, v]) => v).map(([k, v]) => h("div", {}, h("span", { class: "muted" }, `${k} `), h("span", { class: "mono" }, v)));
}

function ruleTrigger(r) {
  const ways = [r.schedule ? `schedule ${r.schedule}` : null, r.on_push ? "on push" : null].filter(Boolean);
  return ways.length ? ways.join("; ") : h("span", { class: "muted" }, "manual only");
}

// Running or asked for now, then the last finished run: its status, when, and what it moved.
function ruleState(r) {
  const now = r.running ? "running" : r.run_requested_at ? "requested" : null;
  const last = r.last_run && r.last_run.status !== "running" ? r.last_run : null;
  return [now ? h("div", {}, statusTag(now)) : null,
    last ? h("div", {}, statusTag(last.status), " ", ago(last.finished_at)) : null,
    last ? h("div", { class: "muted figures" }, runFigures(last)) : null,
    now || last ? null : h("span", { class: "muted" }, "never run")];
}

function ruleRow(r, actions) {
  const state = h("td", { class: "state" }, ruleState(r));
  const run = h("button", { type: "button", class: "run-rule", onclick: (e) => actions.run(r, e.currentTarget, state) }, "Run now");
  const editable = r.origin === "api";
  return h("tr", { dataset: { rule: r.name, origin: r.origin } },
    h("td", {}, h("a", { href: ruleLink(r.name), class: "rule-name" }, h("strong", {}, r.name))),
    h("td", { class: "direction" }, r.invalid ? h("span", { class: "error" }, r.invalid)
      : [`${r.direction} ${r.direction === "pull" ? "from" : "to"} `, h("span", { class: "mono" }, r.url),
        r.username ? h("div", { class: "muted" }, `as ${r.username}`) : null]),
    h("td", { class: "filters" }, r.invalid ? "–" : ruleFilters(r)),
    h("td", { class: "trigger" }, r.invalid ? "–" : ruleTrigger(r)),
    h("td", { class: "enabled" }, r.invalid ? "–" : r.enabled ? "yes" : h("span", { class: "muted" }, "no")),
    h("td", { class: "origin" }, r.origin === "config" ? h("span", { class: "muted" }, "configuration (replication.rules)") : "admin API"),
    state,
    h("td", { class: "next-run" }, soon(r.next_run_at)),
    h("td", { class: "actions" }, run, " ",
      editable ? [r.invalid ? null : h("button", { type: "button", class: "edit-rule", onclick: () => actions.edit(r) }, "Edit"), " ",
        h("button", { type: "button", class: "danger delete-rule", onclick: () => actions.remove(r) }, "Delete")]
        : h("span", { class: "muted", title: "Change it in the configuration" }, "read-only")));
}

// A run's row and, under it, its errors, skipped and copied lines (hidden until asked for).
function runRows(run, expanded) {
  const d = run.detail || {};
  const sections = [["Errors", d.errors, "error"], ["Skipped", d.skipped, null], ["Copied", d.copied, null]]
    .filter(([, lines]) => lines && lines.length);
  const detail = h("tr", { class: "run-detail", dataset: { detailOf: run.id }, hidden: !expanded.has(run.id) },
    h("td", { colspan: 14 }, sections.length ? sections.map(([title, lines, cls]) => h("div", { class: `run-${title.toLowerCase()}` },
      h("h3", {}, `${title} (${lines.length})`), h("pre", { class: cls }, lines.join("\n"))))
      : h("span", { class: "muted" }, run.status === "running" ? "Still running." : "Nothing recorded.")));
  const toggle = h("button", { type: "button", class: "run-toggle", onclick: () => {
    detail.hidden = !detail.hidden;
    if (detail.hidden) expanded.delete(run.id); else expanded.add(run.id);
    toggle.textContent = detail.hidden ? "Details" : "Hide";
  } }, expanded.has(run.id) ? "Hide" : "Details");
  const num = (v) => h("td", { class: "num" }, v);
  return [h("tr", { dataset: { run: run.id, rule: run.rule, status: run.status } },
    num(run.id), h("td", {}, h("a", { href: ruleLink(run.rule) }, run.rule)), h("td", {}, run.trigger),
    h("td", { class: "status" }, statusTag(run.status)), h("td", {}, ago(run.started_at)),
    num(run.finished_at ? seconds(run.finished_at - run.started_at) : "–"),
    num(run.manifests), num(run.blobs), h("td", { class: "num bytes" }, bytes(run.bytes)), num(run.mounted),
    num(run.present), num(run.deleted), h("td", { class: "num errors" }, run.errors), h("td", {}, toggle)), detail];
}

function runsSection(first, path, only, expanded) {
  const body = h("tbody", {});
  const addRows = (page) => { for (const run of page.runs) body.append(...runRows(run, expanded)); };
  addRows(first);
  const more = moreButton("more-runs", "More runs", first.next, path, addRows);
  return [h("h2", {}, only ? `Runs of ${only}` : "Runs"),
    only ? h("p", {}, h("a", { href: "#/replication", id: "all-runs" }, "« Runs of every rule")) : null,
    body.children.length ? h("table", { id: "replication-runs" },
      h("thead", {}, h("tr", {}, ["Run", "Rule", "Trigger", "Status", "Started", "Took", "Manifests", "Blobs", "Bytes",
        "Mounted", "Present", "Deleted", "Errors", ""].map((x) => h("th", {}, x)))), body)
      : h("p", { class: "muted", id: "no-runs" }, "No runs yet."),
    more];
}

// The form that adds a rule or replaces one of the API's; `rulesNow()` is the list shown, `saved()`
// refreshes it.
function ruleForm(rulesNow, saved) {
  const inputs = { name: h("input", { type: "text", id: "rule-name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}", placeholder: "from-dc1" }),
    direction: h("select", { id: "rule-direction" }, h("option", { value: "pull" }, "pull (copy from the remote to here)"),
      h("option", { value: "push" }, "push (copy from here to the remote)")),
    url: h("input", { type: "url", id: "rule-url", required: true, placeholder: "an http(s) URL: the registry's root" }),
    username: h("input", { type: "text", id: "rule-username", autocomplete: "off" }),
    password: h("input", { type: "password", id: "rule-password", autocomplete: "new-password" }),
    ca_file: h("input", { type: "text", id: "rule-ca_file", placeholder: "/etc/registry/dc1-ca.pem" }),
    repositories: h("input", { type: "text", id: "rule-repositories", placeholder: "** (every repository)" }),
    tags: h("input", { type: "text", id: "rule-tags", placeholder: "* (every tag)" }),
    versions: h("input", { type: "text", id: "rule-versions", placeholder: ">=1.2 <2" }),
    platforms: h("input", { type: "text", id: "rule-platforms", placeholder: "every platform" }),
    destination_prefix: h("input", { type: "text", id: "rule-destination_prefix", placeholder: "dc1/" }),
    schedule: h("input", { type: "text", id: "rule-schedule", placeholder: "every 10m, @daily or 0 3 * * *" }),
    concurrency: h("input", { type: "number", id: "rule-concurrency", min: 1, max: 32, required: true }) };
  for (const k of Object.keys(RULE_FLAGS)) inputs[k] = h("input", { type: "checkbox", id: `rule-${k}` });
  const title = h("h2", { id: "rule-form-title" }, "Add a rule");
  const error = h("p", { class: "error", id: "rule-form-error", role: "alert" });
  const cancel = h("button", { type: "button", id: "rule-cancel", hidden: true, onclick: () => fill(null) }, "Cancel editing");
  let editing = null;
  const field = (label, key, hint) => h("label", { for: `rule-${key}` }, label, inputs[key], hint ? h("small", {}, hint) : null);
  const check = (label, key) => h("label", { class: "check", for: `rule-${key}` }, inputs[key], label);

  function fill(rule) {
    editing = rule ? rule.name : null;
    inputs.name.value = rule ? rule.name : "";
    inputs.name.readOnly = Boolean(rule);
    inputs.direction.value = rule ? rule.direction : "pull";
    for (const k of RULE_TEXTS) inputs[k].value = rule ? rule[k] : "";
    for (const k of RULE_LISTS) inputs[k].value = rule ? rule[k].join(", ") : "";
    for (const [k, v] of Object.entries(RULE_FLAGS)) inputs[k].checked = rule ? rule[k] : v;
    inputs.concurrency.value = rule ? rule.concurrency : 4;
    inputs.password.value = "";
    inputs.password.placeholder = !rule ? "" : rule.password_set ? "stored: leave empty to keep it" : "none stored";
    title.textContent = rule ? `Edit rule ${rule.name}` : "Add a rule";
    cancel.hidden = !rule;
    error.textContent = "";
  }

  function body() {
    const rule = { name: inputs.name.value.trim(), direction: inputs.direction.value, concurrency: Number(inputs.concurrency.value) };
    for (const k of RULE_TEXTS) rule[k] = inputs[k].value.trim();
    for (const k of RULE_LISTS) rule[k] = commaList(inputs[k].value);
    for (const k of Object.keys(RULE_FLAGS)) rule[k] = inputs[k].checked;
    if (inputs.password.value) rule.password = inputs.password.value;  // left out: the stored one stays
    return rule;
  }

  const form = h("form", { class: "panel rule-form", id: "rule-form", onsubmit: async (e) => {
    e.preventDefault();
    const rule = body();
    error.textContent = "";
    if (!editing && rulesNow().some((r) => r.name === rule.name)) {
      error.textContent = `A rule named ${rule.name} exists already: edit it instead.`;
      return;
    }
    try {
      await api(`/replication/rules/${encodeURIComponent(rule.name)}`, { method: "PUT", body: rule });
      toast(`${editing ? "Saved" : "Added"} rule ${rule.name}`);
      fill(null);
      await saved();
    } catch (err) { error.textContent = err.message; }
  } },
  h("div", { class: "fields" },
    field("Name", "name"), field("Direction", "direction"), field("Remote registry URL", "url"),
    field("Username", "username"), field("Password", "password"), field("CA file (on the server)", "ca_file"),
    field("Repositories", "repositories", "comma-separated; * within a segment, ** across"),
    field("Tags", "tags", "comma-separated shell globs"), field("Versions", "versions", "a semver range tags must satisfy"),
    field("Platforms", "platforms", "comma-separated, e.g. linux/amd64, linux/arm64/v8"),
    field("Destination prefix", "destination_prefix"), field("Schedule", "schedule", "empty: no schedule"),
    field("Concurrency", "concurrency", "blobs moved at once")),
  h("div", { class: "toolbar checks" }, check("on push (push rules)", "on_push"), check("delete tags gone at the source", "delete"),
    check("referrers follow their subject", "referrers"), check("enabled", "enabled")),
  h("div", { class: "toolbar" }, h("button", { type: "submit", class: "primary", id: "rule-save" }, "Save rule"), cancel),
  error);
  fill(null);
  return { element: h("div", { id: "rule-editor" }, title, form), edit: (rule) => { fill(rule); title.scrollIntoView(); },
    editing: () => editing, reset: () => fill(null) };
}

async function replication(params) {
  const only = params.get("rule") || "";
  const runsPath = `/replication/runs?${new URLSearchParams({ limit: params.get("limit") || "50", ...(only ? { rule: only } : {}) })}`;
  const view = {};
  replicationView = view;
  clearTimeout(replicationTimer);
  const rulesHolder = h("div", {});
  const runsHolder = h("div", {});
  const expanded = new Set();
  let rules = [];
  const later = () => {
    clearTimeout(replicationTimer);
    replicationTimer = setTimeout(() => refresh().catch((err) => toast(err.message, true)), 1000);
  };
  const actions = {
    run: async (r, button, state) => {
      button.disabled = true;
      try {
        await api(`/replication/rules/${encodeURIComponent(r.name)}/run`, { method: "POST" });
        state.replaceChildren(h("div", {}, statusTag("requested")));
        later();
      } catch (err) { toast(err.message, true); button.disabled = false; }
    },
    edit: (r) => form.edit(r),
    remove: async (r) => {
      if (!(await confirmDialog(`Delete the rule ${r.name}?`,
        "Nothing more is copied by it; what it copied stays, and so does its history."))) return;
      try {
        await api(`/replication/rules/${encodeURIComponent(r.name)}`, { method: "DELETE" });
        toast(`Deleted rule ${r.name}`);
        if (form.editing() === r.name) form.reset();
        await refresh();
      } catch (err) { toast(err.message, true); }
    },
  };
  const form = ruleForm(() => rules, () => refresh());
  async function refresh() {
    if (replicationView !== view) return;
    const [listed, runs] = await Promise.all([api("/replication/rules"), api(runsPath)]);
    if (replicationView !== view) return;
    rules = listed.rules;
    rulesHolder.replaceChildren(rules.length ? table(["Rule", "Direction", "Filters", "Trigger", "Enabled", "Origin", "State",
      "Next run", ""], rules.map((r) => ruleRow(r, actions)), { id: "replication-rules" })
      : h("p", { class: "muted", id: "no-replication-rules" }, "No rules yet."));
    runsHolder.replaceChildren(...runsSection(runs, runsPath, only, expanded).filter(Boolean));
    if (rules.some((r) => r.running || r.run_requested_at)) later();
  }
  await refresh();
  main().replaceChildren(h("h1", {}, "Replication"),
    h("p", { class: "muted" }, "A pull rule copies images from another registry to this one, a push rule from this one to another; ",
      "each runs on its schedule, on pushes here (push rules), or when asked. Rules of the configuration are changed there."),
    rulesHolder, form.element, runsHolder);
}

// -- routing ----------------------------------------------------------------------------
async function render() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = (path || "/").split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  const view = parts[0] || "overview";
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.dataset.view === ({ repo: "repositories", manifest: "repositories" }[view] || view));
  }
  try {
    if (view === "overview") await overview();
    else if (view === "repositories") await repositories(params);
    else if (view === "repo") await repository(parts[1]);
    else if (view === "manifest") await manifest(parts[1], parts[2]);
    else if (view === "uploads") await uploads();
    else if (view === "mirror") await mirror();
    else if (view === "maintenance") await maintenance();
    else if (view === "immutable") await immutable();
    else if (view === "replication") await replication(params);
    else if (view === "notifications") await notifications();
    else if (view === "audit") await audit(params);
    else main().replaceChildren(h("p", {}, "Unknown page."));
  } catch (err) {
    showError(err);
  }
  document.body.dataset.ready = location.hash;  // tests wait for this
}

window.addEventListener("hashchange", render);
window.addEventListener("DOMContentLoaded", async () => {
  render();
  try {
    const me = await api("/whoami");
    document.getElementById("whoami").textContent = me.kind === "anonymous" ? `local admin (${me.address})` : me.name;
  } catch { /* the page itself shows the error */ }
});
