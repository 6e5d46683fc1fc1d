// Raw audio as the gateway streams it (`pcm`: s16le, mono) and as a wav file.

// Splits a byte stream into whole 16-bit samples; a chunk may end in the middle of one.
export class S16Reader {
  constructor() {
    this.rest = null;
  }

  // Float32 samples in [-1, 1) of all whole samples seen so far but not yet returned.
  push(bytes) {
    let data = bytes;
    if (this.rest !== null) {
      data = new Uint8Array(bytes.length + 1);
      data[0] = this.rest;
      data.set(bytes, 1);
      this.rest = null;
    }
    const whole = data.length - (data.length % 2);
    if (whole < data.length) this.rest = data[data.length - 1];
    const view = new DataView(data.buffer, data.byteOffset, whole);
    const out = new Float32Array(whole / 2);
    for (let i = 0; i < out.length; i += 1) out[i] = view.getInt16(i * 2, true) / 32768;
    return out;
  }
}

// A complete wav file (exact sizes) around s16le mono chunks.
export function wavBlob(chunks, sampleRate) {
  const dataBytes = chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0);
  const header = new DataView(new ArrayBuffer(44));
  const ascii = (offset, text) => {
    for (let i = 0; i < text.length; i += 1) header.setUint8(offset + i, text.charCodeAt(i));
  };
  ascii(0, "RIFF");
  header.setUint32(4, 36 + dataBytes, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  header.setUint32(16, 16, true); // fmt chunk size
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, sampleRate, true);
  header.setUint32(28, sampleRate * 2, true); // byte rate
  header.setUint16(32, 2, true); // block align
  header.setUint16(34, 16, true); // bits per sample
  ascii(36, "data");
  header.setUint32(40, dataBytes, true);
  return new Blob([header, ...chunks], { type: "audio/wav" });
}
