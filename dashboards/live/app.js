// Pulse's live dashboard. Talks only to the public API under /api/v1: the channel list, a
// channel's live window (speed layer), its merged history (batch rollups up to the
// watermark, speed-layer minutes after it) and the server-sent event feed of enriched posts.
// Posts arriving on the feed trigger a (throttled) refresh of the live figures, so the page
// moves when the channel does; a slow timer covers quiet channels and minute rollovers.
// The language picker keeps the feed to one language (the API filters the event stream);
// the languages KPI shows the window's posts by language.

const API = "api/v1";
const COLORS = {
  positive: "#3ba272",
  neutral: "#8d98b3",
  negative: "#ee6666",
  score: "#e6e9f0",
  batch: "#5b8ff9",
  speed: "#f6bd16",
  none: "#3a4255",
  emotion: "#9a7cf0",
  keyword: "#4fc3c9",
  entity: {
    person: "#f6bd16",
    organization: "#5b8ff9",
    location: "#5ad8a6",
    product: "#e8684a",
    creative_work: "#b478f0",
  },
};
const STREAM_KEEP = 60;
const LIVE_THROTTLE_MS = 1500;
const LIVE_POLL_MS = 10000;
const HISTORY_POLL_MS = 60000;
const CHANNELS_POLL_MS = 30000;

const WINDOWS = ["5m", "1h", "24h"];

const state = {
  channel: null,
  // The live window, kept in the URL (`?window=1h`) like the channel.
  window: WINDOWS.includes(new URLSearchParams(location.search).get("window"))
    ? new URLSearchParams(location.search).get("window")
    : "5m",
  // The feed's language (`?lang=es`), empty for every language.
  lang: new URLSearchParams(location.search).get("lang") ?? "",
  history: { range: "24h", from: null, to: null, granularity: "hour" },
  events: null,
  liveTimer: null,
  liveInFlight: false,
  liveQueued: false,
  lastLive: 0,
};

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const percent = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

const baseChart = {
  backgroundColor: "transparent",
  textStyle: { fontFamily: "system-ui, sans-serif", color: "#c7cede" },
  animationDuration: 400,
  animationDurationUpdate: 400,
};
const axisStyle = {
  axisLine: { lineStyle: { color: "#3a4255" } },
  axisLabel: { color: "#8a93a6" },
  splitLine: { lineStyle: { color: "#232a3a" } },
};

// Posts (bars, left axis) and mean score (line, right axis) over a time axis.
const postsAndScoreOverTime = {
  legend: { top: 0, left: "center", textStyle: { color: "#c7cede" } },
  grid: { left: 48, right: 48, top: 34, bottom: 28 },
  xAxis: { type: "time", ...axisStyle, splitLine: { show: false } },
  yAxis: [
    { type: "value", name: "posts", minInterval: 1, ...axisStyle, nameTextStyle: { color: "#8a93a6" } },
    { type: "value", name: "score", min: -1, max: 1, ...axisStyle, splitLine: { show: false }, nameTextStyle: { color: "#8a93a6" } },
  ],
};

// Without the charting library (vendor/echarts.min.js missing or blocked) the KPIs and the
// stream still work: each chart area says what is missing and takes no drawing.
const chartsMissing = typeof echarts === "undefined";
const charts = {};
for (const element of document.querySelectorAll("[data-chart]")) {
  if (chartsMissing) {
    element.classList.add("unavailable");
    element.textContent =
      "chart unavailable: vendor/echarts.min.js did not load (install the dashboard's npm packages: npm ci in dashboards/live)";
    charts[element.dataset.chart] = { setOption() {}, resize() {} };
  } else {
    charts[element.dataset.chart] = echarts.init(element, null, { renderer: "canvas" });
  }
}
window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));

async function api(path, params = {}) {
  const url = new URL(`${API}/${path}`, document.baseURI);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) url.searchParams.set(key, value);
  }
  const response = await fetch(url, { headers: { accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.detail || body.error || `${response.status} ${response.statusText}`);
  }
  return body;
}

