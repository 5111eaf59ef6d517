// The timeline as an SVG line chart: one line per emotion (score 0-1 over time), a band on top
// coloured by each window's dominant emotion, and the share of speech as a grey area. Windows
// without speech (reason "no_speech": less than half of them is speech) are grey in the band, carry
// no score lines and do not count in the summary: a pause is no feeling. Drawn at the container's
// real width (redrawn when it changes) so text stays crisp on phones and desktops. Pointer or arrow
// keys move a cursor; a click or Enter plays the audio from there, and a playhead follows the audio.
// Under the band, a thin mark spans each stretch of the transcript's segments (what was said there);
// the handle's showTime(t) moves the cursor to the window at t, as a click on a segment does.
import { bilingual, emotion, emotionName, emotions, h, percent, s, seconds, slots } from "./dom.js";
import { text } from "./text.js";

const MARGIN = { top: 4, right: 10, bottom: 22, left: 36 };
const BAND_HEIGHT = 14;
const BAND_GAP = 10;
const PLOT_HEIGHT = 170;
const TICK_STEPS = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];

export function drawTimeline(section, windows, duration, audio = null, segments = []) {
  const slot = slots(section);
  const container = slot("timeline-chart");
  const centres = windows.map((w) => (w.start + w.end) / 2);
  const dominant = windows.filter(hasSpeech).map((w) => w.emotion);
  const mainEmotions = new Set(dominant);
  const hidden = new Set();
  let layout = null;
  let cursorIndex = null;
  let playheadTime = null;

  const mostCommon = [...mainEmotions]
    .map((key) => ({ key, count: dominant.filter((d) => d === key).length }))
    .sort((a, b) => b.count - a.count)[0] ?? { key: "unknown", count: 0 };
  const changes = dominant.filter((key, i) => i > 0 && key !== dominant[i - 1]).length;
  const mainName = emotion(mostCommon.key);
  const silent = windows.length - dominant.length;

  slot("timeline-summary").replaceChildren(
    bilingual(dominant.length ? text.timelineSummary(mainName, mostCommon.count, dominant.length, changes, silent) : text.timelineNoSpeech),
  );
  slot("timeline-rows").replaceChildren(...windows.map(tableRow));
  slot("timeline-legend").replaceChildren(...emotions().map(legendButton));

  function legendButton({ key }) {
    const button = h("button", { type: "button", class: `legend-item emotion-${key}`, "aria-pressed": "true" }, emotionName(key));
    button.addEventListener("click", () => {
      const showing = hidden.has(key);
      showing ? hidden.delete(key) : hidden.add(key);
      button.setAttribute("aria-pressed", String(showing));
      container.querySelectorAll(`[data-emotion="${key}"]`).forEach((line) => line.classList.toggle("hidden-series", !showing));
    });
    return button;
  }

  function render() {
    const width = Math.max(260, Math.round(container.clientWidth || 640));
    if (layout?.width === width) return;
    const plotWidth = width - MARGIN.left - MARGIN.right;
    const plotTop = MARGIN.top + BAND_HEIGHT + BAND_GAP;
    const plotBottom = plotTop + PLOT_HEIGHT;
    layout = {
      width,
      height: plotBottom + MARGIN.bottom,
      plotTop,
      plotBottom,
      x: (t) => MARGIN.left + (duration > 0 ? Math.min(Math.max(t / duration, 0), 1) : 0) * plotWidth,
      y: (value) => plotBottom - value * PLOT_HEIGHT,
      timeAt: (px) => ((px - MARGIN.left) / plotWidth) * duration,
    };
    const svg = s(
      "svg",
      {
        viewBox: `0 0 ${width} ${layout.height}`,
        width,
        height: layout.height,
        role: "img",
        tabindex: 0,
        "aria-label": text.chartLabel(mainName, windows.length).join(" / "),
      },
      ...gridLines(),
      ...timeTicks(),
      speechArea(),
      ...bandCells(),
      ...saidSpans(),
      ...scoreLines(),
      s("line", { class: "cursor", y1: MARGIN.top, y2: plotBottom, visibility: "hidden", "data-role": "cursor" }),
      s("line", { class: "playhead", y1: MARGIN.top, y2: plotBottom, visibility: "hidden", "data-role": "playhead" }),
    );
    listen(svg);
    container.replaceChildren(svg);
    moveLine("cursor", cursorIndex === null ? null : centres[cursorIndex]);
    moveLine("playhead", playheadTime);
  }

  function gridLines() {
    return [0, 0.25, 0.5, 0.75, 1].flatMap((value) => [
      s("line", { class: "grid-line", x1: MARGIN.left, x2: layout.width - MARGIN.right, y1: layout.y(value), y2: layout.y(value) }),
      value % 0.5 === 0
        ? s("text", { class: "axis-text", x: MARGIN.left - 6, y: layout.y(value) + 4, "text-anchor": "end" }, percent(value, 0))
        : null,
    ]);
  }

  function timeTicks() {
    const fit = Math.max(2, Math.floor((layout.width - MARGIN.left) / 64));
    const step = TICK_STEPS.find((candidate) => duration / candidate <= fit) ?? TICK_STEPS.at(-1);
    const ticks = [];
    for (let t = 0; t <= duration + 1e-9; t += step) {
      ticks.push(s("text", { class: "axis-text", x: layout.x(t), y: layout.height - 6, "text-anchor": "middle" }, `${+t.toFixed(1)} s`));
    }
    return ticks;
  }

  // Each window owns the stretch between the midpoints to its neighbours' centres.
  function cellEdges(i) {
    const left = i === 0 ? 0 : (centres[i - 1] + centres[i]) / 2;
    const right = i === windows.length - 1 ? duration : (centres[i] + centres[i + 1]) / 2;
    return [layout.x(left), layout.x(right)];
  }

  function bandCells() {
    return windows.map((w, i) => {
      const [left, right] = cellEdges(i);
      const kind = hasSpeech(w) ? `emotion-${w.emotion}` : "no-speech";
      return s("rect", { class: `band-cell ${kind}`, x: left, y: MARGIN.top, width: Math.max(right - left, 0.5), height: BAND_HEIGHT });
    });
  }

  // Where something was said: each transcript segment from its start to its end, between the band and the plot.
  function saidSpans() {
    const top = MARGIN.top + BAND_HEIGHT + 3;
    return segments.map((segment) => {
      const left = layout.x(segment.start);
      return s("rect", { class: "said-span", x: left, y: top, width: Math.max(layout.x(segment.end) - left, 1), height: 4 });
    });
  }

  function speechArea() {
    const steps = windows.flatMap((w, i) => {
      const [left, right] = cellEdges(i);
      return [`L${left},${layout.y(w.speech)}`, `L${right},${layout.y(w.speech)}`];
    });
    const [start] = cellEdges(0);
    const [, end] = cellEdges(windows.length - 1);
    return s("path", { class: "speech-area", d: `M${start},${layout.plotBottom} ${steps.join(" ")} L${end},${layout.plotBottom} Z` });
  }

  // Each emotion's line runs through the windows with speech and breaks at every pause; a stretch of
  // speech too short for a line (two windows or fewer) is drawn as dots.
  function scoreLines() {
    const ordered = [...emotions()].sort((a, b) => mainEmotions.has(a.key) - mainEmotions.has(b.key));
    return ordered.map(({ key }) => {
      const group = s("g", { "data-emotion": key, class: `emotion-${key}${hidden.has(key) ? " hidden-series" : ""}` });
      const main = mainEmotions.has(key) ? " is-main" : "";
      for (const stretch of spokenStretches()) {
        const points = stretch.map((i) => [layout.x(centres[i]), layout.y(windows[i].scores[key])]);
        if (points.length > 2) {
          group.append(s("polyline", { class: `score-line${main}`, points: points.map((p) => p.join(",")).join(" ") }));
        } else {
          group.append(...points.map(([cx, cy]) => s("circle", { class: "score-dot", cx, cy, r: 3.5 })));
        }
      }
      return group;
    });
  }

  // The indices of the windows with speech, in runs without a pause.
  function spokenStretches() {
    const stretches = [];
    windows.forEach((w, i) => {
      if (!hasSpeech(w)) return;
      if (i > 0 && hasSpeech(windows[i - 1])) stretches.at(-1).push(i);
      else stretches.push([i]);
    });
    return stretches;
  }

  function moveLine(role, time) {
    const line = container.querySelector(`[data-role="${role}"]`);
    if (!line) return;
    line.setAttribute("visibility", time === null ? "hidden" : "visible");
    if (time !== null) {
      line.setAttribute("x1", layout.x(time));
      line.setAttribute("x2", layout.x(time));
    }
  }

  function showCursor(index) {
    cursorIndex = index;
    moveLine("cursor", index === null ? null : centres[index]);
    const readout = slot("timeline-readout");
    if (index === null) {
      readout.replaceChildren();
      return;
    }
    const w = windows[index];
    readout.replaceChildren(
      `${w.start.toFixed(1)}–${seconds(w.end)} · `,
      ...windowEmotion(w),
      ` · `,
      bilingual(text.speech),
      ` ${percent(w.speech, 0)}`,
    );
  }

  function nearestWindow(time) {
    let best = 0;
    centres.forEach((centre, i) => {
      if (Math.abs(centre - time) < Math.abs(centres[best] - time)) best = i;
    });
    return best;
  }

  function listen(svg) {
    const indexAt = (event) => {
      const box = svg.getBoundingClientRect();
      return nearestWindow(layout.timeAt(((event.clientX - box.left) / box.width) * layout.width));
    };
    svg.addEventListener("pointermove", (event) => showCursor(indexAt(event)));
    svg.addEventListener("pointerleave", () => showCursor(null));
    svg.addEventListener("blur", () => showCursor(null));
    svg.addEventListener("click", (event) => playFrom(windows[indexAt(event)].start));
    svg.addEventListener("keydown", (event) => {
      const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -Infinity, End: Infinity };
      if (event.key in moves) {
        event.preventDefault();
        const from = cursorIndex ?? (moves[event.key] > 0 ? -1 : windows.length);
        showCursor(Math.min(Math.max(from + moves[event.key], 0), windows.length - 1));
      } else if (event.key === "Enter" && cursorIndex !== null) {
        playFrom(windows[cursorIndex].start);
      }
    });
  }

  function playFrom(time) {
    if (!audio) return;
    audio.currentTime = time;
    audio.play().catch(() => {}); // the browser may refuse without a user gesture; the cursor still moved
  }

  function followAudio() {
    playheadTime = audio.currentTime > 0 ? audio.currentTime : null;
    moveLine("playhead", playheadTime);
  }

  render();
  const observer = new ResizeObserver(render);
  observer.observe(container);
  audio?.addEventListener("timeupdate", followAudio);

  return {
    showTime(time) {
      showCursor(nearestWindow(time));
    },
    destroy() {
      observer.disconnect();
      audio?.removeEventListener("timeupdate", followAudio);
    },
  };
}

function tableRow(w) {
  return h(
    "tr",
    { class: hasSpeech(w) ? null : "no-speech" },
    h("td", {}, `${w.start.toFixed(1)}–${seconds(w.end)}`),
    h("td", {}, ...windowEmotion(w)),
    h("td", {}, hasSpeech(w) ? percent(w.confidence) : "—"),
    h("td", {}, percent(w.speech, 0)),
  );
}

// Results stored before windows said "no_speech" have no reason: those count as speech, as they did.
function hasSpeech(w) {
  return w.reason !== "no_speech";
}

// "😊 快乐 Happy 71%", or "❓ 未知 Unknown (no speech)".
function windowEmotion(w) {
  if (!hasSpeech(w)) return [emotionName("unknown"), " ", bilingual(text.noSpeech)];
  return [emotionName(w.emotion), ` ${percent(w.confidence, 0)}`];
}
