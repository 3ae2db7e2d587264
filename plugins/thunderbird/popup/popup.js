// The message display action's popup: score, band, reasons, similar messages, the LLM's
// explanation on request, and Spam / Not spam.
import { bandWords, formatPercent } from "../lib/spamguard.js";

const $ = (id) => document.getElementById(id);
let tabId = null;

async function ask(request) {
  const answer = await messenger.runtime.sendMessage({ ...request, tabId });
  if (!answer?.ok) {
    throw new Error(answer?.error ?? "no answer from the add-on");
  }
  return answer.value;
}

function showError(err) {
  $("error").textContent = err.message ?? String(err);
  $("error").hidden = false;
}

function item(list, weight, text, cls) {
  const li = document.createElement("li");
  const w = document.createElement("span");
  w.className = `w ${cls}`;
  w.textContent = weight;
  const t = document.createElement("span");
  t.textContent = text;
  li.append(w, t);
  list.append(li);
}

function showSimilar(similar) {
  const list = $("similar");
  list.replaceChildren();
  if (!similar?.length) {
    item(list, "", "none close enough (or the model keeps none)", "");
    return;
  }
  for (const s of similar) {
    item(list, s.similarity.toFixed(2), `${s.label === "spam" ? "spam" : "not spam"}: ${s.subject}`, s.label === "spam" ? "pos" : "neg");
  }
}

function show(result) {
  const pct = $("percent");
  pct.textContent = formatPercent(result.p_spam);
  pct.className = `percent ${result.band}`;
  $("band").textContent = `${bandWords(result.band)}` + (result.label ? ` (you said ${result.label === "ham" ? "not spam" : "spam"})` : "");
  const moved = (result.actions ?? []).filter((a) => a.action === "move_junk").length ? "; SpamGuard moved it to Junk" : "";
  $("source").textContent = `${result.source}${moved} · model ${result.model_version}`;
  const reasons = $("reasons");
  reasons.replaceChildren();
  for (const r of result.reasons ?? []) {
    item(reasons, (r.weight > 0 ? "+" : "") + r.weight.toFixed(2), r.detail, r.weight > 0 ? "pos" : "neg");
  }
  if (result.similar?.length || result.source !== "already scored") {
    showSimilar(result.similar);
  }
}

async function main() {
  const [tab] = await messenger.tabs.query({ active: true, currentWindow: true });
  tabId = tab?.id ?? null;
  const state = await ask({ type: "state" });
  show(state.result);
  if (state.result.source === "already scored") {
    ask({ type: "details" }).then((d) => showSimilar(d.similar), () => showSimilar([]));
  }
}

messenger.runtime.onMessage.addListener((msg) => {
  if (msg?.type === "explain-piece" && msg.tabId === tabId) {
    $("explanation").classList.remove("muted");
    $("explanation").textContent += msg.text;
  }
});

$("explain").addEventListener("click", async () => {
  $("explain").disabled = true;
  $("explanation").textContent = "";
  try {
    const answer = await ask({ type: "explain" });
    $("explanation").classList.remove("muted");
    $("explanation").textContent = answer.text + (answer.note ? `\n(${answer.note})` : "");
  } catch (err) {
    showError(err);
  } finally {
    $("explain").disabled = false;
  }
});

for (const which of ["spam", "ham"]) {
  $(which).addEventListener("click", async () => {
    $("spam").disabled = $("ham").disabled = true;
    try {
      const answer = await ask({ type: "label", label: which });
      $("done").textContent = answer.summary;
      $("done").hidden = false;
    } catch (err) {
      showError(err);
      $("spam").disabled = $("ham").disabled = false;
    }
  });
}

main().catch(showError);