let toastTimer = null;
function toast(message) {
  const element = $("toast");
  element.textContent = message;
  element.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (element.hidden = true), 6000);
}

function setStatus(kind, label) {
  const status = $("status");
  status.className = `status ${kind}`;
  status.querySelector(".label").textContent = label;
}

// ---- channels -------------------------------------------------------------------------

async function loadChannels() {
  const { channels } = await api("channels");
  const select = $("channel");
  const wanted = state.channel ?? new URLSearchParams(location.search).get("channel");
  select.replaceChildren(
    ...channels.map(({ channel, posts_24h }) => {
      const option = document.createElement("option");
      option.value = channel;
      option.textContent = `${channel} · ${integer.format(posts_24h)} in 24 h`;
      return option;
    }),
  );
  if (channels.length === 0) {
    const option = document.createElement("option");
    option.textContent = "no channels yet: ingest some posts";
    option.disabled = true;
    select.append(option);
    return;
  }
  const chosen = channels.some((c) => c.channel === wanted) ? wanted : channels[0].channel;
  select.value = chosen;
  if (chosen !== state.channel) selectChannel(chosen);
}

function selectChannel(channel) {
  state.channel = channel;
  const url = new URL(location.href);
  url.searchParams.set("channel", channel);
  history.replaceState(null, "", url);
  $("stream").replaceChildren();
  follow();
  refreshLive();
  refreshHistory();
}

// ---- live window ----------------------------------------------------------------------

// At most one /live request in flight and one per LIVE_THROTTLE_MS, however fast posts come.
function refreshLive() {
  if (!state.channel) return;
  if (state.liveInFlight) {
    state.liveQueued = true;
    return;
  }
  const wait = state.lastLive + LIVE_THROTTLE_MS - Date.now();
  if (wait > 0) {
    if (!state.liveTimer) {
      state.liveTimer = setTimeout(() => {
        state.liveTimer = null;
        refreshLive();
      }, wait);
    }
    return;
  }
  state.liveInFlight = true;
  state.lastLive = Date.now();
  const channel = state.channel;
  // A day per minute is 1,440 bars and reads; by hour it is 24.
  const series = state.window === "24h" ? "hour" : "minute";
  api("live", { channel, window: state.window, top: 10, series })
    .then((live) => {
      if (channel === state.channel) renderLive(live);
    })
    .catch((error) => toast(`live window: ${error.message}`))
    .finally(() => {
      state.liveInFlight = false;
      if (state.liveQueued) {
        state.liveQueued = false;
        refreshLive();
      }
    });
}

function renderLive(live) {
  const minutes = live.to_minute - live.from_minute;
  const totals = live.totals;
  const labelled = ["positive", "neutral", "negative"].reduce((n, l) => n + (totals.labels[l] ?? 0), 0);
  // The current bucket is still filling: the rate is taken over the complete ones.
  const spans = live.series.map((b, i) => (live.series[i + 1]?.minute ?? live.to_minute) - b.minute);
  const complete = live.series.slice(0, -1);
  const completeCount = complete.reduce((n, b) => n + b.count, 0);
  const completeMinutes = spans.slice(0, -1).reduce((n, m) => n + m, 0);
  $("kpi-rate").textContent = completeMinutes ? number.format(completeCount / completeMinutes) : "–";
  $("kpi-rate-note").textContent = `over the last ${duration(completeMinutes)}`;
  $("kpi-count").textContent = integer.format(totals.count);
  $("kpi-count-note").textContent = `last ${duration(minutes)}`;
  const score = $("kpi-score");
  score.textContent = live.mean_score === null ? "–" : signed(live.mean_score);
  score.className = `kpi-value ${live.mean_score > 0.05 ? "up" : live.mean_score < -0.05 ? "down" : ""}`;
  for (const label of ["positive", "negative"]) {
    const n = totals.labels[label] ?? 0;
    $(`kpi-${label}`).textContent = labelled ? percent.format(n / labelled) : "–";
    $(`kpi-${label}-note`).textContent = posts(n);
  }
  $("updated").textContent = `updated ${clock.format(new Date())}`;

  const hourly = spans.length > 1 && spans[1] === 60;
  $("sentiment-note").textContent = `posts per ${hourly ? "hour" : "minute"} by label, mean score`;
  renderLanguages(totals.languages ?? {}, totals.count);
  renderSentiment(live.series);
  renderEmotions(live.emotion_means);
  renderTerms(charts.keywords, live.keywords, () => COLORS.keyword, "no keywords in this window");
  renderTerms(
    charts.entities,
    live.entities.map(({ term, count }) => {
      const split = term.indexOf(":");
      return { kind: term.slice(0, split), term: term.slice(split + 1), count };
    }),
    (item) => COLORS.entity[item.kind] ?? COLORS.keyword,
    "no entities in this window",
  );
}

