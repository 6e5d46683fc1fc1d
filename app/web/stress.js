// The stress panel: N streamed sessions, at most C at a time, against this gateway,
// with outcomes by cause, TTFA/RTF percentiles and /metrics gauges sampled meanwhile.

import { ApiError, apiFetch, showStatus } from "./api.js";
import { drawSeries } from "./charts.js";

const GAUGES = [
  ["tts_active_streams", "--active"],
  ["tts_decode_queue_depth", "--queue"],
];
const SAMPLE_EVERY_MS = 250;

const $ = (id) => document.getElementById(id);

// Nearest-rank percentile of an ascending array.
export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

// Prometheus text format: the sum over series of each wanted metric.
export function parseMetrics(text, names) {
  const values = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match || !names.includes(match[1])) continue;
    values.set(match[1], (values.get(match[1]) ?? 0) + Number(match[3]));
  }
  return values;
}

// Failures by cause: the status and the envelope's code (429 rate_limit_exceeded,
// 503 too_many_streams, ...), network errors, or a body that broke off.
function outcomeOf(err) {
  if (err instanceof ApiError) {
    if (err.status) return `${err.status} ${err.code ?? "error"}`;
    return err.code ?? "network error";
  }
  return `stream broke off: ${err.message}`;
}

// One session: the whole body, timed. Resolves to {ttfa, elapsed, audio} or throws.
async function session(body, signal, sampleRate) {
  const t0 = performance.now();
  const response = await apiFetch("/v1/audio/speech", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  const reader = response.body.getReader();
  let ttfa = null;
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (value.length > 0) ttfa ??= (performance.now() - t0) / 1000;
    bytes += value.length;
  }
  const elapsed = (performance.now() - t0) / 1000;
  return { ttfa, elapsed, audio: bytes / 2 / sampleRate };
}

export function initStress(config) {
  const view = $("view-stress");
  const status = $("stress-status");
  const progress = $("stress-progress");
  let abort = null;
  let shown = null; // the latest results, redrawn when the layout changes

  function showResults(results, samples, span) {
    shown = [results, samples, span];
    const counts = new Map();
    for (const r of results) counts.set(r.outcome, (counts.get(r.outcome) ?? 0) + 1);
    $("stress-outcomes").tBodies[0].replaceChildren(
      ...[...counts.entries()]
        .sort(([a], [b]) => (a === "ok" ? -1 : b === "ok" ? 1 : a.localeCompare(b)))
        .map(([outcome, n]) => tableRow(outcome, [n], outcome)),
    );
    const ok = results.filter((r) => r.outcome === "ok");
    const ttfa = ok.map((r) => r.ttfa * 1000).sort((a, b) => a - b);
    const rtf = ok.filter((r) => r.audio > 0).map((r) => r.elapsed / r.audio).sort((a, b) => a - b);
    const rows = $("stress-percentiles").tBodies[0].rows;
    fillPercentiles(rows[0], ttfa, (v) => Math.round(v).toString());
    fillPercentiles(rows[1], rtf, (v) => v.toFixed(2));
    $("stress-gauges").tBodies[0].replaceChildren(
      ...GAUGES.map(([name]) => {
        const points = samples.map((s) => s.values.get(name)).filter((v) => v !== undefined);
        const max = points.length ? Math.max(...points) : "–";
        return tableRow(name, [max, points.length ? points.at(-1) : "–", points.length], name);
      }),
    );
    drawSeries(
      $("stress-chart"),
      GAUGES.map(([name, colorVar]) => ({
        name,
        colorVar,
        points: samples.filter((s) => s.values.has(name)).map((s) => [s.t, s.values.get(name)]),
      })),
      span,
    );
  }

  async function run() {
    const total = Math.max(1, Number($("stress-sessions").value) || 1);
    const limit = Math.max(1, Number($("stress-concurrency").value) || 1);
    const body = {
      model: "tts-1",
      input: $("stress-text").value,
      voice: $("stress-voice").value,
      response_format: "pcm",
    };
    const maxTokens = Number($("stress-max-tokens").value);
    if (maxTokens) body.max_tokens = maxTokens;
    if (!body.input.trim()) {
      showStatus(status, "Type the text every session speaks.", "error");
      return;
    }
    abort = new AbortController();
    view.dataset.state = "running";
    $("stress-go").disabled = true;
    $("stress-stop").disabled = false;
    progress.max = total;
    progress.value = 0;
    const results = [];
    const samples = [];
    const t0 = performance.now();
    let metricsNote = "";
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        try {
          const response = await apiFetch("/metrics");
          const values = parseMetrics(await response.text(), GAUGES.map(([name]) => name));
          samples.push({ t: (performance.now() - t0) / 1000, values });
        } catch (err) {
          metricsNote = ` /metrics could not be read: ${err.message}`;
          break;
        }
        showResults(results, samples, (performance.now() - t0) / 1000);
        await new Promise((resolve) => setTimeout(resolve, SAMPLE_EVERY_MS));
      }
    })();
    let next = 0;
    const worker = async () => {
      while (next < total && !abort.signal.aborted) {
        next += 1;
        try {
          const r = await session(body, abort.signal, config.sample_rate);
          results.push({ outcome: "ok", ...r });
        } catch (err) {
          if (err.name === "AbortError") break;
          results.push({ outcome: outcomeOf(err) });
        }
        progress.value = results.length;
        showStatus(status, `${results.length} of ${total} sessions done…`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, total) }, worker));
    sampling = false;
    await sampler;
    const span = (performance.now() - t0) / 1000;
    showResults(results, samples, span);
    const ok = results.filter((r) => r.outcome === "ok").length;
    const stopped = abort.signal.aborted ? " (stopped)" : "";
    showStatus(
      status,
      `Done${stopped}: ${ok} of ${results.length} sessions succeeded in ${span.toFixed(1)} s.${metricsNote}`,
      ok === results.length ? "ok" : "error",
    );
    view.dataset.state = "done";
    $("stress-go").disabled = false;
    $("stress-stop").disabled = true;
    abort = null;
  }

  $("stress-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!abort) run();
  });
  $("stress-stop").addEventListener("click", () => abort && abort.abort());
  window.addEventListener("resize", () => shown && showResults(...shown));
}

function tableRow(header, cells, key) {
  const tr = document.createElement("tr");
  tr.dataset.key = key;
  const th = document.createElement("th");
  th.scope = "row";
  th.textContent = header;
  tr.append(th, ...cells.map((value) => Object.assign(document.createElement("td"), { textContent: String(value) })));
  return tr;
}

function fillPercentiles(row, sorted, format) {
  const values = [50, 90, 99].map((p) => percentile(sorted, p));
  values.push(sorted.length ? sorted.at(-1) : null);
  values.forEach((value, i) => {
    row.cells[i + 1].textContent = value == null ? "–" : format(value);
  });
}
