// The analysis page: pick or drop a file (anywhere on the page), send it with the chosen
// switches, show the result or the server's words for what went wrong. The upload plays from the
// browser's own copy (an object URL), so nothing is downloaded back.
import { bilingual, h } from "./dom.js";
import { requestJSON } from "./requests.js";
import { renderResult } from "./result-view.js";
import { text } from "./text.js";

const form = document.getElementById("analyse-form");
const input = document.getElementById("audio-file");
const dropzone = document.getElementById("dropzone");
const chosenFile = document.getElementById("chosen-file");
const button = document.getElementById("analyse-button");
const errorBox = document.getElementById("analyse-error");
const placeholder = document.getElementById("result-placeholder");
const progress = document.getElementById("result-progress");
const view = document.getElementById("result-view");
const playerBox = document.getElementById("upload-player");
const player = playerBox.querySelector("audio");
const maxBytes = Number(form.dataset.maxBytes);

let currentFile = null;
let objectUrl = null;
let chart = null;

function chooseFile(file) {
  if (!file) return;
  currentFile = file;
  chosenFile.textContent = `${file.name} · ${(file.size / 1e6).toFixed(2)} MB`;
  if (objectUrl) URL.revokeObjectURL(objectUrl);
  objectUrl = URL.createObjectURL(file);
  player.src = objectUrl;
  playerBox.hidden = false;
  analyse();
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

async function analyse() {
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
  chart?.destroy();
  chart = null;
  showState("busy");
  button.disabled = true;
  const body = new FormData(form);
  body.set("file", currentFile, currentFile.name);
  body.set("embedding", form.elements.embedding.checked ? "true" : "false");
  body.set("origin", "console");
  try {
    const result = await requestJSON(form.action, { method: "POST", body });
    showState("result");
    chart = renderResult(view, result, { audio: player, offerEmbedding: "embedding" in result, showPermalink: true });
  } catch (error) {
    showState("empty");
    showError(error.words, error.code);
  } finally {
    button.disabled = false;
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  analyse();
});
input.addEventListener("change", () => chooseFile(input.files[0]));

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
