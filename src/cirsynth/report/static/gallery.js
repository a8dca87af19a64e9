// cirsynth gallery: pages over /api/rows, saves decisions with POST /api/decision.
// Every text from the dataset is put in the page as text (textContent / text nodes), never parsed as HTML.
"use strict";

const state = { meta: null, offset: 0, total: 0, rows: [], selected: 0 };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return e;
}

function showError(msg) { $("error").textContent = msg || ""; }

async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function fillSelect(id, values) {
  const s = $(id);
  for (const v of values) s.appendChild(el("option", { value: v }, v));
}

function query() {
  const p = new URLSearchParams();
  for (const k of ["status", "rule", "edit_type", "decision", "sort"]) {
    const v = $("f-" + k).value;
    if (v) p.set(k, v);
  }
  p.set("order", $("f-order").value);
  p.set("offset", String(state.offset));
  p.set("limit", $("f-limit").value);
  return p.toString();
}

function fmt(v) { return typeof v === "number" ? (Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(3)) : (v === null ? "–" : String(v)); }

function image(url, alt, cls) {
  return url ? el("img", { src: url, alt: alt, class: cls || null }) : el("div", { class: "missing" }, "no image in the dataset");
}

function scoresTable(row) {
  const names = state.meta.score_names;
  const th = state.meta.thresholds;
  const cands = row.candidates.scores;
  if (!names.length || !cands.length) return el("p", { class: "note" }, "no scores recorded");
  const head = el("tr", {}, el("th", {}, "candidate"), names.map((n) => el("th", {}, n)));
  const thr = el("tr", {}, el("th", {}, "threshold ≥"), names.map((n) => el("td", {}, n in th ? fmt(th[n]) : "–")));
  const body = cands.map((c, i) => el("tr", { class: "candidate" },
    el("th", {}, cands.length === 1 ? "kept" : String(i)),
    names.map((n) => el("td", { class: (n in th && typeof c[n] === "number" && c[n] < th[n]) ? "fail" : null }, fmt(c[n] ?? null)))));
  return el("table", { class: "scores" }, head, thr, body);
}

function compare(row) {
  if (!row.reference_url || !row.target_url) return null;
  const top = el("img", { src: row.target_url, alt: "target over reference", class: "top" });
  const mask = row.mask_url ? el("img", { src: row.mask_url, alt: "LocalBlend mask", class: "mask", hidden: true }) : null;
  const slider = el("input", { type: "range", min: 0, max: 100, value: 50, class: "slider", "aria-label": "reference | target" });
  const clip = () => { top.style.clipPath = `inset(0 ${100 - slider.value}% 0 0)`; };
  slider.addEventListener("input", clip);
  clip();
  const toggle = mask
    ? el("label", {}, el("input", { type: "checkbox", class: "mask-toggle", onchange: (e) => { mask.hidden = !e.target.checked; } }), " mask")
    : el("span", { class: "note" }, "no mask stored");
  return el("figure", { class: "compare" },
    el("div", { class: "stack" }, el("img", { src: row.reference_url, alt: "reference" }), top, mask),
    slider, el("figcaption", {}, "reference ◀ slide ▶ target  ", toggle));
}

function card(row, i) {
  const status = el("span", { class: "badge " + row.status }, row.status);
  const parts = [status];
  if (row.filter_status !== row.status) parts.push(" (filter: ", row.filter_status, ")");
  if (row.decision) parts.push(" ", el("span", { class: "badge decision" }, "human: " + row.decision.decision + " " + row.decision.time));
  if (row.decision && row.applied_decision !== row.decision.decision) parts.push(el("span", { class: "note" }, " not applied yet"));
  const words = (row.source_words.length || row.target_words.length) ? ` (${row.source_words.join(" ")} → ${row.target_words.join(" ")})` : "";
  const c = el("article", { class: "card" + (i === state.selected ? " selected" : ""), "data-id": row.id,
                             "data-status": row.status, "data-decision": row.decision ? row.decision.decision : "",
                             onclick: () => select(i) },
    el("div", { class: "images" },
      el("figure", {}, image(row.reference_url, "reference", "ref"), el("figcaption", {}, "reference")),
      el("figure", {}, image(row.target_url, "target", "tgt"), el("figcaption", {}, "target")),
      compare(row)),
    el("div", { class: "text" },
      el("p", { class: "mod" }, row.modification_text || "(no modification text)"),
      el("dl", {},
        el("dt", {}, "reference caption"), el("dd", { class: "ref-caption" }, row.reference_caption ?? "–"),
        el("dt", {}, "target caption"), el("dd", { class: "tgt-caption" }, row.target_caption ?? "–"),
        el("dt", {}, "edit type"), el("dd", {}, (row.edit_type || "–") + words),
        el("dt", {}, "status"), el("dd", { class: "status" }, parts),
        el("dt", {}, "failing rules"), el("dd", { class: "reason" }, row.filter_reason || "none"),
        el("dt", {}, "id / split"), el("dd", {}, row.id + " / " + (row.split || "–")),
        el("dt", {}, "provenance"), el("dd", {}, Object.entries(row.provenance).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", "))),
      scoresTable(row),
      row.candidates.note ? el("p", { class: "note" }, row.candidates.note) : null,
      el("div", { class: "buttons" },
        el("button", { type: "button", class: "accept", onclick: (e) => { e.stopPropagation(); decide(i, "accept"); } }, "accept (a)"),
        el("button", { type: "button", class: "reject", onclick: (e) => { e.stopPropagation(); decide(i, "reject"); } }, "reject (r)"),
        el("button", { type: "button", class: "flag", onclick: (e) => { e.stopPropagation(); decide(i, "flag"); } }, "flag (f)"),
        el("button", { type: "button", class: "undo", onclick: (e) => { e.stopPropagation(); decide(i, null); } }, "undo (u)"))));
  return c;
}

