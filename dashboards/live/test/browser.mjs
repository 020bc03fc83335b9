// Browser test of the live dashboard: headless Chromium (Debian's /usr/bin/chromium) driven
// by playwright-core loads the page served by a running `pulse api` while posts flow, and
// checks what a person looking at it would: the channel is picked, every KPI shows a figure,
// every chart has data (the history with both a batch and a speed part), the live stream
// fills and then grows by posts that arrived after the page loaded, entities are
// highlighted, the live window is kept in the URL across a reload, and nothing failed in
// the page; and, with the charting library blocked, the KPIs and the stream still work while
// the chart areas say what is missing. Saves a screenshot.
//
//   node test/browser.mjs --url http://127.0.0.1:8080/ --channel synthetic/tech \
//        --screenshot /tmp/dashboard.png
//
// Exits 0 when every check passed, 1 with the failed check otherwise.

import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    channel: { type: "string" },
    screenshot: { type: "string" },
    chromium: { type: "string", default: process.env.CHROMIUM ?? "/usr/bin/chromium" },
    timeout: { type: "string", default: "90" },
  },
});
if (!args.url || !args.channel || !args.screenshot) {
  console.error("usage: browser.mjs --url URL --channel CHANNEL --screenshot FILE [--chromium PATH] [--timeout SECONDS]");
  process.exit(2);
}
const timeout = Number(args.timeout) * 1000;

