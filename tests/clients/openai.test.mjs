// The official openai npm package, used as its documentation shows,
// against asr_streaming and tts: every call must work unchanged.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import OpenAI from 'openai';
import { startService, librivox } from './services.mjs';

const clip = `${librivox}/sense_and_sensibility_01_austen_64kb-0870.wav`;
const words = (s) => s.toLowerCase().replace(/[^a-z' ]/g, ' ').split(/\s+/).filter(Boolean);

const asr = await startService('asr_streaming');
const tts = await startService('tts');
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}\n${e.stack || e}`);
  }
}

try {
  const stt = new OpenAI({ apiKey: 'unused', baseURL: `${asr.url}/v1`, maxRetries: 0, timeout: 120000 });
  const speech = new OpenAI({ apiKey: 'unused', baseURL: `${tts.url}/v1`, maxRetries: 0, timeout: 120000 });
  const reference = fs.readFileSync(`${librivox}/transcription`, 'utf8');

  // the SDK's documented usage: a file stream, sent with chunked encoding
  await check('transcription of a file stream (chunked upload)', async () => {
    const t = await stt.audio.transcriptions.create({ file: fs.createReadStream(clip), model: 'whisper-1' });
    assert.equal(typeof t.text, 'string');
    const got = new Set(words(t.text));
    const line = reference.split('\n').find((l) => l.includes('0870'));
    const want = words(line.replace(/\(.*\)/, ''));
    const hits = want.filter((w) => got.has(w)).length;
    assert.ok(hits >= want.length / 2, `heard "${t.text}" for "${want.join(' ')}"`);
  });

  await check('transcription formats text and verbose_json', async () => {
    const text = await stt.audio.transcriptions.create({
      file: fs.createReadStream(clip), model: 'whisper-1', response_format: 'text',
    });
    assert.equal(typeof text, 'string');
    assert.ok(text.trim().length > 10);
    const v = await stt.audio.transcriptions.create({
      file: fs.createReadStream(clip), model: 'whisper-1', response_format: 'verbose_json', language: 'en',
    });
    assert.ok(v.duration > 1);
    assert.ok(Array.isArray(v.segments) && v.segments.length > 0);
  });

  // word timestamps the way the SDK documents them
  await check('timestamp_granularities word (and segment)', async () => {
    const v = await stt.audio.transcriptions.create({
      file: fs.createReadStream(clip), model: 'whisper-1', response_format: 'verbose_json',
      timestamp_granularities: ['word'],
    });
    assert.ok(Array.isArray(v.words) && v.words.length >= 3, JSON.stringify(v));
    assert.equal(v.segments, undefined);
    let prev = 0;
    for (const w of v.words) {
      assert.equal(typeof w.word, 'string');
      assert.ok(w.start >= prev && w.end >= w.start && w.end <= v.duration + 0.01, JSON.stringify(w));
      prev = w.start;
    }
    const both = await stt.audio.transcriptions.create({
      file: fs.createReadStream(clip), model: 'whisper-1', response_format: 'verbose_json',
      timestamp_granularities: ['word', 'segment'],
    });
    assert.ok(both.words.length >= 3 && both.segments.length > 0);
    for (const seg of both.segments) {
      let p = seg.start - 0.01;
      for (const w of seg.words) {
        assert.ok(w.start >= p && w.end <= seg.end + 0.01, `${JSON.stringify(w)} in ${seg.start}-${seg.end}`);
        p = w.start;
      }
    }
  });

  // two LibriVox sentences with a second of silence between: pocketsphinx
  // finishes one utterance before it hears the next
  function twoSentences() {
    const pcmOf = (f) => {
      const b = fs.readFileSync(`${librivox}/${f}`);
      const i = b.indexOf('data');
      return { rate: b.readUInt32LE(24), pcm: b.subarray(i + 8, i + 8 + b.readUInt32LE(i + 4)) };
    };
    const a = pcmOf('sense_and_sensibility_01_austen_64kb-0880.wav');
    const c = pcmOf('sense_and_sensibility_01_austen_64kb-0890.wav');
    const pcm = Buffer.concat([a.pcm, Buffer.alloc(a.rate * 2), c.pcm]);
    const h = Buffer.alloc(44);
    h.write('RIFF', 0); h.writeUInt32LE(36 + pcm.length, 4); h.write('WAVE', 8); h.write('fmt ', 12);
    h.writeUInt32LE(16, 16); h.writeUInt16LE(1, 20); h.writeUInt16LE(1, 22); h.writeUInt32LE(a.rate, 24);
    h.writeUInt32LE(a.rate * 2, 28); h.writeUInt16LE(2, 32); h.writeUInt16LE(16, 34); h.write('data', 36);
    h.writeUInt32LE(pcm.length, 40);
    return Buffer.concat([h, pcm]);
  }

  await check('transcription with stream: true (SSE deltas as the engine goes)', async () => {
    const { toFile } = await import('openai');
    const stream = await stt.audio.transcriptions.create({
      file: await toFile(twoSentences(), 'two.wav'), model: 'whisper-1', stream: true,
    });
    const events = [];
    for await (const ev of stream) events.push(ev);
    const deltas = events.filter((e) => e.type === 'transcript.text.delta');
    const done = events.at(-1);
    assert.equal(done.type, 'transcript.text.done');
    assert.ok(deltas.length >= 2, `${deltas.length} deltas: ${JSON.stringify(events)}`);
    assert.equal(deltas.map((d) => d.delta).join(''), done.text);
    assert.match(done.text, /young man/);
  });

  await check('a Buffer via toFile (Content-Length upload)', async () => {
    const { toFile } = await import('openai');
    const t = await stt.audio.transcriptions.create({
      file: await toFile(fs.readFileSync(clip), 'clip.wav'), model: 'whisper-1',
    });
    assert.ok(t.text.length > 10);
  });

  const magic = {
    mp3: (b) => (b[0] === 0xff && (b[1] & 0xe0) === 0xe0) || b.subarray(0, 3).toString() === 'ID3',
    opus: (b) => b.subarray(0, 4).toString() === 'OggS' && b.includes(Buffer.from('OpusHead')),
    flac: (b) => b.subarray(0, 4).toString() === 'fLaC',
    aac: (b) => b[0] === 0xff && (b[1] & 0xf6) === 0xf0, // ADTS
    wav: (b) => b.subarray(0, 4).toString() === 'RIFF' && b.subarray(8, 12).toString() === 'WAVE',
    pcm: (b) => b.length % 2 === 0 && b.subarray(0, 4).toString() !== 'RIFF',
  };
  for (const fmt of [undefined, 'mp3', 'opus', 'aac', 'flac', 'wav', 'pcm']) {
    await check(`speech response_format ${fmt ?? '(default: mp3)'}`, async () => {
      const res = await speech.audio.speech.create({
        model: 'tts-1', voice: 'alloy', input: 'The quick brown fox jumps over the lazy dog.',
        ...(fmt ? { response_format: fmt } : {}),
      });
      const b = Buffer.from(await res.arrayBuffer());
      assert.ok(b.length > 2000, `${b.length} bytes`);
      assert.ok(magic[fmt ?? 'mp3'](b), `not ${fmt}: ${b.subarray(0, 8).toString('hex')}`);
      if (fmt === 'pcm') assert.ok(b.length > 24000 * 2, 'more than a second of 24 kHz PCM16');
    });
  }

  await check('speech with stream_format sse', async () => {
    const res = await speech.audio.speech.create({
      model: 'gpt-4o-mini-tts', voice: 'alloy', input: 'Hello there. How are you?',
      response_format: 'pcm', stream_format: 'sse',
    });
    const text = await res.text();
    const events = text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)));
    assert.ok(events.length >= 2);
    assert.equal(events.at(-1).type, 'speech.audio.done');
    const audio = events.filter((e) => e.type === 'speech.audio.delta').map((e) => Buffer.from(e.audio, 'base64'));
    assert.ok(Buffer.concat(audio).length > 24000, 'half a second of audio at least');
  });

  await check('errors arrive as the SDK expects them', async () => {
    await assert.rejects(
      speech.audio.speech.create({ model: 'tts-1', voice: 'nobody-at-all', input: 'hi' }),
      (e) => {
        assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
        assert.equal(e.status, 400);
        assert.match(e.message, /unknown voice/);
        assert.equal(e.param, 'voice');
        assert.equal(e.type, 'invalid_request_error');
        return true;
      },
    );
    await assert.rejects(
      stt.audio.transcriptions.create({
        file: await (await import('openai')).toFile(Buffer.from('not audio at all'), 'x.wav'), model: 'whisper-1',
      }),
      (e) => e.status === 415 || e.status === 400,
    );
  });
} finally {
  await asr.stop();
  await tts.stop();
}

// A shared deployment: keys and a rate limit, as the SDK meets them.
const keys = `${process.env.AT_BUILD_DIR}/clients/keys.txt`;
fs.writeFileSync(keys, '# test keys\nclient-test-key-1\n');
const locked = await startService('tts', ['--api-keys', keys, '--rate-limit', '2']);
try {
  const good = new OpenAI({ apiKey: 'client-test-key-1', baseURL: `${locked.url}/v1`, maxRetries: 0 });
  const bad = new OpenAI({ apiKey: 'client-wrong-key', baseURL: `${locked.url}/v1`, maxRetries: 0 });
  await check('a wrong key is an AuthenticationError', async () => {
    await assert.rejects(bad.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'hi' }), (e) => {
      assert.ok(e instanceof OpenAI.AuthenticationError, e.constructor.name);
      assert.equal(e.code, 'invalid_api_key');
      return true;
    });
  });
  await check('the right key works until its rate limit: RateLimitError', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await good.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Hi.', response_format: 'wav' });
      assert.ok((await res.arrayBuffer()).byteLength > 1000);
    }
    await assert.rejects(good.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Hi.' }), (e) => {
      assert.ok(e instanceof OpenAI.RateLimitError, e.constructor.name);
      assert.ok(Number(e.headers.get('retry-after')) >= 1);
      return true;
    });
  });
  await check('/health stays open', async () => {
    assert.equal((await fetch(`${locked.url}/health`)).status, 200);
  });
} finally {
  await locked.stop();
}
if (failed) {
  console.log(`${failed} check(s) failed`);
  process.exit(1);
}
console.log('all openai client checks passed');
