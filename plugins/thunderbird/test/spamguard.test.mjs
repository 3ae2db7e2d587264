// The add-on's logic under node's test runner (`node --test plugins/thunderbird/test`),
// with a mocked `messenger` API and a fake native port that answers like SpamGuard's host.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  analyse,
  bannerFor,
  bytesToBase64,
  createClient,
  ensureTags,
  findFolder,
  formatPercent,
  label,
  rawBase64,
} from "../lib/spamguard.js";

function event() {
  const listeners = [];
  return {
    addListener: (f) => listeners.push(f),
    fire: (...args) => listeners.forEach((f) => f(...args)),
  };
}

// A port whose peer is `answer(request) -> [messages]`, delivered asynchronously.
function fakePort(answer) {
  const port = { onMessage: event(), onDisconnect: event(), sent: [] };
  port.postMessage = (msg) => {
    port.sent.push(msg);
    queueMicrotask(() => {
      for (const out of answer(msg)) {
        port.onMessage.fire(out);
      }
    });
  };
  return port;
}

const INBOX = { id: "acc1://INBOX", accountId: "acc1", path: "/INBOX", name: "Inbox", specialUse: ["inbox"] };
const JUNK = { id: "acc1://Junk", accountId: "acc1", path: "/Junk", name: "Junk", specialUse: ["junk"] };

function mockMessenger({ raw = "From: a@b\r\nSubject: hi\r\n\r\nbody\r\n", folders = [INBOX, JUNK], type = "imap" } = {}) {
  const calls = { move: [], getRaw: [], tags: [] };
  const existingTags = new Set(["$label1"]);
  return {
    calls,
    accounts: {
      get: async (id) => ({
        id,
        name: "Work",
        type,
        identities: [{ email: "alice@example.org" }],
        folders,
      }),
    },
    folders: {
      query: async ({ specialUse }) => folders.filter((f) => (f.specialUse ?? []).includes(specialUse[0])),
    },
    messages: {
      getRaw: async (id, options) => {
        calls.getRaw.push([id, options]);
        assert.equal(options?.data_format, "File");
        return new Blob([typeof raw === "function" ? raw() : raw]);
      },
      move: async (ids, dest) => {
        calls.move.push([ids, dest]);
      },
      tags: {
        create: async (key, name, color) => {
          if (existingTags.has(key.toLowerCase())) {
            throw new Error(`tag ${key} exists`);
          }
          existingTags.add(key.toLowerCase());
          calls.tags.push([key, name, color]);
        },
      },
    },
  };
}

test("client pairs answers with requests, passes partial pieces, and reports errors", async () => {
  const port = fakePort((req) => {
    if (req.type === "explain") {
      return [
        { id: req.id, partial: true, text: "Looks " },
        { id: req.id, partial: true, text: "like spam." },
        { id: req.id, ok: true, text: "Looks like spam." },
      ];
    }
    return [{ id: req.id, ok: false, error: "unknown request type 'nope'" }];
  });
  const client = createClient(port);
  const pieces = [];
  const answer = await client.request("explain", { raw: "x" }, { onPartial: (p) => pieces.push(p) });
  assert.deepEqual(pieces, ["Looks ", "like spam."]);
  assert.equal(answer.text, "Looks like spam.");
  await assert.rejects(client.request("nope"), /unknown request type 'nope'/);
});

test("a host that is not installed fails every request with what to do", async () => {
  const port = fakePort(() => []);
  const client = createClient(port);
  const pending = client.request("hello");
  port.onDisconnect.fire({ error: { message: "No such native application spamguard" } });
  await assert.rejects(pending, /No such native application spamguard.*spamguard thunderbird install/);
  await assert.rejects(client.request("lookup"), /not reachable/);
});

test("percentages round down like the tray app", () => {
  assert.equal(formatPercent(0.898), "89 %");
  assert.equal(formatPercent(0.999), "99 %");
  assert.equal(formatPercent(1), "100 %");
  assert.equal(formatPercent(0.05), "5 %");
});

