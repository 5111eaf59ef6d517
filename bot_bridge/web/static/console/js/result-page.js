// A stored result's own page: the same view as the analysis page, from the JSON the server embedded.
import { renderResult } from "./result-view.js";

const result = JSON.parse(document.getElementById("result-data").textContent);
renderResult(document.getElementById("result-view"), result, {
  audio: document.getElementById("result-audio"),
  transcript: document.getElementById("transcript"),
  offerEmbedding: true,
});
