// pcm-worklet.js - runs on the audio thread: mono microphone audio at the
// context's rate -> 16 kHz PCM16, posted to the page in ~100 ms buffers.
// Downsampling averages the input over each output interval (a box
// filter), which keeps aliasing well below what speech recognition hears.
class Pcm16Downsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.targetRate = o.targetRate || 16000;
    this.ratio = sampleRate / this.targetRate;        // input samples per output sample
    this.frame = Math.round(this.targetRate * (o.frameMs || 100) / 1000);
    this.buf = new Int16Array(this.frame);
    this.n = 0;
    this.sum = 0;
    this.count = 0;
    this.acc = 0;
    this.port.onmessage = (e) => { if (e.data === 'flush') this.flush(); };
  }
  flush() {
    if (this.n === 0) return;
    const out = this.buf.slice(0, this.n);
    this.port.postMessage(out.buffer, [out.buffer]);
    this.n = 0;
  }
  process(inputs, outputs) {
    const input = inputs[0];
    if (input && input.length) {
      const ch0 = input[0];
      const ch1 = input.length > 1 ? input[1] : null;
      for (let i = 0; i < ch0.length; i++) {
        this.sum += ch1 ? 0.5 * (ch0[i] + ch1[i]) : ch0[i];
        this.count++;
        this.acc += 1;
        if (this.acc >= this.ratio) {
          this.acc -= this.ratio;
          let v = this.sum / this.count;
          this.sum = 0;
          this.count = 0;
          v = v < -1 ? -1 : v > 1 ? 1 : v;
          this.buf[this.n++] = v < 0 ? v * 0x8000 : v * 0x7fff;
          if (this.n === this.frame) this.flush();
        }
      }
    }
    // Silence out: the node is connected only to keep the graph pulling it.
    for (const out of outputs) for (const ch of out) ch.fill(0);
    return true;
  }
}
registerProcessor('pcm16-downsampler', Pcm16Downsampler);
