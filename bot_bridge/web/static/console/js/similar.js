// "Find similar": the stored results whose embeddings are closest to this one (cosine).
import { bilingual, emojiImage, h, percent, slots } from "./dom.js";
import { requestJSON } from "./requests.js";
import { text } from "./text.js";

export async function showSimilar(section, url) {
  const slot = slots(section);
  const status = slot("similar-status");
  const list = slot("similar-list");
  section.hidden = false;
  list.replaceChildren();
  status.replaceChildren(bilingual(text.similarLoading));
  try {
    const { items } = await requestJSON(url);
    status.replaceChildren(bilingual(items.length ? text.similarCount(items.length) : text.similarNone));
    list.replaceChildren(...items.map(similarItem));
  } catch (error) {
    status.replaceChildren(bilingual(error.words));
  }
}

function similarItem(item) {
  return h(
    "li",
    { class: "similar-item" },
    h(
      "a",
      { href: item.url },
      h("span", { class: "similar-emoji" }, emojiImage(item.emotion)),
      h(
        "span",
        {},
        h("strong", {}, bilingual([item.label_zh, item.label_en])),
        ` ${percent(item.confidence, 0)}`,
        h("span", { class: "similar-source" }, ` · ${item.source} · ${item.when}`),
      ),
      h("span", { class: "similar-score", title: "cosine" }, item.similarity.toFixed(3)),
    ),
  );
}