// The window's languages, most posts first: the KPI's top three and the picker's options
// (the chosen language stays offered even when the window has none of its posts).
function renderLanguages(languages, count) {
  const ranked = Object.entries(languages).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  $("kpi-langs").textContent = ranked.length
    ? ranked.slice(0, 3).map(([lang, n]) => `${lang} ${percent.format(n / count)}`).join(" · ")
    : "–";
  const picker = $("lang");
  const wanted = ["", ...ranked.map(([lang]) => lang)];
  if (state.lang && !wanted.includes(state.lang)) wanted.push(state.lang);
  const shown = [...picker.options].map((o) => o.value);
  if (shown.join() !== wanted.join()) {
    picker.replaceChildren(
      ...wanted.map((lang) => new Option(lang || "all", lang, false, lang === state.lang)),
    );
  }
  picker.value = state.lang;
}

function duration(minutes) {
  return minutes >= 120 ? `${number.format(minutes / 60)} h` : `${minutes} min`;
}

function posts(n) {
  return `${integer.format(n)} ${n === 1 ? "post" : "posts"}`;
}

function signed(value) {
  return `${value > 0 ? "+" : value < 0 ? "−" : ""}${Math.abs(value).toFixed(2)}`;
}

function emptyGraphic(show, text) {
  return show
    ? [{ type: "text", left: "center", top: "middle", style: { text, fill: "#8a93a6", fontSize: 13 } }]
    : [];
}

function renderSentiment(series) {
  const at = (m) => m.minute * 60000;
  const label = (name) => series.map((m) => [at(m), m.labels[name] ?? 0]);
  const mean = series.map((m) => [at(m), m.scored ? m.score_micros / 1e6 / m.scored : null]);
  const empty = series.every((m) => m.count === 0);
  charts.sentiment.setOption(
    {
      ...baseChart,
      graphic: emptyGraphic(empty, "no posts in this window yet"),
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      ...postsAndScoreOverTime,
      series: [
        ...["positive", "neutral", "negative"].map((name) => ({
          name,
          type: "bar",
          stack: "labels",
          barMaxWidth: 24,
          itemStyle: { color: COLORS[name] },
          data: label(name),
        })),
        {
          name: "mean score",
          type: "line",
          yAxisIndex: 1,
          smooth: true,
          connectNulls: true,
          showSymbol: false,
          lineStyle: { width: 2, color: COLORS.score },
          itemStyle: { color: COLORS.score },
          data: mean,
        },
      ],
    },
    { replaceMerge: ["series", "graphic"] },
  );
}

function renderEmotions(means) {
  const entries = Object.entries(means).sort((a, b) => a[1] - b[1]);
  charts.emotions.setOption(
    {
      ...baseChart,
      graphic: emptyGraphic(entries.length === 0, "no posts in this window yet"),
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, valueFormatter: (v) => percent.format(v) },
      grid: { left: 72, right: 40, top: 6, bottom: 20 },
      xAxis: { type: "value", max: (v) => Math.min(1, Math.max(0.1, v.max * 1.15)), ...axisStyle, axisLabel: { color: "#8a93a6", formatter: (v) => percent.format(v) } },
      yAxis: { type: "category", data: entries.map(([name]) => name), ...axisStyle },
      series: [
        {
          name: "mean probability",
          type: "bar",
          barMaxWidth: 16,
          itemStyle: { color: COLORS.emotion, borderRadius: [0, 4, 4, 0] },
          label: { show: true, position: "right", color: "#c7cede", formatter: ({ value }) => percent.format(value) },
          data: entries.map(([, value]) => value),
        },
      ],
    },
    { replaceMerge: ["series", "graphic"] },
  );
}

