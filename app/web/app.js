// The page's entry point: the API key, the demo banner, the tabs, and the views.

import { apiKey, getJson, setApiKey, showStatus } from "./api.js";
import { initClone } from "./clone.js";
import { initSpeak } from "./speak.js";
import { initStress } from "./stress.js";
import { refreshVoices } from "./voices.js";

const $ = (id) => document.getElementById(id);

// One AudioContext for the page, made on the first gesture that needs it
// (browsers keep contexts made earlier suspended).
let context = null;
function audioContext() {
  context ??= new AudioContext();
  return context;
}

// Tabs with arrow keys, Home and End, as the WAI-ARIA tabs pattern has them.
function initTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab, focus) => {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
    // Canvases drawn while hidden had no size: let the views redraw.
    window.dispatchEvent(new Event("resize"));
  };
  tabs.forEach((tab, index) => {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (event) => {
      const moves = {
        ArrowRight: index + 1,
        ArrowLeft: index - 1,
        Home: 0,
        End: tabs.length - 1,
      };
      if (!(event.key in moves)) return;
      event.preventDefault();
      select(tabs[(moves[event.key] + tabs.length) % tabs.length], true);
    });
  });
}

async function loadLists(clone) {
  const state = $("key-state");
  try {
    await Promise.all([refreshVoices(), clone.listVoices()]);
    if (apiKey()) showStatus(state, "Key accepted.", "ok");
  } catch (err) {
    // A missing or wrong key is the usual cause: the envelope's message says which.
    showStatus(state, err.message, "error");
  }
}

async function main() {
  initTabs();
  const config = await getJson("/web/config");
  $("demo-banner").hidden = !config.demo;
  const keyInput = $("api-key");
  keyInput.value = apiKey();
  if (config.api_key_required && !apiKey()) {
    showStatus($("key-state"), "This gateway needs an API key: type it above.", "info");
  }
  initSpeak(config, audioContext);
  initStress(config);
  const clone = initClone();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey(keyInput.value.trim());
    loadLists(clone);
  });
  $("key-forget").addEventListener("click", () => {
    setApiKey("");
    keyInput.value = "";
    showStatus($("key-state"), "Key forgotten.", "info");
  });
  if (!config.api_key_required || apiKey()) await loadLists(clone);
  document.body.dataset.ready = "true";
}

main().catch((err) => {
  const state = $("key-state");
  showStatus(state, `The page could not start: ${err.message}`, "error");
});
