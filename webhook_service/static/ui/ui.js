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
