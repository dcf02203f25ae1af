// app.js - the live translation page.  No framework, no build step.
// Relative URLs throughout, so the page works behind any host:port (and
// on http://localhost, where browsers allow the microphone without TLS).
'use strict';

const $ = (id) => document.getElementById(id);
const ui = {
  source: $('source'), target: $('target'), voice: $('voice'), speak: $('speak'),
  start: $('start'), state: $('state'), stats: $('stats'), error: $('error'),
  partial: $('partial'), segments: $('segments'),
};
// Counters the page shows; also read by the browser test.
const stats = window.atStats = {
  partials: 0, finals: 0, translations: 0, audioChunks: 0, audioSeconds: 0,
  played: 0, errors: 0,
};

let config = null;    // GET v1/config

// A deployment with API keys is opened as /?api_key=KEY: the page passes
// the key on (a browser cannot set headers on a WebSocket).
const apiKey = new URLSearchParams(location.search).get('api_key');
function withKey(url) {
  if (apiKey) url.searchParams.set('api_key', apiKey);
  return url;
}
let session = null;   // the running session

function setState(state, text) {
  ui.state.dataset.state = state;
  ui.state.textContent = text || state;
}
function showError(msg) {
  ui.error.textContent = msg || '';
  if (msg) stats.errors++;
}
function showStats() {
  ui.stats.textContent = `${stats.finals} segments · ${stats.translations} translated · ` +
    `${stats.audioSeconds.toFixed(1)} s of speech received · ${stats.played} played`;
}

function option(select, value, label) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = label;
  select.appendChild(o);
}

function fillTargets() {
  const src = ui.source.value;
  const previous = ui.target.value;
  ui.target.textContent = '';
  const targets = config.pairs.filter((p) => p.source === src).map((p) => p.target);
  if (!targets.includes(src)) targets.push(src); // "translate" into the same language: captions only
  for (const t of targets) option(ui.target, t, t);
  ui.target.value = targets.includes(previous) ? previous : (targets.includes('es') ? 'es' : targets[0]);
  fillVoices();
}

function fillVoices() {
  const lang = ui.target.value;
  ui.voice.textContent = '';
  let voices = config.voices.filter((v) => v.language === lang || v.language.startsWith(lang + '-'));
  if (!voices.length) voices = config.voices;
  for (const v of voices) option(ui.voice, v.name, `${v.name} (${v.language}${v.gender ? ', ' + v.gender : ''}, ${v.engine})`);
}

async function loadConfig() {
  setState('connecting', 'loading languages…');
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await fetch(withKey(new URL('v1/config', location.href)), { cache: 'no-store' });
      if (r.status === 503 && attempt < 30) { await new Promise((ok) => setTimeout(ok, 1000)); continue; }
      if (!r.ok) throw new Error(`v1/config answered ${r.status}`);
      config = await r.json();
      break;
    } catch (e) {
      setState('error', 'offline');
      showError(`cannot reach the server: ${e.message}`);
      return;
    }
  }
  for (const l of config.source_languages) option(ui.source, l, l);
  ui.source.value = config.source_languages.includes('en') ? 'en' : config.source_languages[0];
  fillTargets();
  ui.source.onchange = fillTargets;
  ui.target.onchange = fillVoices;
  ui.start.disabled = false;
  setState('idle', 'ready');
}

// ---- one segment's row ----
function segmentRow(id) {
  let li = document.getElementById(`seg-${id}`);
  if (!li) {
    li = document.createElement('li');
    li.id = `seg-${id}`;
    li.innerHTML = '<div class="source"></div><div class="translation"></div><div class="meta"></div>';
    ui.segments.appendChild(li);
  }
  return li;
}

// ---- playback, in order: each chunk is scheduled right after the last ----
function playChunk(s, header, data) {
  const pcm = new Int16Array(data);
  if (!pcm.length) return;
  const buf = s.ctx.createBuffer(1, pcm.length, header.sample_rate);
  const ch = buf.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
  const node = s.ctx.createBufferSource();
  node.buffer = buf;
  node.connect(s.ctx.destination);
  const at = Math.max(s.playAt, s.ctx.currentTime + 0.05);
  node.start(at);
  s.playAt = at + buf.duration;
  stats.audioChunks++;
  stats.audioSeconds += buf.duration;
  const li = segmentRow(header.segment);
  li.classList.add('speaking');
  node.onended = () => {
    stats.played++;
    li.classList.add('played');
    li.querySelector('.meta').textContent = `spoken (${header.sample_rate} Hz)`;
    showStats();
  };
}

