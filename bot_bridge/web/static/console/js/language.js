// The language switch: Chinese, English or both. Kept in a cookie so the server renders the
// next page the same way; switching needs no reload.
const COOKIE = "console_lang";

for (const button of document.querySelectorAll("[data-language]")) {
  button.addEventListener("click", () => {
    const language = button.dataset.language;
    document.documentElement.dataset.lang = language;
    document.documentElement.lang = language === "en" ? "en" : "zh-CN";
    document.cookie = `${COOKIE}=${language}; path=/; max-age=31536000; SameSite=Lax`;
    for (const other of document.querySelectorAll("[data-language]")) {
      other.setAttribute("aria-pressed", String(other === button));
    }
  });
}
