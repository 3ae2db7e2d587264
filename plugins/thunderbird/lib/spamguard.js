// The add-on's logic, free of globals: every function takes the `messenger` API (and the
// native-host client) it uses, so node's test runner can drive it with a mocked messenger.

export const HOST_NAME = "spamguard";
export const DEFAULT_MAX_RAW = 256 * 1024;

const BAND_WORDS = {
  spam: "spam",
  flagged: "suspicious",
  fine: "not spam",
};

// A request/answer client over a native-messaging port. Answers carry the request's id;
// `partial` answers (the LLM's pieces) go to onPartial before the final one.
export function createClient(port) {
  let next = 1;
  const pending = new Map();
  let closedError = null;

  port.onMessage.addListener((msg) => {
    const waiter = msg && pending.get(msg.id);
    if (!waiter) {
      return; // an answer to nothing we asked (or an error about an unreadable request)
    }
    if (msg.partial) {
      waiter.onPartial?.(msg.text ?? "");
      return;
    }
    pending.delete(msg.id);
    if (msg.ok) {
      waiter.resolve(msg);
    } else {
      waiter.reject(new Error(msg.error || "SpamGuard gave no reason"));
    }
  });
  port.onDisconnect.addListener((p) => {
    const why = p?.error?.message || port.error?.message || "";
    closedError = new Error(
      "SpamGuard is not reachable" +
        (why ? `: ${why}` : "") +
        ". Run `spamguard thunderbird install`, then restart Thunderbird.",
    );
    for (const waiter of pending.values()) {
      waiter.reject(closedError);
    }
    pending.clear();
  });

  return {
    get closed() {
      return closedError;
    },
    request(type, body = {}, { onPartial } = {}) {
      if (closedError) {
        return Promise.reject(closedError);
      }
      const id = next++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject, onPartial });
        port.postMessage({ ...body, id, type });
      });
    },
  };
}

// "97 %": rounded down, as the tray app shows it (0.898 must not read 90 % = the move line).
export function formatPercent(p) {
  const pct = Math.floor(Number(p) * 100);
  return `${Math.max(0, Math.min(100, pct))} %`;
}

export function bandWords(band) {
  return BAND_WORDS[band] ?? band;
}

export function badgeFor(result) {
  if (!result) {
    return { text: "", color: "#808080" };
  }
  const colors = { spam: "#C62828", flagged: "#E8A317", fine: "#2E7D32" };
  return { text: formatPercent(result.p_spam).replace(" ", ""), color: colors[result.band] ?? "#808080" };
}

export function isJunkFolder(folder) {
  if (!folder) {
    return false;
  }
  if (Array.isArray(folder.specialUse) && folder.specialUse.includes("junk")) {
    return true;
  }
  return folder.type === "junk";
}

// What the banner above the message says; null when there is nothing to warn about.
export function bannerFor(result, folder) {
  if (!result) {
    return null;
  }
  const pct = formatPercent(result.p_spam);
  const movedByUs = (result.actions ?? []).some((a) => a.action === "move_junk");
  if (result.label === "ham") {
    return null; // the user said not spam: no more warnings
  }
  if (result.band === "spam" || (isJunkFolder(folder) && movedByUs)) {
    const where = movedByUs ? "SpamGuard moved it to Junk" : "it belongs in Junk";
    return { kind: "spam", text: `SpamGuard: ${pct} likely spam; ${where}.` };
  }
  if (result.band === "flagged") {
    return { kind: "flagged", text: `SpamGuard: ${pct} likely spam; it looks suspicious.` };
  }
  return null;
}

const hintsByApi = new WeakMap();

// Who the message belongs to, for SpamGuard to pick its account (cached: accounts rarely
// change, and this runs for every message shown).
export function accountHint(messenger, accountId) {
  if (!hintsByApi.has(messenger)) {
    hintsByApi.set(messenger, new Map());
  }
  const hints = hintsByApi.get(messenger);
  if (!hints.has(accountId)) {
    const pending = readAccountHint(messenger, accountId);
    hints.set(accountId, pending);
    pending.then((hint) => hint.type || hints.delete(accountId));
  }
  return hints.get(accountId);
}

async function readAccountHint(messenger, accountId) {
  try {
    const account = await messenger.accounts.get(accountId, false);
    if (!account) {
      return { id: accountId, name: "", type: "", emails: [] };
    }
    return {
      id: account.id,
      name: account.name ?? "",
      type: account.type ?? "",
      emails: (account.identities ?? []).map((i) => i.email).filter(Boolean),
    };
  } catch {
    return { id: accountId, name: "", type: "", emails: [] };
  }
}

export function bytesToBase64(bytes) {
  let text = "";
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
  }
  return btoa(text);
}

