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

// The nine emotions in the model's order, as the server described them in #emotion-data.
let emotionList = null;
export function emotions() {
  emotionList ??= JSON.parse(document.getElementById("emotion-data").textContent);
  return emotionList;
}

export function emotion(key) {
  return emotions().find((candidate) => candidate.key === key);
}

// "😊 快乐 Happy" as nodes.
export function emotionName(key) {
  const { emoji, zh, en } = emotion(key);
  return h("span", { class: `emotion-label emotion-${key}` }, h("span", { "aria-hidden": "true" }, `${emoji} `), bilingual([zh, en]));
}

export function slots(root) {
  return (name) => root.querySelector(`[data-slot="${name}"]`);
}
