// One result, drawn into the markup of _result_view.html: the headline (emoji, names, confidence),
// the facts, the nine score bars, the timeline chart, the processing log, downloads and
// "find similar"; and what was said into _transcript.html, under the player. Used by the analysis
// page and by each result's own page.
import { bilingual, duration, emojiImage, emotionName, percent, slots } from "./dom.js";
import { renderScoreBars } from "./score-bars.js";
import { showSimilar } from "./similar.js";
import { drawTimeline } from "./timeline-chart.js";
import { text } from "./text.js";
import { renderTranscript } from "./transcript-view.js";

// options: audio (an <audio> element to sync with the timeline), transcript (the _transcript.html section),
// offerEmbedding, showPermalink. Returns a handle whose destroy() stops following the audio.
export function renderResult(view, result, { audio = null, transcript = null, offerEmbedding = false, showPermalink = false } = {}) {
  const slot = slots(view);
  const resultUrl = view.dataset.resultUrl.replace("RESULT_ID", encodeURIComponent(result.id));

  slot("emoji").replaceChildren(emojiImage(result.emotion));
  slot("label-zh").textContent = result.label_zh;
  slot("label-en").textContent = result.label_en;
  slot("confidence").textContent = percent(result.confidence);
  const [runnerUp, runnerUpScore] = Object.entries(result.scores).sort((a, b) => b[1] - a[1])[1];
  slot("runner-up").hidden = runnerUpScore < 0.1 || result.reason === "no_speech";
  slot("runner-up-text").replaceChildren(emotionName(runnerUp), ` ${percent(runnerUpScore)}`);
  slot("no-speech").hidden = result.reason !== "no_speech";

  slot("duration").replaceChildren(bilingual(duration(result.duration_s)));
  slot("speech").textContent = percent(result.speech_ratio, 0);
  slot("format").textContent = describeAudio(result.audio);
  slot("took").replaceChildren(result.timings_ms?.total ? bilingual(duration(result.timings_ms.total / 1000)) : "—");

  renderScoreBars(slot("scores"), result.scores);
  const sum = Object.values(result.scores).reduce((total, value) => total + value, 0);
  slot("score-sum").replaceChildren(bilingual(text.sum), ` ${sum.toFixed(3)}`);

  slot("log").replaceChildren(...result.log.map((line) => Object.assign(document.createElement("li"), { textContent: line })));

  slot("download-json").href = `${resultUrl}/result.json`;
  slot("download-embedding").href = `${resultUrl}/embedding.npy`;
  slot("download-embedding").hidden = !(offerEmbedding && result.has_embedding);
  slot("permalink").href = resultUrl;
  slot("permalink").hidden = !showPermalink;
  const findSimilar = slot("find-similar");
  findSimilar.hidden = !result.has_embedding;
  findSimilar.onclick = () => showSimilar(slot("similar-section"), `${resultUrl}/similar`);
  slot("similar-section").hidden = true;

  if (result.random_weights) document.getElementById("random-weights-banner").hidden = false;
  view.hidden = false;
  const chart = showTimeline(slot("timeline-section"), result, audio);
  const words = transcript ? renderTranscript(transcript, result, { audio, chart }) : null;
  return {
    destroy() {
      chart?.destroy();
      words?.destroy();
    },
  };
}

function showTimeline(section, result, audio) {
  section.hidden = !result.timeline;
  const segments = result.transcript?.segments ?? [];
  return result.timeline ? drawTimeline(section, result.timeline, result.duration_s, audio, segments) : null;
}

function describeAudio(audio) {
  if (!audio?.codec) return "—";
  const rate = audio.sample_rate ? ` · ${audio.sample_rate / 1000} kHz` : "";
  const codec = audio.codec.startsWith("pcm_") ? "PCM" : audio.codec.toUpperCase();
  return `${codec}${rate}`;
}