function render() {
  const main = $("triplets");
  main.replaceChildren(...state.rows.map(card));
  if (!state.rows.length) main.appendChild(el("p", { class: "note" }, "no triplets match"));
  const last = Math.min(state.offset + state.rows.length, state.total);
  $("pageinfo").textContent = `${state.total ? state.offset + 1 : 0}–${last} of ${state.total}`;
}

async function load() {
  try {
    const page = await getJSON("/api/rows?" + query());
    state.total = page.total;
    state.rows = page.rows;
    state.selected = Math.min(state.selected, Math.max(0, state.rows.length - 1));
    showError("");
    render();
    document.body.dataset.loaded = String(Date.now());
  } catch (e) { showError("could not load rows: " + e.message); }
}

function select(i) {
  if (i < 0 || i >= state.rows.length) return;
  state.selected = i;
  document.querySelectorAll(".card").forEach((c, k) => c.classList.toggle("selected", k === i));
  document.querySelectorAll(".card")[i].scrollIntoView({ block: "nearest" });
}

async function decide(i, decision) {
  const row = state.rows[i];
  if (!row) return;
  try {
    const r = await fetch("/api/decision", { method: "POST", headers: { "Content-Type": "application/json" },
                                             body: JSON.stringify({ id: row.id, decision: decision }) });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    row.decision = body.decision ? { decision: body.decision, time: body.time } : null;
    if (decision === "accept") row.status = "accepted";
    else if (decision === "reject") row.status = "rejected";
    else row.status = row.filter_status;
    state.selected = i;
    showError("");
    render();
  } catch (e) { showError("decision not saved: " + e.message); }
}

function page(delta) {
  const limit = Number($("f-limit").value);
  const next = state.offset + delta * limit;
  if (next < 0 || next >= state.total) return;
  state.offset = next;
  state.selected = 0;
  load();
}

function showTab(name) {
  $("view-triplets").hidden = name !== "triplets";
  $("view-plots").hidden = name !== "plots";
  $("tab-triplets").classList.toggle("active", name === "triplets");
  $("tab-plots").classList.toggle("active", name === "plots");
}

async function init() {
  try { state.meta = await getJSON("/api/meta"); } catch (e) { showError("could not load the dataset: " + e.message); return; }
  const m = state.meta;
  const counts = Object.entries(m.counts).map(([k, v]) => `${v} ${k}`).join(", ");
  $("summary").textContent = `${m.root}: ${m.total} triplets (${counts}); ${m.decisions} human decisions`;
  fillSelect("f-status", m.statuses);
  fillSelect("f-rule", m.rules);
  fillSelect("f-edit_type", m.edit_types);
  fillSelect("f-decision", m.decision_kinds);
  fillSelect("f-sort", m.score_names);
  $("mask-note").textContent = m.mask_note || "";
  $("plots").replaceChildren(...m.plots.map((u) => el("figure", {}, el("img", { src: u, alt: u }), el("figcaption", {}, u))));
  $("plot-notes").replaceChildren(...m.plot_notes.map((n) => el("li", {}, n)));
  for (const k of ["status", "rule", "edit_type", "decision", "sort", "order", "limit"]) {
    $("f-" + k).addEventListener("change", () => { state.offset = 0; state.selected = 0; load(); });
  }
  $("prev").addEventListener("click", () => page(-1));
  $("next").addEventListener("click", () => page(1));
  $("tab-triplets").addEventListener("click", () => showTab("triplets"));
  $("tab-plots").addEventListener("click", () => showTab("plots"));
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || ["SELECT", "INPUT", "TEXTAREA"].includes(e.target.tagName)) return;
    const keys = { a: "accept", r: "reject", f: "flag" };
    if (e.key in keys) decide(state.selected, keys[e.key]);
    else if (e.key === "u") decide(state.selected, null);
    else if (e.key === "j") select(state.selected + 1);
    else if (e.key === "k") select(state.selected - 1);
    else if (e.key === "n") page(1);
    else if (e.key === "p") page(-1);
    else return;
    e.preventDefault();
  });
  await load();
}

init();