function renderTerms(chart, terms, color, emptyText) {
  const rows = [...terms].reverse();
  chart.setOption(
    {
      ...baseChart,
      graphic: emptyGraphic(rows.length === 0, emptyText),
      tooltip: {
        trigger: "item",
        formatter: ({ dataIndex }) => {
          const row = rows[dataIndex];
          const kind = row.kind ? ` · ${row.kind.replace("_", " ")}` : "";
          return `${row.term}${kind}<br>${posts(row.count)}`;
        },
      },
      grid: { left: 14, right: 36, top: 6, bottom: 20, containLabel: true },
      xAxis: { type: "value", minInterval: 1, ...axisStyle },
      yAxis: {
        type: "category",
        data: rows.map((r) => r.term),
        ...axisStyle,
        axisLabel: { color: "#c7cede", width: 110, overflow: "truncate", ellipsis: "…" },
      },
      series: [
        {
          name: "posts",
          type: "bar",
          barMaxWidth: 14,
          label: { show: true, position: "right", color: "#8a93a6" },
          data: rows.map((r) => ({ value: r.count, itemStyle: { color: color(r), borderRadius: [0, 4, 4, 0] } })),
        },
      ],
    },
    { replaceMerge: ["series", "graphic"] },
  );
}

// ---- live stream ----------------------------------------------------------------------

function follow() {
  state.events?.close();
  setStatus("", "connecting");
  const url = new URL(`${API}/stream`, document.baseURI);
  url.searchParams.set("channel", state.channel);
  url.searchParams.set("backlog", "25");
  if (state.lang) url.searchParams.set("lang", state.lang);
  const events = new EventSource(url);
  state.events = events;
  events.addEventListener("open", () => setStatus("live", "live"));
  events.addEventListener("error", () => setStatus("down", "reconnecting"));
  events.addEventListener("post", (event) => {
    let post;
    try {
      post = JSON.parse(event.data);
    } catch {
      return;
    }
    if (post.channel !== state.channel) return;
    if (state.lang && (post.lang ?? "und") !== state.lang) return;
    showPost(post);
    refreshLive();
  });
  // A post deleted at its source is no longer shown.
  events.addEventListener("deleted", (event) => {
    let deleted;
    try {
      deleted = JSON.parse(event.data);
    } catch {
      return;
    }
    $("stream").querySelector(`[data-post-id="${CSS.escape(String(deleted.id))}"]`)?.remove();
  });
}

function showPost(post) {
  const list = $("stream");
  if (list.querySelector(`[data-post-id="${CSS.escape(post.id)}"]`)) return;
  const label = post.sentiment?.label ?? "neutral";
  const item = document.createElement("li");
  item.className = `post ${label}`;
  item.dataset.postId = post.id;

  const meta = document.createElement("div");
  meta.className = "post-meta";
  const time = document.createElement("time");
  time.dateTime = post.created_at;
  time.textContent = clock.format(new Date(post.created_at));
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = post.author ? `@${post.author}` : post.source;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = post.sentiment ? `${label} ${signed(post.sentiment.score)}` : "not scored";
  const lang = document.createElement("span");
  lang.className = "lang";
  lang.textContent = post.lang ?? "und";
  meta.append(time, author, lang, score);

  const text = document.createElement("div");
  text.className = "post-text";
  text.append(...highlighted(post.text, post.entities ?? []));

  const tags = document.createElement("div");
  tags.className = "post-tags";
  const topEmotion = Object.entries(post.emotions ?? {})
    .filter(([name]) => name !== "neutral")
    .sort((a, b) => b[1] - a[1])[0];
  if (topEmotion && topEmotion[1] >= 0.3) tags.append(tag(`${topEmotion[0]} ${percent.format(topEmotion[1])}`));
  for (const keyword of (post.keywords ?? []).slice(0, 3)) tags.append(tag(`#${keyword.term}`));

  item.append(meta, text, tags);
  list.prepend(item);
  while (list.children.length > STREAM_KEEP) list.lastElementChild.remove();
  $("stream-note").textContent = `${list.children.length} most recent`;
}