test("an already scored message is looked up by Message-ID without reading its bytes", async () => {
  const stored = { source: "already scored", p_spam: 0.97, band: "spam", reasons: [] };
  const port = fakePort((req) => [{ id: req.id, ok: true, found: true, result: stored }]);
  const m = mockMessenger();
  const result = await analyse(m, createClient(port), { id: 7, headerMessageId: "abc@x", folder: JUNK });
  assert.deepEqual(result, stored);
  assert.equal(port.sent.length, 1);
  assert.equal(port.sent[0].type, "lookup");
  assert.equal(port.sent[0].message_id, "abc@x");
  assert.deepEqual(port.sent[0].account.emails, ["alice@example.org"]);
  assert.equal(m.calls.getRaw.length, 0);
});

test("an unknown message (POP, local folders) is sent as bytes and scored", async () => {
  const raw = "From: a@b\r\nSubject: Win money\r\n\r\nclick\r\n";
  const port = fakePort((req) =>
    req.type === "lookup"
      ? [{ id: req.id, ok: true, found: false }]
      : [{ id: req.id, ok: true, result: { source: "scored now", p_spam: 0.6, band: "flagged", echo: req.raw } }],
  );
  const m = mockMessenger({ raw, type: "pop3" });
  const result = await analyse(m, createClient(port), { id: 3, headerMessageId: "n@x", folder: INBOX });
  assert.deepEqual(port.sent.map((r) => r.type), ["lookup", "score"]);
  assert.equal(Buffer.from(result.echo, "base64").toString(), raw);
  assert.equal(port.sent[1].account.type, "pop3");
});

test("only the head of a 30 MB message is read and sent", async () => {
  const big = "From: a@b\r\nSubject: big\r\n\r\n" + "x".repeat(30 * 1024 * 1024);
  const m = mockMessenger({ raw: big });
  const encoded = await rawBase64(m, 1, 256 * 1024);
  const bytes = Buffer.from(encoded, "base64");
  assert.equal(bytes.length, 256 * 1024);
  assert.equal(bytes.subarray(0, 10).toString(), "From: a@b\r");
});

test("base64 of binary bytes matches node's own encoder", () => {
  const bytes = new Uint8Array(100000).map((_, i) => (i * 7919) % 256);
  assert.equal(bytesToBase64(bytes), Buffer.from(bytes).toString("base64"));
});

test("Not spam in Junk: the add-on moves a message SpamGuard does not watch to the Inbox", async () => {
  const port = fakePort((req) => [{ id: req.id, ok: true, recorded: true, moved_by: "addon" }]);
  const m = mockMessenger({ type: "pop3" });
  const out = await label(m, createClient(port), { id: 9, headerMessageId: "q@x", folder: JUNK }, "ham");
  assert.equal(port.sent[0].label, "ham");
  assert.ok(port.sent[0].raw.length > 0);
  assert.deepEqual(m.calls.move, [[[9], INBOX.id]]);
  assert.match(out.summary, /SpamGuard learnt it; moved to the Inbox/);
});

test("Spam in the Inbox moves to Junk; a second press says the label was already there", async () => {
  let first = true;
  const port = fakePort((req) => {
    const recorded = first;
    first = false;
    return [{ id: req.id, ok: true, recorded, moved_by: "addon" }];
  });
  const m = mockMessenger();
  const client = createClient(port);
  const a = await label(m, client, { id: 4, headerMessageId: "s@x", folder: INBOX }, "spam");
  assert.deepEqual(m.calls.move, [[[4], JUNK.id]]);
  assert.match(a.summary, /SpamGuard learnt it/);
  const b = await label(m, client, { id: 4, headerMessageId: "s@x", folder: INBOX }, "spam");
  assert.match(b.summary, /already had that label/);
});

test("when SpamGuard moved it on the server, the add-on does not move it again", async () => {
  const port = fakePort((req) => [{ id: req.id, ok: true, recorded: true, moved_by: "spamguard" }]);
  const m = mockMessenger();
  const out = await label(m, createClient(port), { id: 5, headerMessageId: "t@x", folder: JUNK }, "ham");
  assert.deepEqual(m.calls.move, []);
  assert.match(out.summary, /SpamGuard moved it back/);
});