const browser = await chromium.launch({
  executablePath: args.chromium,
  // Root in a container or CI has no user namespace for Chromium's sandbox.
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const problems = [];
let page;
try {
  page = await browser.newPage({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`${response.status()} from ${response.url()}`);
  });

  const url = new URL(args.url);
  url.searchParams.set("channel", args.channel);
  await page.goto(url.href, { waitUntil: "load" });

  await check("the channel picker offers and selects the channel", () =>
    page.waitForFunction(
      (channel) => {
        const select = document.getElementById("channel");
        return select.value === channel && [...select.options].some((o) => o.value === channel);
      },
      args.channel,
      { timeout },
    ),
  );

  await check("the stream is live (SSE connected)", () =>
    page.waitForFunction(() => document.querySelector("#status .label")?.textContent === "live", null, { timeout }),
  );

  await check("every KPI shows a figure", () =>
    page.waitForFunction(
      () =>
        ["kpi-rate", "kpi-count", "kpi-score", "kpi-positive", "kpi-negative"].every((id) => {
          const text = document.getElementById(id).textContent.trim();
          return text !== "" && text !== "–";
        }),
      null,
      { timeout },
    ),
  );

  // Each chart's data as ECharts holds it: what is drawn, not what was fetched.
  const chartData = () =>
    page.evaluate(() => {
      const series = (name) => window.echarts.getInstanceByDom(document.querySelector(`[data-chart="${name}"]`))?.getOption()?.series ?? [];
      const values = (s) => (s?.data ?? []).map((d) => (Array.isArray(d) ? d[1] : typeof d === "object" && d !== null ? d.value : d));
      const positive = (s) => values(s).filter((v) => typeof v === "number" && v > 0).length;
      const sentiment = series("sentiment");
      const history = series("history");
      return {
        sentimentMinutesWithPosts: Math.max(0, ...sentiment.filter((s) => s.type === "bar").map(positive)),
        sentimentScoredMinutes: values(sentiment.find((s) => s.type === "line")).filter((v) => typeof v === "number").length,
        emotions: positive(series("emotions")[0]),
        keywords: positive(series("keywords")[0]),
        entities: positive(series("entities")[0]),
        historyBatchBuckets: positive(history.find((s) => s.name.startsWith("batch"))),
        historySpeedBuckets: positive(history.find((s) => s.name.startsWith("speed"))),
      };
    });

  let charts;
  await check("every chart has data (history: batch and speed buckets)", async () => {
    const deadline = Date.now() + timeout;
    for (;;) {
      charts = await chartData();
      if (Object.values(charts).every((n) => n > 0)) return;
      if (Date.now() > deadline) throw new Error(`charts without data: ${JSON.stringify(charts)}`);
      await page.waitForTimeout(500);
    }
  });

  const shown = () => page.$$eval("#stream li", (items) => items.map((li) => li.dataset.postId));
  await check("the live stream shows posts", () =>
    page.waitForFunction(() => document.querySelectorAll("#stream li").length > 0, null, { timeout }),
  );
  const first = new Set(await shown());
  await check("the live stream grows with posts that arrive after the page loaded", () =>
    page.waitForFunction(
      (seen) => [...document.querySelectorAll("#stream li")].some((li) => !seen.includes(li.dataset.postId)),
      [...first],
      { timeout },
    ),
  );
  const stream = await page.evaluate(() => ({
    posts: document.querySelectorAll("#stream li").length,
    coloured: document.querySelectorAll("#stream li.positive, #stream li.negative").length,
    entities: document.querySelectorAll("#stream mark.entity").length,
  }));
  await check("posts are coloured by sentiment and entities are highlighted", async () => {
    if (stream.coloured === 0) throw new Error("no post is marked positive or negative");
    if (stream.entities === 0) throw new Error("no entity is highlighted in the stream");
  });

  await page.screenshot({ path: args.screenshot, fullPage: true });

  await check("the languages KPI shows shares and the picker keeps the feed to one language", async () => {
    await page.waitForFunction(
      () => document.getElementById("lang").options.length > 1 && /%/.test(document.getElementById("kpi-langs").textContent),
      null,
      { timeout },
    );
    const lang = await page.evaluate(() => document.getElementById("lang").options[1].value);
    await page.selectOption("#lang", lang);
    await page.waitForFunction(
      (lang) => {
        const tags = [...document.querySelectorAll("#stream li .lang")].map((e) => e.textContent);
        return new URL(location.href).searchParams.get("lang") === lang && tags.length > 0 && tags.every((t) => t === lang);
      },
      lang,
      { timeout },
    );
    await page.selectOption("#lang", "");
    await page.waitForFunction(() => !new URL(location.href).searchParams.has("lang") && document.querySelectorAll("#stream li").length > 0, null, { timeout });
  });

  await check("the 24 hour window shows hourly buckets", async () => {
    await page.click('button[data-window="24h"]');
    await page.waitForFunction(
      () => document.getElementById("sentiment-note").textContent.includes("per hour"),
      null,
      { timeout },
    );
    const hourly = await chartData();
    if (hourly.sentimentMinutesWithPosts === 0) throw new Error("no hourly bar with posts");
  });

  await check("the live window is kept in the URL and restored on reload", async () => {
    const kept = new URL(page.url()).searchParams;
    if (kept.get("window") !== "24h" || kept.get("channel") !== args.channel) {
      throw new Error(`the URL is ${page.url()}`);
    }
    await page.reload({ waitUntil: "load" });
    await page.waitForFunction(
      () =>
        document.querySelector('button[data-window="24h"]').getAttribute("aria-pressed") === "true" &&
        document.getElementById("sentiment-note").textContent.includes("per hour"),
      null,
      { timeout },
    );
  });

  await check("without the charting library, the KPIs and the stream work and the charts say why", async () => {
    const bare = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const errors = [];
    bare.on("pageerror", (error) => errors.push(`page error: ${error.message}`));
    await bare.route("**/vendor/echarts.min.js", (route) => route.abort());
    await bare.goto(url.href, { waitUntil: "load" });
    await bare.waitForFunction(
      () =>
        ["kpi-rate", "kpi-count", "kpi-score"].every((id) => {
          const text = document.getElementById(id).textContent.trim();
          return text !== "" && text !== "–";
        }) && document.querySelectorAll("#stream li").length > 0,
      null,
      { timeout },
    );
    const areas = await bare.$$eval("[data-chart]", (elements) =>
      elements.map((e) => ({ unavailable: e.classList.contains("unavailable"), text: e.textContent })),
    );
    await bare.close();
    if (errors.length) throw new Error(errors.join("; "));
    if (areas.length === 0 || !areas.every((a) => a.unavailable && a.text.includes("vendor/echarts.min.js"))) {
      throw new Error(`chart areas: ${JSON.stringify(areas)}`);
    }
  });
  if (problems.length) throw new Error(`the page reported problems:\n  ${problems.join("\n  ")}`);
  console.log(JSON.stringify({ ok: true, charts, stream, newPosts: (await shown()).filter((id) => !first.has(id)).length, screenshot: args.screenshot }));
} catch (error) {
  console.error(`dashboard test failed: ${error.message}`);
  // The page as it was when the check failed, to see why.
  await page?.screenshot({ path: args.screenshot }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}

async function check(what, run) {
  try {
    await run();
    console.error(`ok: ${what}`);
  } catch (error) {
    throw new Error(`${what}: ${error.message}`);
  }
}
