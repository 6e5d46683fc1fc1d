// The Speak view and its Watch panel: stream pcm into the player while it arrives,
// show the numbers and drawings live, download the same audio in the chosen format.

import {
  ApiError,
  apiFetch,
  compact,
  formatMs,
  formatSeconds,
  numberOrNull,
  randomSeed,
  saveBlob,
  showStatus,
} from "./api.js";
import { Peaks, drawTimeline, drawWaveform } from "./charts.js";
import { S16Reader, wavBlob } from "./pcm.js";
import { StreamPlayer } from "./player.js";

const EXTENSIONS = { mp3: "mp3", opus: "opus", aac: "aac", flac: "flac", wav: "wav", pcm: "pcm" };
const PEAK_BLOCK = 120; // 5 ms at 24 kHz

const $ = (id) => document.getElementById(id);

export function initSpeak(config, audioContext) {
  const view = $("view-speak");
  const form = $("speak-form");
  const status = $("speak-status");
  const go = $("speak-go");
  const stopButton = $("speak-stop");
  const download = $("speak-download");
  const format = $("speak-format");
  const rate = config.sample_rate;
  let player = null;
  let run = null; // the latest stream: its request, audio and numbers

  for (const name of config.formats) format.append(new Option(name, name));
  format.value = "wav";
  $("speak-temperature").placeholder = String(config.defaults.temperature);
  $("speak-top-p").placeholder = String(config.defaults.top_p);
  $("speak-repetition-penalty").placeholder = String(config.defaults.repetition_penalty);
  $("speak-max-tokens").placeholder = String(config.defaults.max_tokens);
  $("speak-text").maxLength = config.max_input_chars;

  const labelDownload = () => {
    download.textContent = `Download ${format.value}`;
  };
  format.addEventListener("change", labelDownload);
  labelDownload();

  function request() {
    const seed = numberOrNull($("speak-seed"));
    return compact({
      model: "tts-1",
      input: $("speak-text").value,
      voice: $("speak-voice").value,
      response_format: "pcm",
      speed: numberOrNull($("speak-speed")),
      temperature: numberOrNull($("speak-temperature")),
      top_p: numberOrNull($("speak-top-p")),
      repetition_penalty: numberOrNull($("speak-repetition-penalty")),
      max_tokens: numberOrNull($("speak-max-tokens")),
      // Always sent, so the download can ask for the same tokens again.
      seed: seed ?? randomSeed(),
    });
  }

  function render() {
    if (!run) return;
    const now = run.finishedAt ?? performance.now();
    const elapsed = (now - run.t0) / 1000;
    const audio = player.audioSeconds;
    const playing = player.chunks.length ? player.chunks[0].start : null;
    $("stat-ttfa").textContent = formatMs(run.ttfa);
    $("stat-playing").textContent = formatMs(playing);
    $("stat-elapsed").textContent = formatSeconds(elapsed);
    $("stat-audio").textContent = run.ttfa == null ? "–" : formatSeconds(audio);
    $("stat-rtf").textContent = audio > 0 ? (elapsed / audio).toFixed(2) : "–";
    $("stat-chunks").textContent = String(player.chunks.length);
    $("stat-stalls").textContent = `${player.stalls} (${formatMs(player.stallSeconds)})`;
    $("stat-request-id").textContent = run.requestId ?? "–";
    $("stat-seed").textContent = String(run.body.seed);
    for (const [id, value] of [
      ["stat-audio", audio],
      ["stat-ttfa", run.ttfa],
      ["stat-playing", playing],
      ["stat-elapsed", elapsed],
      ["stat-stalls", player.stalls],
    ]) {
      $(id).dataset.value = value == null ? "" : String(value);
    }
    drawTimeline($("timeline"), player.chunks, elapsed, run.ttfa);
    drawWaveform($("waveform"), run.peaks, rate, player.playedSeconds());
  }

  // One loop per run: a newer run's loop takes over and this one ends.
  function animate(owner) {
    if (owner !== run) return;
    render();
    if (owner.animating) requestAnimationFrame(() => animate(owner));
  }

  function setState(state) {
    view.dataset.state = state;
    const busy = state === "streaming";
    go.disabled = busy;
    stopButton.disabled = !busy && !(run && run.animating);
    download.disabled = busy || !run || run.pcm.length === 0;
  }

  async function speak() {
    const text = $("speak-text").value;
    if (!text.trim()) {
      showStatus(status, "Type some text to speak.", "error");
      $("speak-text").focus();
      return;
    }
    const ctx = audioContext();
    await ctx.resume();
    player ??= new StreamPlayer(ctx, rate);
    if (run && run.abort) run.abort.abort();
    const t0 = performance.now();
    player.reset(t0);
    run = {
      body: request(),
      t0,
      ttfa: null,
      finishedAt: null,
      requestId: null,
      pcm: [],
      peaks: new Peaks(PEAK_BLOCK),
      abort: new AbortController(),
      animating: true,
    };
    const current = run;
    setState("streaming");
    showStatus(status, "Streaming…");
    requestAnimationFrame(() => animate(current));
    try {
      const response = await apiFetch("/v1/audio/speech", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(current.body),
        signal: current.abort.signal,
      });
      current.requestId = response.headers.get("X-Request-ID");
      const reader = response.body.getReader();
      const samples = new S16Reader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (current !== run) return; // a newer run took the player
        if (value.length === 0) continue;
        current.ttfa ??= (performance.now() - t0) / 1000;
        current.pcm.push(value);
        const floats = samples.push(value);
        current.peaks.add(floats);
        player.push(floats);
      }
      current.finishedAt = performance.now();
      if (current !== run) return;
      const elapsed = (current.finishedAt - t0) / 1000;
      showStatus(
        status,
        `Done: ${formatSeconds(player.audioSeconds)} of audio in ${formatSeconds(elapsed)}.`,
        "ok",
      );
      setState("done");
      player.finish(() => {
        current.animating = false;
        if (current !== run) return;
        render();
        setState("done");
      });
    } catch (err) {
      current.finishedAt = performance.now();
      current.animating = false;
      if (current !== run) return;
      if (err.name === "AbortError") {
        showStatus(status, "Stopped.");
        setState("stopped");
      } else if (err instanceof ApiError) {
        current.requestId = err.requestId ?? current.requestId;
        showStatus(status, err.message, "error");
        setState("error");
      } else {
        // The body broke off after audio was promised: say how much came.
        showStatus(
          status,
          `The stream broke off after ${formatSeconds(player.audioSeconds)} of audio: ${err.message}`,
          "error",
        );
        setState("error");
      }
      render();
    } finally {
      current.abort = null;
    }
  }

  async function save() {
    if (!run) return;
    const fmt = format.value;
    const name = `speech.${EXTENSIONS[fmt]}`;
    if (fmt === "pcm") {
      saveBlob(new Blob(run.pcm, { type: "application/octet-stream" }), name);
      return;
    }
    if (fmt === "wav") {
      saveBlob(wavBlob(run.pcm, rate), name);
      return;
    }
    // The browser has no encoder for these: the gateway encodes the same request
    // (same seed) again, as one complete file.
    download.disabled = true;
    showStatus(status, `Encoding ${fmt}…`);
    try {
      const response = await apiFetch("/v1/audio/speech", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...run.body, response_format: fmt, stream: false }),
      });
      saveBlob(await response.blob(), name);
      showStatus(status, `Downloaded ${name}.`, "ok");
    } catch (err) {
      showStatus(status, err.message, "error");
    } finally {
      download.disabled = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    speak();
  });
  stopButton.addEventListener("click", () => {
    if (run && run.abort) run.abort.abort();
    if (player) player.stop();
    if (run) run.animating = false;
    setState(view.dataset.state === "streaming" ? "stopped" : view.dataset.state);
    stopButton.disabled = true;
  });
  download.addEventListener("click", save);
  // Canvases follow the layout (a rotated phone, a tab shown again).
  window.addEventListener("resize", () => {
    if (run && !run.animating) render();
  });
}
