// The analysis page: pick or drop a file (anywhere on the page), choose the options, press Analyse.
// The server answers at once with a job, and the page follows it (stage, chunk n of m, time so far)
// until the result or the server's words for what went wrong. Choosing a file starts nothing; pressing
// Analyse again for the same file and options asks first, since it would store a second result.
// The upload plays from the browser's own copy (an object URL); when the browser cannot play its
// format (AMR, SILK), the player switches to the server's playable copy once the result is in.
import { bilingual, h } from "./dom.js";
import { progressWords } from "./progress.js";
import { RequestError, requestJSON } from "./requests.js";
import { renderResult } from "./result-view.js";
import { text } from "./text.js";

const POLL_MS = 500;

const form = document.getElementById("analyse-form");
const input = document.getElementById("audio-file");
const dropzone = document.getElementById("dropzone");
const chosenFile = document.getElementById("chosen-file");
const button = document.getElementById("analyse-button");
const errorBox = document.getElementById("analyse-error");
const alreadyDone = document.getElementById("already-analysed");
const placeholder = document.getElementById("result-placeholder");
const progress = document.getElementById("result-progress");
const view = document.getElementById("result-view");
const playerBox = document.getElementById("upload-player");
const player = playerBox.querySelector("audio");
const playerHint = document.getElementById("player-hint");
const maxBytes = Number(form.dataset.maxBytes);

let currentFile = null;
let objectUrl = null;
let chart = null;
let running = false;
let lastRun = null; // what the result on the page was made from (file and options)

function chooseFile(file) {
  if (!file) return;
  currentFile = file;
  chosenFile.textContent = `${file.name} · ${(file.size / 1e6).toFixed(2)} MB`;
  if (objectUrl) URL.revokeObjectURL(objectUrl);
  objectUrl = URL.createObjectURL(file);
  playerHint.hidden = true;
  player.src = objectUrl;
  playerBox.hidden = false;
  alreadyDone.hidden = true;
  button.disabled = running;
  button.focus();
}

function showError(words, code = "") {
  errorBox.replaceChildren(h("p", {}, bilingual(words)), code ? h("p", { class: "alert-code" }, code) : null);
  errorBox.hidden = false;
}

function showState(state) {
  placeholder.hidden = state !== "empty";
  progress.hidden = state !== "busy";
  view.hidden = state !== "result";
}

// The file and the options of a run: the same again would only store the same result twice.
function runKey() {
  const { name, size, lastModified } = currentFile;
  return JSON.stringify([name, size, lastModified, form.elements.granularity.value, form.elements.embedding.checked]);
}

function analyse({ again = false } = {}) {
  if (!currentFile) {
    showError(text.chooseFile);
    input.focus();
    return;
  }
  if (currentFile.size > maxBytes) {
    showError(text.fileTooLarge(Math.round(maxBytes / 1e6)), "too_large");
    return;
  }
  errorBox.hidden = true;
  if (!again && lastRun?.key === runKey()) {
    alreadyDone.hidden = false;
    return;
  }
  alreadyDone.hidden = true;
  run();
}

async function run() {
  const key = runKey();
  const file = currentFile;
  const withEmbedding = form.elements.embedding.checked;
  running = true;
  button.disabled = true;
  chart?.destroy();
  chart = null;
  document.getElementById("transcript").hidden = true; // the last result's words until this one's come
  showProgress({ stage: "queued", elapsed_s: 0 }, file);
  showState("busy");
  const body = new FormData(form);
  body.set("file", file, file.name);
  body.set("embedding", withEmbedding ? "true" : "false");
  body.set("origin", "console");
  try {
    const job = await requestJSON(form.action, { method: "POST", body });
    const done = await follow(job.url, (news) => showProgress(news, file));
    lastRun = { key };
    showState("result");
    chart = renderResult(view, done.result, {
      audio: player,
      transcript: document.getElementById("transcript"),
      offerEmbedding: withEmbedding,
      showPermalink: true,
    });
    if (player.error && done.audio_url) player.src = done.audio_url;
  } catch (error) {
    showState(lastRun ? "result" : "empty");
    showError(error.words, error.code);
  } finally {
    running = false;
    button.disabled = false;
  }
}

// Ask for news of the job until it is over: its last answer, or its error as a RequestError.
async function follow(url, onNews) {
  for (;;) {
    const news = await requestJSON(url);
    if (news.state === "done") return news;
    if (news.state === "failed") throw new RequestError(news.error.status, news.error);
    onNews(news);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function showProgress(news, file) {
  const words = progressWords(news);
  document.getElementById("progress-stage").replaceChildren(bilingual(words.stage));
  document.getElementById("progress-elapsed").replaceChildren(bilingual(words.elapsed));
  document.getElementById("progress-file").textContent = file.name;
  const bar = document.getElementById("progress-bar");
  bar.hidden = words.done === null;
  if (words.done !== null) {
    bar.max = news.steps;
    bar.value = words.done;
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  analyse();
});
document.getElementById("analyse-again").addEventListener("click", () => analyse({ again: true }));
form.addEventListener("change", (event) => {
  if (event.target !== input) alreadyDone.hidden = true; // other options make another result, not the same one
});
input.addEventListener("change", () => chooseFile(input.files[0]));
player.addEventListener("error", () => {
  if (player.src === objectUrl) playerHint.hidden = false;
});

// Drops are taken anywhere on the page, so a near miss does not open the file in the tab.
let dragDepth = 0;
document.addEventListener("dragenter", (event) => {
  event.preventDefault();
  dragDepth += 1;
  dropzone.classList.add("is-dragging");
});
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(dragDepth - 1, 0);
  if (dragDepth === 0) dropzone.classList.remove("is-dragging");
});
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  dropzone.classList.remove("is-dragging");
  chooseFile(event.dataTransfer.files[0]);
});