// The head of the message, base64: SpamGuard scores at most maxRaw bytes, so the rest of
// a 30 MB message never leaves Thunderbird.
export async function rawBase64(messenger, messageId, maxRaw = DEFAULT_MAX_RAW) {
  const file = await messenger.messages.getRaw(messageId, { data_format: "File" });
  const head = await file.slice(0, maxRaw).arrayBuffer();
  return bytesToBase64(new Uint8Array(head));
}

// Score for one displayed message: SpamGuard's stored score when it has one (fast: no
// message bytes move), else the message's bytes scored now.
export async function analyse(messenger, client, message, { maxRaw = DEFAULT_MAX_RAW } = {}) {
  const account = await accountHint(messenger, message.folder?.accountId);
  if (message.headerMessageId) {
    const found = await client.request("lookup", {
      message_id: message.headerMessageId,
      account,
    });
    if (found.found) {
      return found.result;
    }
  }
  const raw = await rawBase64(messenger, message.id, maxRaw);
  const scored = await client.request("score", { raw, message_id: message.headerMessageId, account });
  return scored.result;
}

// The "similar known messages" and full reasons need the full model on the bytes.
export async function details(messenger, client, message, { maxRaw = DEFAULT_MAX_RAW } = {}) {
  const raw = await rawBase64(messenger, message.id, maxRaw);
  const scored = await client.request("score", { raw });
  return scored.result;
}

export async function explain(messenger, client, message, onPiece, { maxRaw = DEFAULT_MAX_RAW } = {}) {
  const raw = await rawBase64(messenger, message.id, maxRaw);
  const answer = await client.request("explain", { raw }, { onPartial: onPiece });
  return answer;
}

function walk(folders, match) {
  for (const f of folders ?? []) {
    if (match(f)) {
      return f;
    }
    const inner = walk(f.subFolders, match);
    if (inner) {
      return inner;
    }
  }
  return null;
}

// The account's Junk or Inbox folder (by special use; a folder named so as a fallback).
export async function findFolder(messenger, accountId, use) {
  if (messenger.folders?.query) {
    const found = await messenger.folders.query({ accountId, specialUse: [use] });
    if (found?.length) {
      return found[0];
    }
  }
  const account = await messenger.accounts.get(accountId, true);
  const name = use === "junk" ? /^(junk|spam)$/i : /^inbox$/i;
  return (
    walk(account?.folders ?? account?.rootFolder?.subFolders, (f) =>
      (f.specialUse ?? []).includes(use) || f.type === use,
    ) ?? walk(account?.folders ?? account?.rootFolder?.subFolders, (f) => name.test(f.name ?? ""))
  );
}

// Spam / Not spam: SpamGuard records the label (the same path as `spamguard label` and the
// tray app's buttons); a message SpamGuard watches on the server it also moves there, any
// other (POP, local folders) the add-on moves here.
export async function label(messenger, client, message, which, { maxRaw = DEFAULT_MAX_RAW } = {}) {
  if (which !== "spam" && which !== "ham") {
    throw new Error(`unknown label ${which}`);
  }
  const account = await accountHint(messenger, message.folder?.accountId);
  const raw = await rawBase64(messenger, message.id, maxRaw);
  const answer = await client.request("label", {
    label: which,
    message_id: message.headerMessageId ?? "",
    account,
    folder: message.folder?.path ?? "",
    raw,
  });
  const inJunk = isJunkFolder(message.folder);
  let moved = "";
  if (answer.moved_by === "spamguard") {
    moved = which === "spam" ? "SpamGuard moved it to Junk" : "SpamGuard moved it back";
  } else if (which === "spam" && !inJunk) {
    const junk = await findFolder(messenger, message.folder.accountId, "junk");
    if (!junk) {
      moved = "this account has no Junk folder, so it stays here";
    } else {
      await messenger.messages.move([message.id], junk.id ?? junk);
      moved = "moved to Junk";
    }
  } else if (which === "ham" && inJunk) {
    const inbox = await findFolder(messenger, message.folder.accountId, "inbox");
    if (!inbox) {
      moved = "this account has no Inbox, so it stays here";
    } else {
      await messenger.messages.move([message.id], inbox.id ?? inbox);
      moved = "moved to the Inbox";
    }
  }
  const what = answer.recorded ? "SpamGuard learnt it" : "SpamGuard already had that label";
  return { ...answer, summary: [`Labelled ${bandWords(which === "ham" ? "fine" : "spam")}: ${what}`, moved].filter(Boolean).join("; ") };
}

// SpamGuard's IMAP keywords as named Thunderbird tags (Thunderbird shows a keyword as a tag
// once a tag with that key exists).
export async function ensureTags(messenger, tags) {
  const api = messenger.messages.tags;
  const made = [];
  for (const t of tags ?? []) {
    try {
      if (api?.create) {
        await api.create(t.key, t.name, t.color);
      } else {
        await messenger.messages.createTag(t.key, t.name, t.color);
      }
      made.push(t.key.toLowerCase());
    } catch {
      // It exists already (create throws then): keep the user's name and colour for it.
    }
  }
  return made;
}
