// The console in a real browser: playwright-core driving Debian's chromium, under
// `node --test`. tests/tests/cluster/t81_browser.rs starts a 3-process group and a
// `raftmq console` and runs this file with:
//   CONSOLE_URL   the console, http://127.0.0.1:PORT
//   ADMIN_TOKEN, READ_TOKEN
//   RAFTMQ_BIN, NAMESRV   to produce and consume with the CLI
//   NODE_PIDS     {"1": pid, ...} of the broker-a nodes, to kill -9 the leader
//   CHROMIUM      the browser binary (default /usr/bin/chromium)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this suite through t81_browser.rs`);
  return v;
};
const URL0 = env("CONSOLE_URL");
const ADMIN = env("ADMIN_TOKEN");
const READER = env("READ_TOKEN");
const PIDS = JSON.parse(env("NODE_PIDS"));
const raftmq = (...args) =>
  execFileSync(env("RAFTMQ_BIN"), ["-n", env("NAMESRV"), ...args], { encoding: "utf8" });

// Generous: a debug build on 2 cores. The failover bound below is the 5 s.
const WAIT = 30_000;

let browser;
const offHost = [];
const consoleErrors = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    // Root in CI: chromium's sandbox needs user namespaces it may not have.
    args: ["--no-sandbox", "--disable-gpu"],
  });
});

after(async () => {
  await browser?.close();
});

