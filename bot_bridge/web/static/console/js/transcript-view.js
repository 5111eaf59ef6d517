// What was said, from the result's transcript, into the markup of _transcript.html: one button per
// segment (a stretch of the recording SenseVoice heard as one, with its start and end), which plays the
// recording from its start and moves the timeline's cursor there; the segment being played is marked
// as the audio goes. Buttons are reached with Tab and pressed with Enter or Space. Where SenseVoice's
// emotion differs from emotion2vec+'s, both are shown (replies use emotion2vec+'s).
import { bilingual, emotionName, h, seconds, slots } from "./dom.js";
import { text } from "./text.js";

// options: audio (the <audio> to play), chart (the timeline's handle: showTime moves its cursor)
export function renderTranscript(section, result, { audio = null, chart = null } = {}) {
  const slot = slots(section);
  const transcript = result.transcript;
  section.hidden = false;
  slot("no-transcript").hidden = Boolean(transcript);
  slot("random").hidden = !transcript?.random_weights;
  const segments = transcript?.segments ?? [];
  slot("nothing-said").hidden = !transcript || segments.length > 0;
  slot("language").textContent = transcript?.language && transcript.language !== "nospeech" ? `· ${transcript.language}` : "";
  showDisagreement(slot, result);

  const buttons = segments.map((segment) => segmentButton(segment));
  slot("segments").replaceChildren(...buttons.map((button) => h("li", {}, button)));
  buttons.forEach((button, i) => button.addEventListener("click", () => jumpTo(segments[i].start)));

  function jumpTo(time) {
    chart?.showTime(time);
    if (!audio) return;
    audio.currentTime = time;
    audio.play().catch(() => {}); // the browser may refuse to play; the place and the cursor still moved
  }

  function markPlaying() {
    const now = audio.currentTime;
    buttons.forEach((button, i) => {
      const playing = audio.currentTime > 0 && now >= segments[i].start && now < segments[i].end;
      button.setAttribute("aria-current", String(playing));
    });
  }

  audio?.addEventListener("timeupdate", markPlaying);
  return {
    destroy() {
      audio?.removeEventListener("timeupdate", markPlaying);
    },
  };
}

function segmentButton(segment) {
  const tags = [
    segment.event && segment.event !== "Speech" ? segment.event : null,
    segment.emotion && segment.emotion !== "neutral" ? emotionName(segment.emotion) : null,
  ].filter(Boolean);
  return h(
    "button",
    { type: "button", class: "segment", "aria-current": "false", "data-start": segment.start },
    h("span", { class: "segment-time" }, `${segment.start.toFixed(1)}–${seconds(segment.end)}`),
    h("span", { class: "segment-text" }, segment.text || "…"),
    tags.length ? h("span", { class: "segment-tags" }, ...tags.flatMap((tag, i) => (i ? [" · ", tag] : [tag]))) : null,
  );
}

// "SenseVoice hears 😊 Happy · emotion2vec+ hears 😠 Angry", only when they differ and speech was heard.
function showDisagreement(slot, result) {
  const heard = result.transcript?.sensevoice_emotion;
  const differs = Boolean(heard) && result.reason !== "no_speech" && heard !== result.emotion;
  slot("disagree").hidden = !differs;
  if (!differs) return;
  slot("sensevoice-emotion").replaceChildren(bilingual(text.sensevoiceHears), " ", emotionName(heard));
  slot("emotion2vec-emotion").replaceChildren(bilingual(text.emotion2vecHears), " ", emotionName(result.emotion));
}
