// The search page: asks /api/search, shows the hit cards the server renders, plays a card's seconds.
"use strict";

const form = document.getElementById("search");
const query = document.getElementById("query");
const indexSelect = document.getElementById("index");
const topK = document.getElementById("top_k");
const statusLine = document.getElementById("status");
const why = document.getElementById("why");
const cards = document.getElementById("cards");

function text(value) {
  const span = document.createElement("span");
  span.textContent = value;
  return span;
}

async function loadIndexes() {
  const response = await fetch("/api/indexes");
  for (const index of await response.json()) {
    const option = document.createElement("option");
    option.value = index.number;
    option.textContent = `${index.name} (${index.segments} segments)`;
    indexSelect.appendChild(option);
  }
}

function play(card) {
  const video = card.querySelector("video");
  if (!video) return;
  const start = parseFloat(card.dataset.start), end = parseFloat(card.dataset.end);
  for (const other of cards.querySelectorAll(".vb-card.vb-playing")) {
    other.classList.remove("vb-playing");
    const playing = other.querySelector("video");
    if (playing && playing !== video) playing.pause();
  }
  card.classList.add("vb-playing");
  const begin = () => {
    video.currentTime = start;
    video.muted = true;
    video.play().catch(() => {});
  };
  video.ontimeupdate = () => { if (video.currentTime >= end) video.pause(); };
  if (video.readyState >= 1) begin(); else video.addEventListener("loadedmetadata", begin, { once: true });
}

async function search(event) {
  event.preventDefault();
  const params = new URLSearchParams({ q: query.value, index: indexSelect.value || "0", top_k: topK.value });
  statusLine.replaceChildren(text("searching…"));
  const response = await fetch(`/api/search?${params}`);
  const answer = await response.json();
  if (!response.ok) {
    statusLine.replaceChildren(text(`${response.status}: ${answer.error}`));
    return;
  }
  const times = Object.entries(answer.timings_ms).map(([part, ms]) => `${part.replace("_", " ")} ${ms} ms`).join(", ");
  statusLine.replaceChildren(text(`${answer.hits.length} hits in ${answer.cards.length} cards (${times})`));
  if (2 * answer.unknown_words.length > answer.word_count) {
    const warning = Object.assign(document.createElement("div"), { className: "vb-unknown" });
    warning.textContent = `${answer.unknown_words.length} of the ${answer.word_count} words are not in the model's vocabulary `
      + `(${answer.unknown_words.join(", ")}): it reads them as fragments, so these hits say little about them.`;
    statusLine.appendChild(warning);
  }
  why.replaceChildren(text("the query calls up the visual words "));
  for (const word of answer.words) {
    const item = word.exemplar ? Object.assign(document.createElement("img"), { src: word.exemplar }) : text(`v${word.word}`);
    item.className = "vb-word";
    item.title = `visual word ${word.word}, p ${word.probability.toFixed(2)}`;
    why.appendChild(item);
  }
  cards.innerHTML = answer.cards.map((card) => card.html).join("");  // the server escapes what came from data
  for (const card of cards.querySelectorAll(".vb-card")) {
    card.addEventListener("click", () => play(card));
    const strip = card.querySelector(".vb-strip");
    if (strip) strip.addEventListener("error", () => { strip.replaceWith(text("(no frames: the video could not be read)")); });
  }
}

form.addEventListener("submit", search);
loadIndexes();
