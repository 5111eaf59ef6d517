// All nine scores as horizontal bars, highest first. Each row reads as text ("快乐 Happy 62.0%"),
// so the list is its own text alternative; the bar itself is decoration.
import { bilingual, emojiImage, emotions, h, percent } from "./dom.js";

export function renderScoreBars(list, scores) {
  const ranked = emotions()
    .map((e) => ({ ...e, score: scores[e.key] ?? 0 }))
    .sort((a, b) => b.score - a.score);
  list.replaceChildren(
    ...ranked.map((e, rank) => {
      const fill = h("span", { class: "score-bar-fill" });
      fill.style.width = percent(e.score, 2);
      return h(
        "li",
        { class: `score-bar emotion-${e.key}${rank === 0 ? " is-top" : ""}`, "data-emotion": e.key },
        h("span", { class: "score-bar-name" }, emojiImage(e.key), " ", bilingual([e.zh, e.en])),
        h("span", { class: "score-bar-track", "aria-hidden": "true" }, fill),
        h("span", { class: "score-bar-value" }, percent(e.score)),
      );
    }),
  );
}
