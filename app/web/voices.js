// The voice pickers of every view, filled from GET /v1/audio/speaker.

import { getJson } from "./api.js";

const GROUPS = [
  ["builtin", "Model voices"],
  ["alias", "OpenAI names"],
  ["saved", "Saved voices"],
];

function option(speaker) {
  const label = speaker.kind === "alias" ? `${speaker.name} (→ ${speaker.maps_to})` : speaker.name;
  // A saved voice is sent by id: names may change meaning, ids never do.
  return new Option(label, speaker.id);
}

function fill(select, listing) {
  const previous = select.value;
  select.replaceChildren();
  for (const [kind, label] of GROUPS) {
    const speakers = listing.data.filter((s) => s.kind === kind);
    if (speakers.length === 0) continue;
    const group = document.createElement("optgroup");
    group.label = label;
    group.append(...speakers.map(option));
    select.append(group);
  }
  const ids = listing.data.map((s) => s.id);
  select.value = ids.includes(previous) ? previous : listing.default;
}

// Fills every `.voice-select`; throws an ApiError (e.g. a missing key) to show.
export async function refreshVoices() {
  const listing = await getJson("/v1/audio/speaker");
  for (const select of document.querySelectorAll(".voice-select")) fill(select, listing);
  return listing;
}
