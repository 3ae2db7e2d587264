// Injected into the message pane: a banner above flagged or moved mail, with Not spam.
(async () => {
  const answer = await browser.runtime.sendMessage({ type: "banner" });
  const banner = answer?.ok ? answer.value : null;
  if (!banner || document.querySelector(".spamguard-banner")) {
    return;
  }
  const div = document.createElement("div");
  div.className = `spamguard-banner ${banner.kind}`;
  const text = document.createElement("span");
  text.textContent = banner.text;
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Not spam";
  button.addEventListener("click", async () => {
    button.disabled = true;
    const done = await browser.runtime.sendMessage({ type: "label", label: "ham" });
    text.textContent = done?.ok ? done.value.summary : `SpamGuard: ${done?.error ?? "no answer"}`;
    button.remove();
  });
  div.append(text, button);
  document.body.prepend(div);
})();