function tag(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span;
}

// Entity offsets count Unicode scalar values (Rust chars), not UTF-16 units: slice by code
// points so emoji before an entity do not shift its highlight.
function highlighted(text, entities) {
  const chars = Array.from(text);
  const nodes = [];
  let at = 0;
  for (const entity of [...entities].sort((a, b) => a.start - b.start)) {
    if (entity.start < at || entity.end > chars.length || entity.start >= entity.end) continue;
    nodes.push(document.createTextNode(chars.slice(at, entity.start).join("")));
    const mark = document.createElement("mark");
    mark.className = `entity ${entity.kind}`;
    mark.title = `${entity.kind.replace("_", " ")} · ${percent.format(entity.score)}`;
    mark.textContent = chars.slice(entity.start, entity.end).join("");
    nodes.push(mark);
    at = entity.end;
  }
  nodes.push(document.createTextNode(chars.slice(at).join("")));
  return nodes;
}

// ---- history --------------------------------------------------------------------------

const RANGES = {
  "24h": { hours: 24, granularity: "hour" },
  "7d": { hours: 24 * 7, granularity: "hour" },
  "30d": { hours: 24 * 30, granularity: "day" },
};

function historyRange() {
  const { range, from, to, granularity } = state.history;
  if (range) {
    const preset = RANGES[range];
    const end = new Date();
    const start = new Date(end.getTime() - preset.hours * 3600000);
    return { from: start.toISOString(), to: "now", granularity: preset.granularity };
  }
  return { from: from.toISOString(), to: to.toISOString(), granularity };
}

async function refreshHistory() {
  if (!state.channel) return;
  const channel = state.channel;
  const range = historyRange();
  try {
    const history = await api("history", { channel, ...range });
    if (channel !== state.channel) return;
    $("history-error").hidden = true;
    renderHistory(history, range.granularity);
  } catch (error) {
    $("history-error").textContent = `history: ${error.message}`;
    $("history-error").hidden = false;
  }
}