function onMessage(s, ev) {
  if (typeof ev.data !== 'string') {
    if (s.audioHeader) playChunk(s, s.audioHeader, ev.data);
    s.audioHeader = null;
    showStats();
    return;
  }
  const m = JSON.parse(ev.data);
  switch (m.type) {
    case 'ready':
      setState('live', `live · ${m.source} → ${m.target}${m.voice ? ' · ' + m.voice : ''}`);
      s.ready = true;
      break;
    case 'partial':
      stats.partials++;
      ui.partial.textContent = m.text;
      break;
    case 'final': {
      stats.finals++;
      ui.partial.textContent = '';
      const li = segmentRow(m.segment);
      li.querySelector('.source').textContent = m.text;
      li.querySelector('.meta').textContent = `${m.start.toFixed(1)}–${m.end.toFixed(1)} s`;
      break;
    }
    case 'translation':
      stats.translations++;
      segmentRow(m.segment).querySelector('.translation').textContent = m.translated_text;
      break;
    case 'audio':
      s.audioHeader = m;
      break;
    case 'audio_end':
      break;
    case 'error':
      if (m.segment !== undefined) {
        const e = document.createElement('div');
        e.className = 'seg-error';
        e.textContent = m.message;
        segmentRow(m.segment).appendChild(e);
        stats.errors++;
      } else {
        showError(m.message);
      }
      break;
    case 'summary':
      s.summary = m;
      break;
  }
  showStats();
}

async function start() {
  showError('');
  ui.segments.textContent = '';
  ui.partial.textContent = '';
  Object.keys(stats).forEach((k) => { stats[k] = 0; });
  ui.start.disabled = true;
  setState('connecting', 'starting microphone…');
  const s = { ctx: null, stream: null, worklet: null, ws: null, playAt: 0, audioHeader: null,
              ready: false, stopping: false, summary: null };
  session = s;
  try {
    s.ctx = new AudioContext();
    s.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
    await s.ctx.audioWorklet.addModule('pcm-worklet.js');
    s.worklet = new AudioWorkletNode(s.ctx, 'pcm16-downsampler', {
      processorOptions: { targetRate: 16000, frameMs: 100 },
    });
    const mute = s.ctx.createGain();
    mute.gain.value = 0;
    s.ctx.createMediaStreamSource(s.stream).connect(s.worklet);
    s.worklet.connect(mute).connect(s.ctx.destination);
  } catch (e) {
    teardown(s);
    setState('error', 'no microphone');
    showError(`microphone: ${e.message || e}`);
    ui.start.disabled = false;
    return;
  }
  setState('connecting', 'connecting…');
  const url = withKey(new URL('v1/pipeline', location.href));
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = s.ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => {
    ws.send(JSON.stringify({
      type: 'config', source: ui.source.value, target: ui.target.value,
      voice: ui.voice.value, speak: ui.speak.checked, sample_rate: 16000, encoding: 'pcm16',
    }));
    // Audio flows once the server is ready; before that it is dropped.
    s.worklet.port.onmessage = (e) => {
      if (s.ready && !s.stopping && ws.readyState === WebSocket.OPEN) ws.send(e.data);
    };
    ui.start.textContent = 'Stop';
    ui.start.classList.add('running');
    ui.start.disabled = false;
  };
  ws.onmessage = (ev) => onMessage(s, ev);
  ws.onerror = () => showError('connection error');
  ws.onclose = (ev) => {
    teardown(s);
    ui.start.textContent = 'Start';
    ui.start.classList.remove('running');
    ui.start.disabled = false;
    if (ev.code === 1000 && s.summary) {
      setState('idle', `finished · ${s.summary.segments} segments`);
    } else if (ev.code === 1000 || ev.code === 1005) {
      setState('idle', 'closed');
    } else {
      setState('error', `closed (${ev.code}${ev.reason ? ': ' + ev.reason : ''})`);
      if (!ui.error.textContent) showError(`the connection closed with code ${ev.code}`);
    }
    if (session === s) session = null;
  };
}

function teardown(s) {
  if (s.stream) s.stream.getTracks().forEach((t) => t.stop());
  if (s.worklet) { s.worklet.port.onmessage = null; s.worklet.disconnect(); }
  s.stream = null;
  s.worklet = null;
  // s.ctx stays open until its queued speech has played.
}

function stop() {
  const s = session;
  if (!s) return;
  s.stopping = true;
  setState('connecting', 'finishing…');
  ui.start.disabled = true;
  if (s.worklet) s.worklet.port.postMessage('flush');
  if (s.stream) s.stream.getTracks().forEach((t) => t.stop());
  if (s.ws && s.ws.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify({ type: 'end' }));
}

ui.start.onclick = () => (session ? stop() : start());
loadConfig();