/// A signed-in page whose every request must go to 127.0.0.1 (others are aborted and
/// recorded) and whose console errors are recorded.
async function signedIn(token, { refusalsExpected = false } = {}) {
  const context = await browser.newContext();
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === "127.0.0.1") return route.continue();
    offHost.push(url.href);
    return route.abort();
  });
  const page = await context.newPage();
  page.on("console", (m) => {
    // The read-only page's deliberate mutation is refused, and chromium logs the refusal.
    if (refusalsExpected && /status of 403/.test(m.text())) return;
    if (m.type() === "error") consoleErrors.push(`${page.url()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  await page.goto(`${URL0}/`);
  assert.match(page.url(), /\/login$/, "an anonymous visit is sent to sign in");
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(`${URL0}/`), page.click("button[type=submit]")]);
  return { context, page };
}

let admin;
let sent;

test("the overview shows three nodes, one leader, one term", async () => {
  admin = await signedIn(ADMIN);
  const page = admin.page;
  await page.waitForFunction(
    () => document.querySelectorAll(".card").length === 3 && document.querySelectorAll(".card.role-leader").length === 1,
    null,
    { timeout: WAIT },
  );
  const roles = await page.$$eval(".node-role", (els) => els.map((e) => e.textContent).sort());
  assert.deepEqual(roles, ["follower", "follower", "leader"]);
  const terms = await page.$$eval(".card dl dd:first-of-type", (els) => new Set(els.map((e) => e.textContent)).size);
  assert.equal(terms, 1, "every node reports the same term");
  assert.equal(await page.textContent(".badge"), "healthy");
});

test("create a topic, send a message with a key, find it by key, id and offset", async () => {
  const page = admin.page;
  await page.goto(`${URL0}/c/0/topics`);
  await page.click("text=Create or update a topic");
  await page.fill("input[name=topic]", "BrowserT");
  await page.fill("input[name=queues]", "4");
  await page.click('form[hx-post="/c/0/topics"] button');
  await page.waitForSelector("#create-result .done", { timeout: WAIT });
  assert.match(await page.textContent("#create-result"), /raftmq topic create BrowserT --queues 4/);

  await page.goto(`${URL0}/c/0/topics/BrowserT`);
  await page.fill("textarea[name=body]", "hello from a browser");
  await page.fill("input[name=key]", "order-7");
  await page.click('form[hx-post$="/send"] button');
  await page.waitForSelector("#send-result .done", { timeout: WAIT });
  const id = (await page.textContent("#send-result .msg-id")).trim();
  const offset = (await page.textContent("#send-result .offset")).trim();
  const where = await page.textContent("#send-result .done p");
  const queue = where.match(/queue (\d+)/)[1];
  sent = { id, offset, queue };

  await page.goto(`${URL0}/c/0/messages`);
  const byKey = page.locator("form", { hasText: "By key" });
  await byKey.locator("input[name=topic]").fill("BrowserT");
  await byKey.locator("input[name=key]").fill("order-7");
  await Promise.all([page.waitForURL(/key=order-7/), byKey.locator("button").click()]);
  assert.equal((await page.textContent("table.results .msg-id")).trim(), id);

  const byId = page.locator("form", { hasText: "By id" });
  await byId.locator("input[name=id]").fill(id);
  await Promise.all([page.waitForURL(new RegExp(`/messages/${id}$`)), byId.locator("button").click()]);
  assert.equal((await page.textContent("h1 .msg-id")).trim(), id);
  assert.equal((await page.textContent("pre.body")).trim(), "hello from a browser");

  await page.goto(`${URL0}/c/0/messages`);
  const byOffset = page.locator("form", { hasText: "From an offset" });
  await byOffset.locator("input[name=topic]").fill("BrowserT");
  await byOffset.locator("input[name=broker_group]").fill("broker-a");
  await byOffset.locator("input[name=queue]").fill(queue);
  await byOffset.locator("input[name=offset]").fill(offset);
  await Promise.all([page.waitForURL(/offset=/), byOffset.locator("button").click()]);
  const ids = await page.$$eval("table.results .msg-id", (els) => els.map((e) => e.textContent.trim()));
  assert.ok(ids.includes(id), `${id} in ${ids}`);
});

test("a consumer brings the group's lag to 0 on screen without a reload", async () => {
  const page = admin.page;
  raftmq("produce", "--topic", "BrowserT", "--count", "9", "--quiet");
  // The group starts by consuming one message, so it exists with a lag of 9.
  raftmq("consume", "--topic", "BrowserT", "--group", "browser-g", "--from", "first", "--count", "1");
  await page.goto(`${URL0}/c/0/groups/browser-g`);
  const lag = async () => Number(await page.textContent(".total-lag"));
  assert.ok((await lag()) > 0, "the group lags before the consumer runs");
  await page.evaluate(() => (window.__noReload = true));
  raftmq("consume", "--topic", "BrowserT", "--group", "browser-g", "--idle-timeout", "3");
  await page.waitForFunction(() => document.querySelector(".total-lag")?.textContent === "0", null, { timeout: WAIT });
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was not reloaded");
});

test("kill -9 the leader: the page shows the new leader and a timeline entry within 5 s", async () => {
  const page = admin.page;
  await page.goto(`${URL0}/`);
  await page.waitForSelector(".leader", { timeout: WAIT });
  const old = (await page.textContent(".leader")).replace("node ", "").trim();
  assert.ok(PIDS[old], `a pid for node ${old} in ${JSON.stringify(PIDS)}`);
  await page.evaluate(() => (window.__noReload = true));
  const killed = Date.now();
  process.kill(PIDS[old], "SIGKILL");
  await page.waitForFunction(
    (old) => {
      const l = document.querySelector(".leader")?.textContent ?? "";
      const rows = [...document.querySelectorAll("#events tr.leadership td")].map((t) => t.textContent);
      return l !== "" && l !== `node ${old}` && rows.some((r) => r.startsWith(`leader ${old} → `));
    },
    old,
    { timeout: 5_000 },
  );
  const shown = Date.now() - killed;
  const now = (await page.textContent(".leader")).trim();
  console.log(`new leader ${now} and its timeline entry on screen ${shown} ms after kill -9 of node ${old}`);
  assert.equal(await page.evaluate(() => window.__noReload), true, "live, not reloaded");
});

test("the read-only token sees no mutating buttons and mutations answer 403", async () => {
  const { context, page } = await signedIn(READER, { refusalsExpected: true });
  for (const path of ["/c/0/topics", "/c/0/topics/BrowserT", "/c/0/groups/browser-g"]) {
    await page.goto(`${URL0}${path}`);
    assert.equal(await page.locator("[hx-post]").count(), 0, `${path} offers a mutation`);
    assert.equal(await page.textContent(".role"), "read-only");
  }
  const status = await page.evaluate(async () => {
    const csrf = JSON.parse(document.body.getAttribute("hx-headers"))["x-csrf-token"];
    const r = await fetch("/c/0/topics/BrowserT/delete", { method: "POST", headers: { "x-csrf-token": csrf } });
    return r.status;
  });
  assert.equal(status, 403);
  await context.close();
  // The topic is still there for the admin.
  await admin.page.goto(`${URL0}/c/0/topics/BrowserT`);
  assert.match(await admin.page.textContent("h1"), /BrowserT/);
});

test("the charts page draws three charts from the sampler's ring", async () => {
  const page = admin.page;
  await page.goto(`${URL0}/c/0/charts`);
  await page.waitForFunction(() => document.querySelectorAll(".chart canvas").length === 3, null, { timeout: WAIT });
  assert.equal(await page.locator("#charts.stale").count(), 0);
});

test("every request went to 127.0.0.1 and no page logged an error", async () => {
  await admin.context.close();
  assert.deepEqual(offHost, []);
  assert.deepEqual(consoleErrors, []);
});