function renderHistory(history, granularity) {
  const buckets = history.buckets;
  const at = (b) => new Date(b.start).getTime();
  const part = (source) => buckets.map((b) => [at(b), b.source === source ? b.posts : null]);
  const watermark = history.watermark ? new Date(history.watermark).getTime() : null;
  const speedBuckets = buckets.filter((b) => b.source === "speed");
  const batchPosts = buckets.filter((b) => b.source === "batch").reduce((n, b) => n + b.posts, 0);
  const speedPosts = speedBuckets.reduce((n, b) => n + b.posts, 0);
  $("history-note").textContent =
    `${integer.format(batchPosts)} posts from the batch layer, ${integer.format(speedPosts)} from the speed layer` +
    (watermark ? ` · watermark ${new Date(watermark).toLocaleString()}` : " · no batch watermark yet");
  const step = granularity === "day" ? 86400000 : 3600000;
  const speedArea = speedBuckets.length
    ? [[{ xAxis: at(speedBuckets[0]), name: "speed layer" }, { xAxis: at(speedBuckets[speedBuckets.length - 1]) + step }]]
    : [];
  charts.history.setOption(
    {
      ...baseChart,
      graphic: emptyGraphic(batchPosts + speedPosts === 0, "no posts in this range"),
      tooltip: {
        trigger: "axis",
        axisPointer: { type: "shadow" },
        formatter: (items) => {
          const bucket = buckets.find((b) => at(b) === items[0].value[0]);
          if (!bucket) return "";
          const when = new Date(bucket.start).toLocaleString();
          const mean = bucket.mean_score === null ? "–" : signed(bucket.mean_score);
          const whole = bucket.complete ? "" : " (partial)";
          return `${when}<br>${posts(bucket.posts)} · ${bucket.source} layer${whole}<br>mean sentiment ${mean}`;
        },
      },
      ...postsAndScoreOverTime,
      series: [
        {
          name: "batch (exact rollups)",
          type: "bar",
          stack: "posts",
          barMaxWidth: 28,
          itemStyle: { color: COLORS.batch },
          data: part("batch"),
          markLine: watermark
            ? {
                symbol: "none",
                silent: true,
                label: { formatter: "watermark", color: "#c7cede", position: "insideEndBottom" },
                lineStyle: { color: "#c7cede", type: "dashed" },
                data: [{ xAxis: watermark }],
              }
            : undefined,
        },
        {
          name: "speed (live counters)",
          type: "bar",
          stack: "posts",
          barMaxWidth: 28,
          itemStyle: { color: COLORS.speed },
          data: part("speed"),
          markArea: {
            silent: true,
            itemStyle: { color: "rgba(246, 189, 22, 0.07)" },
            label: { show: false },
            data: speedArea,
          },
        },
        {
          name: "mean score",
          type: "line",
          yAxisIndex: 1,
          connectNulls: false,
          showSymbol: false,
          smooth: true,
          lineStyle: { width: 2, color: COLORS.score },
          itemStyle: { color: COLORS.score },
          data: buckets.map((b) => [at(b), b.posts ? b.mean_score : null]),
        },
      ],
    },
    { replaceMerge: ["series", "graphic"] },
  );
}

// ---- controls -------------------------------------------------------------------------

function pressed(group, button) {
  for (const b of group.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === button));
}

function localInput(date) {
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return shifted.toISOString().slice(0, 16);
}

function wireControls() {
  $("channel").addEventListener("change", (event) => selectChannel(event.target.value));
  $("lang").addEventListener("change", (event) => {
    state.lang = event.target.value;
    const url = new URL(location.href);
    if (state.lang) url.searchParams.set("lang", state.lang);
    else url.searchParams.delete("lang");
    history.replaceState(null, "", url);
    $("stream").replaceChildren();
    if (state.channel) follow();
  });
  $("window").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-window]");
    if (!button) return;
    pressed($("window"), button);
    state.window = button.dataset.window;
    const url = new URL(location.href);
    url.searchParams.set("window", state.window);
    history.replaceState(null, "", url);
    state.lastLive = 0;
    refreshLive();
  });
  $("history-range").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-range]");
    if (!button) return;
    pressed($("history-range"), button);
    state.history.range = button.dataset.range;
    syncHistoryInputs();
    refreshHistory();
  });
  $("history-apply").addEventListener("click", () => {
    const from = new Date($("history-from").value);
    const to = new Date($("history-to").value);
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || from >= to) {
      toast("history: choose a start before the end");
      return;
    }
    pressed($("history-range"), null);
    state.history = { range: null, from, to, granularity: $("history-granularity").value };
    refreshHistory();
  });
}

function syncHistoryInputs() {
  const preset = RANGES[state.history.range];
  if (!preset) return;
  const end = new Date();
  $("history-from").value = localInput(new Date(end.getTime() - preset.hours * 3600000));
  $("history-to").value = localInput(end);
  $("history-granularity").value = preset.granularity;
}

// ---- start ----------------------------------------------------------------------------

wireControls();
pressed($("window"), $("window").querySelector(`button[data-window="${state.window}"]`));
syncHistoryInputs();
loadChannels().catch((error) => toast(`channels: ${error.message}`));
setInterval(() => loadChannels().catch(() => {}), CHANNELS_POLL_MS);
setInterval(() => refreshLive(), LIVE_POLL_MS);
setInterval(() => {
  if (state.history.range) refreshHistory();
}, HISTORY_POLL_MS);
