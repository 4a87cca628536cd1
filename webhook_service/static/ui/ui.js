// dshub's one script: "Copy link" copies a file's permanent link to the clipboard.
// Everything else works without JavaScript; without it, "Copy link" is an ordinary link
// (right click → copy link address).
"use strict";
document.addEventListener("click", async (event) => {
  const link = event.target instanceof Element ? event.target.closest("a.js-copy") : null;
  if (!link || !navigator.clipboard) {
    return;
  }
  event.preventDefault();
  const status = link.closest("section")?.querySelector(".copy-status");
  try {
    await navigator.clipboard.writeText(link.dataset.copy || link.href);
    link.classList.add("copied");
    if (status) {
      status.textContent = "Link copied to the clipboard.";
    }
  } catch (error) {
    if (status) {
      status.textContent = "Could not copy; right click the link and copy its address.";
    }
  }
});

// A preview the server could not make (a corrupt image, bytes missing from storage) shows
// the same placeholder as a file without one, not the browser's broken-image icon and alt
// text. `error` does not bubble, so it is caught on the way down; previews that failed
// before this deferred script ran are found by their state.
function showPlaceholder(img) {
  const label = img.dataset.placeholder;
  if (label === undefined || !img.isConnected) {
    return;
  }
  const box = document.createElement("span");
  box.className = img.className.replace(/\bthumb\b/, "") + " thumb none failed";
  box.textContent = label;
  box.title = "No preview: the image could not be read";
  box.setAttribute("aria-hidden", "true");
  img.replaceWith(box);
}
document.addEventListener(
  "error",
  (event) => {
    if (event.target instanceof HTMLImageElement) {
      showPlaceholder(event.target);
    }
  },
  true,
);
for (const img of document.querySelectorAll("img[data-placeholder]")) {
  if (img.complete && img.naturalWidth === 0 && img.currentSrc) {
    showPlaceholder(img);
  }
}

// "+ New Dataset…": a visibility above the chosen namespace's maximum cannot be chosen. The
// server renders the first namespace's rule and refuses others (422) without this script.
const RANKS = ["private", "internal", "public"];
function updateVisibility(select) {
  const form = select.closest("form");
  const max = select.selectedOptions[0]?.dataset.maxVisibility || "private";
  const why = form.querySelector(".js-visibility-why");
  for (const radio of form.querySelectorAll(".js-visibility input[type=radio]")) {
    radio.disabled = RANKS.indexOf(radio.value) > RANKS.indexOf(max);
    if (radio.disabled && radio.checked) {
      radio.checked = false;
      form.querySelector(".js-visibility input[value=private]").checked = true;
    }
  }
  if (why) {
    why.textContent =
      max === "public"
        ? "Private: only members. Internal: every signed-in user. Public: everyone."
        : `${select.value} allows at most ${max}: a dataset cannot be more visible than its namespace.`;
  }
}
for (const select of document.querySelectorAll("select.js-namespace")) {
  select.addEventListener("change", () => updateVisibility(select));
}