test("an account without a Junk folder keeps the message and says so", async () => {
  const port = fakePort((req) => [{ id: req.id, ok: true, recorded: true, moved_by: "addon" }]);
  const m = mockMessenger({ folders: [INBOX] });
  const out = await label(m, createClient(port), { id: 6, headerMessageId: "u@x", folder: INBOX }, "spam");
  assert.deepEqual(m.calls.move, []);
  assert.match(out.summary, /no Junk folder/);
});

test("a host error on label reaches the caller and nothing is moved", async () => {
  const port = fakePort((req) => [{ id: req.id, ok: false, error: "not a mail message: no headers" }]);
  const m = mockMessenger();
  await assert.rejects(
    label(m, createClient(port), { id: 6, headerMessageId: "u@x", folder: JUNK }, "ham"),
    /not a mail message/,
  );
  assert.deepEqual(m.calls.move, []);
});

test("findFolder falls back to the folder tree when folders.query is missing", async () => {
  const m = mockMessenger({ folders: [{ id: "r", name: "root", subFolders: [{ id: "s", name: "Spam" }] }] });
  delete m.folders;
  assert.equal((await findFolder(m, "acc1", "junk")).id, "s");
});

test("SpamGuard's keywords become tags; an existing tag is left as the user set it", async () => {
  const m = mockMessenger();
  const made = await ensureTags(m, [
    { key: "$SpamGuardFlag", name: "SpamGuard: suspicious", color: "#E8A317" },
    { key: "$label1", name: "clash", color: "#000000" },
  ]);
  assert.deepEqual(made, ["$spamguardflag"]);
  assert.deepEqual(m.calls.tags, [["$SpamGuardFlag", "SpamGuard: suspicious", "#E8A317"]]);
});

test("the banner warns for spam and suspicious mail, not for fine or rescued mail", () => {
  const moved = { p_spam: 0.97, band: "spam", actions: [{ action: "move_junk" }] };
  assert.match(bannerFor(moved, JUNK).text, /97 % likely spam; SpamGuard moved it to Junk/);
  assert.equal(bannerFor({ p_spam: 0.6, band: "flagged" }, INBOX).kind, "flagged");
  assert.equal(bannerFor({ p_spam: 0.1, band: "fine" }, INBOX), null);
  assert.equal(bannerFor({ ...moved, label: "ham" }, JUNK), null);
});

test("the manifest asks for exactly the permissions the code uses", () => {
  const manifest = JSON.parse(readFileSync(new URL("../manifest.json", import.meta.url)));
  assert.deepEqual([...manifest.permissions].sort(), [
    "accountsRead",
    "messagesModify",
    "messagesMove",
    "messagesRead",
    "messagesTags",
    "nativeMessaging",
  ]);
  assert.equal(manifest.browser_specific_settings.gecko.id, "spamguard@spamguard.invalid");
  assert.equal(manifest.content_security_policy, undefined); // the default: no remote code
  const code = ["background.js", "lib/spamguard.js", "popup/popup.js", "display/banner.js"]
    .map((f) => readFileSync(new URL(`../${f}`, import.meta.url), "utf8"))
    .join("\n");
  for (const banned of ["fetch(", "XMLHttpRequest", "WebSocket", "eval(", "innerHTML", "http://", "https://"]) {
    assert.ok(!code.includes(banned), `the add-on's code uses ${banned}`);
  }
});

test("the account is read once, not for every message shown", async () => {
  const port = fakePort((req) => [{ id: req.id, ok: true, found: true, result: { band: "fine" } }]);
  const m = mockMessenger();
  let reads = 0;
  const get = m.accounts.get;
  m.accounts.get = async (...args) => {
    reads += 1;
    return get(...args);
  };
  const client = createClient(port);
  for (const id of [1, 2, 3]) {
    await analyse(m, client, { id, headerMessageId: `m${id}@x`, folder: INBOX });
  }
  assert.equal(reads, 1);
  assert.deepEqual(port.sent.map((r) => r.account.name), ["Work", "Work", "Work"]);
});
