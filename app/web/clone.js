// The Clone view: a reference clip (uploaded or recorded), a preview through
// POST /v1/audio/vc, and the saved voices (POST/GET/DELETE /v1/audio/voices).

import { apiFetch, compact, getJson, numberOrNull, randomSeed, showStatus } from "./api.js";
import { refreshVoices } from "./voices.js";

const $ = (id) => document.getElementById(id);

const RECORDING_TYPES = [
  ["audio/webm;codecs=opus", "webm"],
  ["audio/ogg;codecs=opus", "ogg"],
  ["audio/mp4", "m4a"],
];

export function initClone() {
  const view = $("view-clone");
  const status = $("clone-status");
  const recordButton = $("clone-record");
  let clip = null; // {blob, name}
  let recorder = null;
  let clipUrl = null;
  let previewUrl = null;

  function setClip(blob, name) {
    clip = { blob, name };
    if (clipUrl) URL.revokeObjectURL(clipUrl);
    clipUrl = URL.createObjectURL(blob);
    const player = $("clone-clip-audio");
    player.src = clipUrl;
    player.hidden = false;
    $("clone-clip").textContent = `Clip: ${name} (${Math.ceil(blob.size / 1024)} KiB)`;
  }

  $("clone-file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) setClip(file, file.name);
  });

  async function startRecording() {
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      // Browsers offer the microphone only to secure pages (https or localhost).
      showStatus(status, "This browser offers no microphone here: open the page over https or on localhost.", "error");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      showStatus(status, `The microphone is not available: ${err.message}`, "error");
      return;
    }
    const [mimeType, extension] =
      RECORDING_TYPES.find(([type]) => MediaRecorder.isTypeSupported(type)) ?? ["", "webm"];
    recorder = new MediaRecorder(stream, mimeType ? { mimeType } : {});
    const parts = [];
    const started = performance.now();
    const timer = setInterval(() => {
      $("clone-record-time").textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`;
    }, 100);
    recorder.addEventListener("dataavailable", (event) => parts.push(event.data));
    recorder.addEventListener("stop", () => {
      clearInterval(timer);
      for (const track of stream.getTracks()) track.stop();
      setClip(new Blob(parts, { type: recorder.mimeType || mimeType }), `recording.${extension}`);
      recorder = null;
      recordButton.textContent = "Record with the microphone";
      recordButton.setAttribute("aria-pressed", "false");
      showStatus(status, "Recorded. Type what you said as the transcript.", "ok");
    });
    recorder.start();
    recordButton.textContent = "Stop recording";
    recordButton.setAttribute("aria-pressed", "true");
    showStatus(status, "Recording… speak now.");
  }

  recordButton.addEventListener("click", () => {
    if (recorder) recorder.stop();
    else startRecording();
  });

  // The fields every cloning request needs, or null after saying what is missing.
  function reference() {
    const transcript = $("clone-transcript").value.trim();
    if (!clip) {
      showStatus(status, "Choose or record a reference clip first.", "error");
      $("clone-file").focus();
      return null;
    }
    if (!transcript) {
      showStatus(status, "Type the transcript of the clip.", "error");
      $("clone-transcript").focus();
      return null;
    }
    const data = new FormData();
    data.append("reference_audio", clip.blob, clip.name);
    data.append("reference_text", transcript);
    return data;
  }

  async function preview() {
    const data = reference();
    if (!data) return;
    const generate = $("clone-generate").value.trim();
    if (!generate) {
      showStatus(status, "Type the text to speak in the cloned voice.", "error");
      $("clone-generate").focus();
      return;
    }
    const options = compact({
      generate_text: generate,
      response_format: "wav",
      stream: "false",
      max_tokens: numberOrNull($("clone-max-tokens")),
      seed: numberOrNull($("clone-seed")) ?? randomSeed(),
    });
    for (const [name, value] of Object.entries(options)) data.append(name, String(value));
    view.dataset.state = "previewing";
    showStatus(status, "Cloning the voice and speaking…");
    try {
      const response = await apiFetch("/v1/audio/vc", { method: "POST", body: data });
      const blob = await response.blob();
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = URL.createObjectURL(blob);
      const player = $("clone-preview-audio");
      player.src = previewUrl;
      player.hidden = false;
      player.play().catch(() => {
        // Autoplay refused: the controls are there to press play.
      });
      showStatus(status, `Preview ready (request ${response.headers.get("X-Request-ID")}).`, "ok");
      view.dataset.state = "previewed";
    } catch (err) {
      showStatus(status, err.message, "error");
      view.dataset.state = "error";
    }
  }

  async function save() {
    const data = reference();
    if (!data) return;
    const name = $("clone-name").value.trim();
    if (!name) {
      showStatus(status, "Give the voice a name.", "error");
      $("clone-name").focus();
      return;
    }
    data.append("name", name);
    data.append("description", $("clone-description").value.trim());
    view.dataset.state = "saving";
    showStatus(status, "Saving the voice…");
    try {
      const response = await apiFetch("/v1/audio/voices", { method: "POST", body: data });
      const voice = await response.json();
      showStatus(status, `Saved “${voice.name}” as ${voice.id}; it is in every voice list now.`, "ok");
      view.dataset.state = "saved";
      await Promise.all([listVoices(), refreshVoices()]);
    } catch (err) {
      showStatus(status, err.message, "error");
      view.dataset.state = "error";
    }
  }

  async function remove(voice) {
    try {
      await apiFetch(`/v1/audio/voices/${encodeURIComponent(voice.id)}`, { method: "DELETE" });
      showStatus(status, `Deleted “${voice.name}”.`, "ok");
      await Promise.all([listVoices(), refreshVoices()]);
      $("voices-refresh").focus(); // the focused button is gone with its row
    } catch (err) {
      showStatus(status, err.message, "error");
    }
  }

  function row(voice) {
    const item = document.createElement("li");
    item.dataset.voiceId = voice.id;
    const text = document.createElement("div");
    const title = document.createElement("strong");
    title.textContent = voice.name;
    const detail = document.createElement("span");
    detail.className = "hint";
    const parts = [voice.id, `${voice.reference_seconds.toFixed(1)} s`, `“${voice.reference_text}”`];
    if (voice.description) parts.splice(1, 0, voice.description);
    detail.textContent = ` ${parts.join(" · ")}`;
    text.append(title, detail);
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Delete";
    button.setAttribute("aria-label", `Delete voice ${voice.name}`);
    button.addEventListener("click", () => remove(voice));
    item.append(text, button);
    return item;
  }

  async function listVoices() {
    const listing = await getJson("/v1/audio/voices");
    $("voices-list").replaceChildren(...listing.data.map(row));
    $("voices-empty").hidden = listing.data.length > 0;
  }

  $("clone-preview").addEventListener("click", preview);
  $("clone-form").addEventListener("submit", (event) => {
    event.preventDefault();
    save();
  });
  $("voices-refresh").addEventListener("click", () =>
    listVoices().catch((err) => showStatus(status, err.message, "error")),
  );
  return { listVoices };
}
