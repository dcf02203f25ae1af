// The pipeline's web page in a real browser: Debian's headless chromium,
// driven by playwright-core (no browser download), with a fake microphone
// that plays real LibriVox speech.  Asserts that captions, translations
// and played-back synthesized speech appear; saves a screenshot.
//
// Environment: AT_BUILD_DIR (binaries; artefacts go to $AT_BUILD_DIR/browser),
// AT_CHROMIUM (default /usr/bin/chromium), AT_PIPELINE_PORT (use a running
// server instead of spawning `audio-translator serve`).
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const buildDir = path.resolve(process.env.AT_BUILD_DIR || 'build');
const outDir = path.join(buildDir, 'browser');
fs.mkdirSync(outDir, { recursive: true });
const require = createRequire(path.join(outDir, 'package.json'));
const { chromium } = require('playwright-core');
const librivox = '/usr/share/pocketsphinx/test/data/librivox';
const log = (...a) => console.log('#', ...a);

// ---- a multi-sentence recording for the fake microphone ----
function pcmOf(file) {
  const b = fs.readFileSync(file);
  assert.equal(b.toString('ascii', 0, 4), 'RIFF');
  let off = 12, rate = 0, data = null;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4), len = b.readUInt32LE(off + 4);
    if (id === 'fmt ') rate = b.readUInt32LE(off + 12);
    if (id === 'data') data = b.subarray(off + 8, off + 8 + len);
    off += 8 + len + (len & 1);
  }
  assert.equal(rate, 16000);
  return data;
}
function writeWav(file, parts, rate) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0); h.writeUInt32LE(36 + len, 4); h.write('WAVE', 8);
  h.write('fmt ', 12); h.writeUInt32LE(16, 16); h.writeUInt16LE(1, 20); h.writeUInt16LE(1, 22);
  h.writeUInt32LE(rate, 24); h.writeUInt32LE(rate * 2, 28); h.writeUInt16LE(2, 32); h.writeUInt16LE(16, 34);
  h.write('data', 36); h.writeUInt32LE(len, 40);
  fs.writeFileSync(file, Buffer.concat([h, ...parts]));
}
const wav = path.join(outDir, 'speech.wav');
const silence = Buffer.alloc(2 * 16000 * 1.2);
const clips = ['0870', '0880', '0890', '0920', '0930']
  .map((id) => pcmOf(`${librivox}/sense_and_sensibility_01_austen_64kb-${id}.wav`));
writeWav(wav, [silence, ...clips.flatMap((c) => [c, silence])], 16000);

// ---- the server ----
async function startServer() {
  if (process.env.AT_PIPELINE_PORT) return { port: +process.env.AT_PIPELINE_PORT, proc: null };
  const proc = spawn(path.join(buildDir, 'audio-translator'), ['serve', '--host', '127.0.0.1',
    '--asr-port', '0', '--translate-port', '0', '--tts-port', '0', '--pipeline-port', '0'],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  const port = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('serve did not start')), 120000);
    proc.stderr.on('data', (d) => {
      buf += d;
      if (process.env.AT_TEST_VERBOSE) process.stderr.write(d);
      const m = buf.match(/service=pipeline url=http:\/\/[^:]+:(\d+)/);
      if (m) { clearTimeout(timer); resolve(+m[1]); }
    });
    proc.on('exit', (c) => reject(new Error(`serve exited with ${c}`)));
  });
  proc.stderr.on('data', (d) => { if (/Sanitizer|runtime error|level=error/.test(d)) process.stderr.write(d); });
  for (let i = 0; i < 600; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/ready`);
      if (r.status === 200) break;
    } catch { /* not yet */ }
    await new Promise((ok) => setTimeout(ok, 200));
  }
  return { port, proc };
}

const { port, proc } = await startServer();
log(`pipeline on port ${port}`);
const browser = await chromium.launch({
  executablePath: process.env.AT_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
    '--disable-component-update', '--no-first-run', '--autoplay-policy=no-user-gesture-required',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${wav}`],
});
let failed = false;
const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
page.on('console', (m) => { if (m.type() === 'error') log('page error:', m.text()); });
page.on('pageerror', (e) => log('page exception:', e.message));
try {
  // localhost is a secure context: the microphone works without TLS.
  await page.goto(`http://localhost:${port}/`);
  await page.waitForFunction(() => !document.getElementById('start').disabled, null, { timeout: 30000 });
  const targets = await page.$$eval('#target option', (o) => o.map((x) => x.value));
  const voices = await page.$$eval('#voice option', (o) => o.map((x) => x.value));
  log('targets:', targets.join(' '), '| voices for es:', voices.length);
  assert.ok(targets.includes('es'));
  assert.ok(voices.length >= 1);
  await page.selectOption('#target', 'es');
  await page.selectOption('#voice', 'es');
  await page.click('#start');
  await page.waitForFunction(() => document.getElementById('state').dataset.state === 'live', null, { timeout: 30000 });
  log('state:', await page.textContent('#state'));
  // Captions, translations and played speech for at least two sentences.
  await page.waitForFunction(() => {
    const s = window.atStats;
    return s.partials > 0 && s.translations >= 2 && s.played >= 1 &&
      document.querySelectorAll('#segments li.played').length >= 1;
  }, null, { timeout: 120000, polling: 250 });
  const rows = await page.$$eval('#segments li', (lis) => lis.map((li) => ({
    source: li.querySelector('.source').textContent,
    translation: li.querySelector('.translation').textContent,
    played: li.classList.contains('played'),
  })));
  for (const r of rows) log(`${r.played ? '[played] ' : ''}${r.source} -> ${r.translation}`);
  assert.ok(rows.length >= 2);
  assert.ok(rows[0].source.length > 0 && rows[0].translation.length > 0);
  assert.ok(rows.some((r) => r.played));
  const stats = await page.evaluate(() => window.atStats);
  log('stats:', JSON.stringify(stats));
  assert.ok(stats.audioSeconds > 0.5);
  assert.equal(await page.textContent('#error'), '');
  await page.screenshot({ path: path.join(outDir, 'pipeline.png'), fullPage: true });
  log('screenshot:', path.join(outDir, 'pipeline.png'));
  await page.click('#start'); // stop
  await page.waitForFunction(() => document.getElementById('state').textContent.startsWith('finished'),
    null, { timeout: 60000 });
  log('after stop:', await page.textContent('#state'));
} catch (e) {
  failed = true;
  console.error('FAIL:', e.message);
  await page.screenshot({ path: path.join(outDir, 'pipeline-failure.png'), fullPage: true }).catch(() => {});
  console.error('page state:', await page.textContent('#state').catch(() => '?'),
    await page.textContent('#error').catch(() => '?'));
} finally {
  await browser.close();
  if (proc) {
    proc.kill('SIGTERM');
    await new Promise((ok) => proc.on('exit', ok));
  }
}
process.exit(failed ? 1 : 0);
