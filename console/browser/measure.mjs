// Page load times of a running console, server and browser, for docs/console.md:
//   node measure.mjs http://127.0.0.1:8080 [TOKEN]
// Server time is the time to the last byte of the HTML (fetch from node, median of 5);
// browser time is navigation start to the load event in chromium (median of 5).
import { chromium } from "playwright-core";

const [base = "http://127.0.0.1:8080", token] = process.argv.slice(2);
const pages = ["/", "/timeline", "/c/0/topics", "/c/0/topics?q=7", "/c/0/groups", "/c/0/groups?page=2", "/c/0/messages"];
const headers = token ? { authorization: `Bearer ${token}` } : {};
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu"] });
const context = await browser.newContext({ extraHTTPHeaders: headers });
const page = await context.newPage();
console.log("| page | server, ms | browser load, ms | HTML bytes |\n|---|---|---|---|");
for (const path of pages) {
  const server = [];
  let size = 0;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const r = await fetch(base + path, { headers });
    size = (await r.text()).length;
    server.push(performance.now() - t);
  }
  const load = [];
  for (let i = 0; i < 5; i++) {
    await page.goto(base + path, { waitUntil: "load" });
    load.push(await page.evaluate(() => {
      const n = performance.getEntriesByType("navigation")[0];
      return n.loadEventEnd - n.startTime;
    }));
  }
  console.log(`| \`${path}\` | ${median(server).toFixed(1)} | ${median(load).toFixed(1)} | ${size} |`);
}
await browser.close();
