// Canvas drawings of the Watch panel and the stress run, in the page's CSS colours.

function color(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

// A 2d context in CSS pixels, sharp on high-density screens.
function surface(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, canvas.clientWidth);
  const height = Math.max(1, canvas.clientHeight);
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, width, height };
}

function axes(ctx, width, height, pad, xLabel, yLabel) {
  ctx.strokeStyle = color("--muted");
  ctx.fillStyle = color("--muted");
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(pad.left, pad.top);
  ctx.lineTo(pad.left, height - pad.bottom);
  ctx.lineTo(width - pad.right, height - pad.bottom);
  ctx.stroke();
  ctx.textAlign = "right";
  ctx.fillText(xLabel, width - pad.right, height - 4);
  ctx.textAlign = "left";
  ctx.fillText(yLabel, pad.left + 4, pad.top + 10);
}

// x: seconds since the request; y: audio seconds. Each chunk is a segment from
// when it arrived to when the player needed it, green when early, red when late.
export function drawTimeline(canvas, chunks, elapsed, ttfa) {
  const { ctx, width, height } = surface(canvas);
  const pad = { left: 28, right: 8, top: 8, bottom: 18 };
  const last = chunks.at(-1);
  const audio = last ? last.audioStart + last.seconds : 1;
  const span = Math.max(elapsed, last ? last.start + last.seconds : 0, 0.5);
  const x = (t) => pad.left + (t / span) * (width - pad.left - pad.right);
  const y = (a) => height - pad.bottom - (a / audio) * (height - pad.top - pad.bottom);
  axes(ctx, width, height, pad, `${span.toFixed(1)} s`, `${audio.toFixed(1)} s audio`);
  if (ttfa != null) {
    ctx.strokeStyle = color("--muted");
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(x(ttfa), pad.top);
    ctx.lineTo(x(ttfa), height - pad.bottom);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  // Play position: flat while stalled, slope one while playing.
  ctx.strokeStyle = color("--play");
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  for (const chunk of chunks) {
    ctx.lineTo(x(chunk.start), y(chunk.audioStart));
    ctx.lineTo(x(chunk.start + chunk.seconds), y(chunk.audioStart + chunk.seconds));
  }
  ctx.stroke();
  for (const chunk of chunks) {
    const late = chunk.arrival > chunk.needed + 1e-3;
    ctx.strokeStyle = late ? color("--bad") : color("--good");
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x(chunk.arrival), y(chunk.audioStart));
    ctx.lineTo(x(chunk.needed), y(chunk.audioStart));
    ctx.stroke();
    ctx.fillStyle = color("--arrived");
    ctx.fillRect(x(chunk.arrival) - 2, y(chunk.audioStart) - 2, 4, 4);
    ctx.fillStyle = late ? color("--bad") : color("--needed");
    ctx.fillRect(x(chunk.needed) - 2, y(chunk.audioStart) - 2, 4, 4);
  }
  const lateCount = chunks.filter((c) => c.arrival > c.needed + 1e-3).length;
  canvas.setAttribute(
    "aria-label",
    `Chunk timeline: ${chunks.length} chunks over ${span.toFixed(1)} s, ${lateCount} arrived after they were needed`,
  );
}

// Peaks of the audio, kept per block of samples as it arrives, so a redraw costs
// the number of blocks, not of samples.
export class Peaks {
  constructor(blockSamples) {
    this.block = blockSamples;
    this.lows = [];
    this.highs = [];
    this.total = 0;
  }

  add(samples) {
    for (let i = 0; i < samples.length; i += 1, this.total += 1) {
      const index = Math.floor(this.total / this.block);
      if (index === this.lows.length) {
        this.lows.push(0);
        this.highs.push(0);
      }
      const value = samples[i];
      if (value < this.lows[index]) this.lows[index] = value;
      if (value > this.highs[index]) this.highs[index] = value;
    }
  }
}

// The waveform received so far, with the play position.
export function drawWaveform(canvas, peaks, sampleRate, playedSeconds) {
  const { ctx, width, height } = surface(canvas);
  const mid = height / 2;
  ctx.strokeStyle = color("--muted");
  ctx.beginPath();
  ctx.moveTo(0, mid);
  ctx.lineTo(width, mid);
  ctx.stroke();
  const blocks = peaks.lows.length;
  if (blocks === 0) return;
  ctx.fillStyle = color("--wave");
  for (let column = 0; column < width; column += 1) {
    const first = Math.floor((column * blocks) / width);
    const end = Math.max(first + 1, Math.ceil(((column + 1) * blocks) / width));
    let low = 0;
    let high = 0;
    for (let b = first; b < end && b < blocks; b += 1) {
      low = Math.min(low, peaks.lows[b]);
      high = Math.max(high, peaks.highs[b]);
    }
    ctx.fillRect(column, mid - high * mid, 1, Math.max(1, (high - low) * mid));
  }
  const seconds = peaks.total / sampleRate;
  ctx.fillStyle = color("--play");
  ctx.fillRect(Math.min((playedSeconds / seconds) * width, width - 1), 0, 1, height);
  canvas.setAttribute(
    "aria-label",
    `Waveform of ${seconds.toFixed(2)} s of audio, ${playedSeconds.toFixed(2)} s played`,
  );
}

// Step lines of sampled gauges: series = [{name, colorVar, points: [[t, v], ...]}].
export function drawSeries(canvas, series, span) {
  const { ctx, width, height } = surface(canvas);
  const pad = { left: 28, right: 8, top: 8, bottom: 18 };
  const top = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const x = (t) => pad.left + (t / Math.max(span, 0.1)) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
  axes(ctx, width, height, pad, `${span.toFixed(1)} s`, `max ${top}`);
  for (const s of series) {
    ctx.strokeStyle = color(s.colorVar);
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.points.forEach(([t, v], i) => {
      if (i === 0) ctx.moveTo(x(t), y(v));
      else {
        ctx.lineTo(x(t), y(s.points[i - 1][1]));
        ctx.lineTo(x(t), y(v));
      }
    });
    ctx.stroke();
  }
  const summary = series.map((s) => `${s.name} max ${Math.max(0, ...s.points.map((p) => p[1]))}`);
  canvas.setAttribute("aria-label", `Gauges over ${span.toFixed(1)} s: ${summary.join(", ")}`);
}
