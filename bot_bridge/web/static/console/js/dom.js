// Building DOM without a framework: h() for HTML, s() for SVG, bilingual() for text in both languages.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

export function h(tag, attributes = {}, ...children) {
  return build(document.createElement(tag), attributes, children);
}

export function s(tag, attributes = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attributes, children);
}

// Chinese and English side by side; the page's language switch shows one or both.
export function bilingual([zh, en]) {
  const fragment = document.createDocumentFragment();
  fragment.append(h("span", { class: "zh", lang: "zh-CN" }, zh), h("span", { class: "en", lang: "en" }, en));
  return fragment;
}

export function percent(value, digits = 1) {
  return `${(value * 100).toFixed(digits)}%`;
}

export function seconds(value) {
  return `${value.toFixed(1)} s`;
}

// A length of time as people say it, [Chinese, English]: "820 ms", "12.3 s", "1 min 22 s", "1 h 5 min".
export function duration(totalSeconds) {
  if (totalSeconds < 1) {
    const ms = Math.round(totalSeconds * 1000);
    return [`${ms} 毫秒`, `${ms} ms`];
  }
  if (totalSeconds < 59.95) {
    const s = totalSeconds.toFixed(1);
    return [`${s} 秒`, `${s} s`];
  }
  const whole = Math.round(totalSeconds);
  const [h, m, s] = [Math.floor(whole / 3600), Math.floor((whole % 3600) / 60), whole % 60];
  return h ? [`${h} 小时 ${m} 分`, `${h} h ${m} min`] : [`${m} 分 ${s} 秒`, `${m} min ${s} s`];
}

// The nine emotions in the model's order, as the server described them in #emotion-data.
let emotionList = null;
export function emotions() {
  emotionList ??= JSON.parse(document.getElementById("emotion-data").textContent);
  return emotionList;
}

export function emotion(key) {
  return emotions().find((candidate) => candidate.key === key);
}

// The emotion's emoji as an image (in colour on every system, fonts or not); the emoji itself is its alt text.
export function emojiImage(key) {
  const { emoji, image } = emotion(key);
  return h("img", { class: "emoji", src: image, alt: emoji, "aria-hidden": "true", draggable: "false" });
}

// "😊 快乐 Happy" as nodes.
export function emotionName(key) {
  const { zh, en } = emotion(key);
  return h("span", { class: `emotion-label emotion-${key}` }, emojiImage(key), " ", bilingual([zh, en]));
}

export function slots(root) {
  return (name) => root.querySelector(`[data-slot="${name}"]`);
}
