// Background page: one connection to SpamGuard's native host for the whole session (the
// model stays loaded between messages), a score per displayed message, and the answers the
// popup and the banner ask for.
import {
  DEFAULT_MAX_RAW,
  HOST_NAME,
  analyse,
  badgeFor,
  bannerFor,
  createClient,
  details,
  ensureTags,
  explain,
  label,
} from "./lib/spamguard.js";

const state = {
  client: null,
  hello: null,
  maxRaw: DEFAULT_MAX_RAW,
  results: new Map(), // message id -> Promise of a result
};

function connect() {
  const port = messenger.runtime.connectNative(HOST_NAME);
  state.client = createClient(port);
  state.results.clear();
  state.hello = state.client
    .request("hello", { addon_version: messenger.runtime.getManifest().version })
    .then(async (hello) => {
      state.maxRaw = hello.max_raw_bytes || DEFAULT_MAX_RAW;
      await ensureTags(messenger, hello.tags);
      return hello;
    });
  state.hello.catch(() => {});
  return state.client;
}

function client() {
  if (!state.client || state.client.closed) {
    connect();
  }
  return state.client;
}

function resultFor(message) {
  let pending = state.results.get(message.id);
  if (!pending) {
    pending = analyse(messenger, client(), message, { maxRaw: state.maxRaw });
    state.results.set(message.id, pending);
    pending.catch(() => state.results.delete(message.id));
  }
  return pending;
}

async function showBadge(tab, message) {
  try {
    const result = await resultFor(message);
    const badge = badgeFor(result);
    await messenger.messageDisplayAction.setBadgeText({ tabId: tab.id, text: badge.text });
    await messenger.messageDisplayAction.setBadgeBackgroundColor({ tabId: tab.id, color: badge.color });
  } catch (err) {
    await messenger.messageDisplayAction.setBadgeText({ tabId: tab.id, text: "!" });
    await messenger.messageDisplayAction.setTitle({ tabId: tab.id, title: "SpamGuard: not available (open for why)" });
  }
}

async function displayed(tabId) {
  const message = await messenger.messageDisplay.getDisplayedMessage(tabId);
  if (!message) {
    throw new Error("no message is displayed");
  }
  return message;
}

async function handle(request, sender) {
  const tabId = request.tabId ?? sender?.tab?.id;
  switch (request.type) {
    case "state": {
      const message = await displayed(tabId);
      const result = await resultFor(message);
      return { message: { subject: message.subject, folder: message.folder }, result };
    }
    case "banner": {
      const message = await displayed(tabId);
      const result = await resultFor(message);
      return bannerFor(result, message.folder);
    }
    case "details": {
      const message = await displayed(tabId);
      return details(messenger, client(), message, { maxRaw: state.maxRaw });
    }
    case "explain": {
      const message = await displayed(tabId);
      const answer = await explain(messenger, client(), message, (piece) => {
        messenger.runtime.sendMessage({ type: "explain-piece", tabId, text: piece }).catch(() => {});
      }, { maxRaw: state.maxRaw });
      return { text: answer.text, note: answer.note };
    }
    case "label": {
      const message = await displayed(tabId);
      const answer = await label(messenger, client(), message, request.label, { maxRaw: state.maxRaw });
      state.results.delete(message.id);
      return answer;
    }
    default:
      throw new Error(`unknown request ${request.type}`);
  }
}

messenger.runtime.onMessage.addListener((request, sender) => {
  if (!request || typeof request.type !== "string" || request.type === "explain-piece") {
    return undefined;
  }
  // Errors travel as values: a rejected promise loses its text on the way to the popup.
  return handle(request, sender).then(
    (value) => ({ ok: true, value }),
    (err) => ({ ok: false, error: err?.message ?? String(err) }),
  );
});

// Selecting a message starts the lookup while Thunderbird is still fetching the message
// itself, so the score is usually ready when the message shows.
messenger.mailTabs.onSelectedMessagesChanged.addListener((tab, selected) => {
  if (selected?.messages?.length === 1) {
    showBadge(tab, selected.messages[0]);
  }
});

messenger.messageDisplay.onMessageDisplayed.addListener((tab, message) => {
  // Thunderbird 128+ passes a list when several messages are shown; one is what we score.
  const one = Array.isArray(message?.messages) ? message.messages[0] : message;
  if (one) {
    showBadge(tab, one);
  }
});

messenger.messageDisplayScripts.register({
  js: [{ file: "display/banner.js" }],
  css: [{ file: "display/banner.css" }],
});

connect();
