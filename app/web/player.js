// Gapless playback of audio that is still arriving: each chunk becomes an
// AudioBufferSourceNode started exactly where the previous one ends on the
// AudioContext clock. When a chunk comes after the queued audio ran out, the
// player stalled: it is counted, and playback resumes a little ahead of "now".

// Scheduling at "now" would clip the chunk's first samples; this much lead avoids it.
const LEAD_SECONDS = 0.05;

export class StreamPlayer {
  constructor(context, sampleRate) {
    this.context = context;
    this.sampleRate = sampleRate;
    this.sources = new Set();
    this.reset(performance.now());
  }

  // A new stream: t0 is performance.now() when it was requested.
  reset(t0) {
    this.stop();
    this.t0 = t0;
    this.next = null; // context time where the queued audio ends
    this.chunks = []; // {arrival, needed, start, audioStart, seconds} in seconds since t0
    this.audioSeconds = 0;
    this.stalls = 0;
    this.stallSeconds = 0;
    this.ended = false;
    this.onended = null;
  }

  // Seconds since t0 at context time `contextTime`.
  wallTime(contextTime) {
    const elapsed = (performance.now() - this.t0) / 1000;
    return elapsed + (contextTime - this.context.currentTime);
  }

  // Audio seconds played by now (0 before the first chunk plays).
  playedSeconds() {
    const now = (performance.now() - this.t0) / 1000;
    let played = 0;
    for (const chunk of this.chunks) {
      if (now <= chunk.start) break;
      played = chunk.audioStart + Math.min(chunk.seconds, now - chunk.start);
    }
    return played;
  }

  push(samples) {
    if (samples.length === 0) return;
    const ctx = this.context;
    const now = ctx.currentTime;
    const arrival = (performance.now() - this.t0) / 1000;
    let startAt;
    let needed;
    if (this.next === null) {
      startAt = now + LEAD_SECONDS;
      needed = arrival; // the first chunk's wait is the time to first audio, not a stall
    } else if (this.next < now) {
      needed = this.wallTime(this.next);
      startAt = now + LEAD_SECONDS;
      this.stalls += 1;
      this.stallSeconds += startAt - this.next;
    } else {
      startAt = this.next;
      needed = this.wallTime(this.next);
    }
    const buffer = ctx.createBuffer(1, samples.length, this.sampleRate);
    buffer.copyToChannel(samples, 0);
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    source.onended = () => {
      this.sources.delete(source);
      if (this.ended && this.sources.size === 0 && this.onended) this.onended();
    };
    source.start(startAt);
    this.sources.add(source);
    const seconds = samples.length / this.sampleRate;
    this.chunks.push({
      arrival,
      needed,
      start: this.wallTime(startAt),
      audioStart: this.audioSeconds,
      seconds,
    });
    this.audioSeconds += seconds;
    this.next = startAt + seconds;
  }

  // No more chunks will come; `onended` fires once the queued audio has played.
  finish(onended) {
    this.ended = true;
    this.onended = onended;
    if (this.sources.size === 0 && onended) onended();
  }

  stop() {
    for (const source of this.sources) {
      source.onended = null;
      try {
        source.stop();
      } catch {
        // Never started (the context was suspended): nothing to stop.
      }
    }
    if (this.sources) this.sources.clear();
  }
}
