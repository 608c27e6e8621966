// The demo page: read an image and captions, POST them to /rank, draw one bar row per caption, best first.
"use strict";

const $ = (id) => document.getElementById(id);
let chosenFile = null;  // from the file input or a drop
const KEY_STORAGE = "clipsvc.apiKey";  // sessionStorage: this tab only, gone when it closes

// CLIPScore as POST /syte_test/clip answers it (clipsvc/web/scoring.py clip_score): round(100 * clamp(2.5 * cos,
// 0, 1)), halves rounded to even as Python's round() does. tests/test_demo_browser.py checks it against the service.
function clipScore(cosine) {
  const scaled = 100 * Math.min(Math.max(2.5 * cosine, 0), 1);
  const rounded = Math.round(scaled);  // halves up
  return rounded - scaled === 0.5 && rounded % 2 === 1 ? rounded - 1 : rounded;
}

function showError(message, details = {}) {
  const box = $("error");
  box.replaceChildren();
  box.dataset.code = details.code || "";
  box.dataset.field = details.field || "";
  box.dataset.status = details.status || "";
  if (!message) return;
  const title = document.createElement("p");
  title.className = "error-message";
  title.textContent = message;
  box.append(title);
  const facts = [];
  if (details.field) facts.push(`Field: ${details.field}${describeField(details.field)}`);
  if (details.status) facts.push(`HTTP ${details.status}${details.code ? ` (${details.code})` : ""}`);
  if (details.requestId) facts.push(`request id ${details.requestId}`);
  if (facts.length) {
    const more = document.createElement("p");
    more.className = "error-details";
    more.textContent = facts.join(" · ");
    box.append(more);
  }
}

// "candidates[2].text" -> " (caption 3)", "queries[0].img_blob" -> " (the image)"
function describeField(field) {
  const caption = /^candidates\[(\d+)\]/.exec(field);
  if (caption) return ` (caption ${Number(caption[1]) + 1})`;
  return field.startsWith("queries") ? " (the image)" : "";
}

function chooseFile(file) {
  chosenFile = file || null;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = !chosenFile;
  preview.removeAttribute("src");
  if (chosenFile) preview.src = URL.createObjectURL(chosenFile);
  $("drop-zone").dataset.state = chosenFile ? "chosen" : "empty";
  $("file-name").textContent = chosenFile ? `${chosenFile.name} (${Math.ceil(chosenFile.size / 1024)} KB)` : "";
  showError("");
}

// The file's bytes as plain base64 (a data: URL without its "data:...;base64," prefix).
function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
    reader.onerror = () => reject(new Error(`Could not read ${file.name}: ${reader.error}`));
    reader.readAsDataURL(file);
  });
}

// Resolves to {probabilities, cosines} for our one query; throws an Error carrying the service's details.
async function rank(imageBase64, captions) {
  const body = {queries: [{img_blob: imageBase64}], candidates: captions.map((text) => ({text}))};
  const headers = {"Content-Type": "application/json", "Accept": "application/json"};
  const key = $("api-key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch("rank", {method: "POST", headers, body: JSON.stringify(body)});
  } catch (network) {
    throw Object.assign(new Error(`Could not reach the service (${network.message}). Is it running?`), {details: {}});
  }
  const requestId = response.headers.get("X-Request-ID");
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    let message = error.message || `The service answered ${response.status} ${response.statusText} without details.`;
    if (response.status === 401) message += " Enter one of the server's API keys in the API key field.";
    throw Object.assign(new Error(message), {details: {...error, status: response.status, requestId}});
  }
  if (!data || !Array.isArray(data.probabilities) || !Array.isArray(data.cosine_similarities)) {
    throw Object.assign(new Error("The service's answer is not the expected ranking."), {details: {requestId}});
  }
  return {probabilities: data.probabilities[0], cosines: data.cosine_similarities[0]};
}

function barRow(row, place) {
  const item = document.createElement("li");
  item.className = "bar-row";
  Object.assign(item.dataset, {
    caption: row.caption, probability: String(row.probability), cosine: String(row.cosine), score: String(row.score),
    rank: String(place),
  });
  const caption = document.createElement("span");
  caption.className = "caption";
  caption.textContent = row.caption;
  item.append(caption);
  const percent = `${(100 * row.probability).toFixed(1)} %`;
  item.append(bar("probability", row.probability, percent), bar("cosine", row.cosine, row.cosine.toFixed(4)),
              bar("score", row.score / 100, String(row.score)));
  return item;
}

// A labelled track whose fill is `value` of its width (clamped to 0-1), with the value in words beside it.
function bar(kind, value, text) {
  const line = document.createElement("div");
  line.className = `bar ${kind}`;
  const name = document.createElement("span");
  name.className = "bar-name";
  name.textContent = kind;
  const track = document.createElement("span");
  track.className = "track";
  track.setAttribute("aria-hidden", "true");
  const fill = document.createElement("span");
  fill.className = "fill";
  fill.style.width = `${100 * Math.min(Math.max(value, 0), 1)}%`;  // CSSOM, which the CSP allows
  track.append(fill);
  const number = document.createElement("span");
  number.className = "value";
  number.textContent = text;
  line.append(name, track, number);
  return line;
}

function showRanking(captions, result) {
  const rows = captions.map((caption, i) => ({
    caption, probability: result.probabilities[i], cosine: result.cosines[i], score: clipScore(result.cosines[i]),
  }));
  rows.sort((a, b) => b.probability - a.probability);
  $("ranking").replaceChildren(...rows.map((row, i) => barRow(row, i + 1)));
  $("results-empty").hidden = rows.length > 0;
}

async function onSubmit(event) {
  event.preventDefault();
  const captions = $("captions").value.split("\n").map((line) => line.trim()).filter(Boolean);
  if (!chosenFile) return showError("No image chosen: choose an image file, or drop one onto the box, first.");
  if (!captions.length) return showError("No captions: type at least one caption, one per line.");
  showError("");
  const button = $("rank-button");
  button.disabled = true;
  $("results").setAttribute("aria-busy", "true");
  $("status").textContent = `Ranking ${captions.length} caption${captions.length > 1 ? "s" : ""}…`;
  try {
    showRanking(captions, await rank(await readBase64(chosenFile), captions));
    $("status").textContent = "Done.";
  } catch (error) {
    $("ranking").replaceChildren();
    $("results-empty").hidden = false;
    $("status").textContent = "";
    showError(error.message, error.details || {});
  } finally {
    button.disabled = false;
    $("results").setAttribute("aria-busy", "false");
  }
}

function setUp() {
  const keyInput = $("api-key");
  keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
  keyInput.addEventListener("input", () => {
    if (keyInput.value.trim()) sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim());
    else sessionStorage.removeItem(KEY_STORAGE);
  });
  $("image-input").addEventListener("change", (event) => chooseFile(event.target.files[0]));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    chooseFile(event.dataTransfer.files[0]);
  });
  $("rank-form").addEventListener("submit", onSubmit);
}

setUp();
