// thunder3d live avatar: the built-in head (GLB with ARKit morph targets) driven over the WebSocket
// stream (/v1/stream). A dropped file plays with the audio clock as master: the audio starts
// look-ahead + JITTER_MS after the stream, and each animation frame shows the frame of the audio's
// current time. Microphone frames are shown as they arrive (the speaker hears themselves).
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';

const FPS = 25;
const JITTER_MS = 150; // playback starts this much later than the look-ahead requires
const CHUNK_SECONDS = 0.02; // audio is sent in 20 ms messages, at speaking speed

const view = document.getElementById('view');
const say = (text) => { document.getElementById('status').textContent = text; };
const errors = [];
const fail = (message) => { errors.push(String(message)); say(`error: ${message}`); };

// ------------------------------------------------------------------ scene
const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(window.devicePixelRatio);
view.appendChild(renderer.domElement);
const scene = new THREE.Scene();
scene.background = new THREE.Color(0x30343c);
const camera = new THREE.PerspectiveCamera(25, 1, 0.01, 10);
scene.add(new THREE.HemisphereLight(0xffffff, 0x404050, 1.5));
const light = new THREE.DirectionalLight(0xffffff, 2.0);
light.position.set(0.4, 0.5, 1.0);
scene.add(light);

let mesh = null;
function resize() {
  const w = view.clientWidth || 640, h = view.clientHeight || 480;
  renderer.setSize(w, h);
  camera.aspect = w / h;
  camera.updateProjectionMatrix();
}
window.addEventListener('resize', resize);
resize();

const ready = new GLTFLoader().loadAsync('/v1/head.glb').then((gltf) => {
  gltf.scene.traverse((o) => { if (o.isMesh && o.morphTargetDictionary) mesh = o; });
  if (!mesh) throw new Error('the head has no morph targets');
  mesh.material = new THREE.MeshStandardMaterial({ color: 0xd8b49c, roughness: 0.65, side: THREE.DoubleSide });
  scene.add(gltf.scene);
  const box = new THREE.Box3().setFromObject(gltf.scene);
  const size = box.getSize(new THREE.Vector3());
  const center = box.getCenter(new THREE.Vector3());
  camera.position.set(center.x, center.y, center.z + size.y * 2.6);
  camera.lookAt(center);
  camera.near = size.y * 0.1;
  camera.far = size.y * 10;
  resize();
  say('ready: drop a speech file, or use the microphone');
}).catch((e) => { fail(`cannot load the head: ${e.message || e}`); throw e; });

// ------------------------------------------------------------------ frames
let names = null; // the 52 ARKit names of the frames (the server's start message)
let frames = []; // weights of the current utterance, by frame index
let clock = null; // {ctx, start}: the audio clock of a playing file
let live = false; // microphone: show frames as they arrive

function applyWeights(weights) {
  if (!mesh || !names || !weights) return;
  const dict = mesh.morphTargetDictionary, influences = mesh.morphTargetInfluences;
  for (let k = 0; k < names.length; k++) {
    const i = dict[names[k]];
    if (i !== undefined) influences[i] = weights[k];
  }
}

renderer.setAnimationLoop(() => {
  if (clock) {
    const i = Math.floor((clock.ctx.currentTime - clock.start) * FPS);
    if (i >= 0 && i < frames.length && frames[i]) applyWeights(frames[i]);
  }
  renderer.render(scene, camera);
});

// ------------------------------------------------------------------ streaming
function pcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = s < 0 ? s * 32768 : s * 32767;
  }
  return out.buffer;
}

function settings() {
  const start = { type: 'start', seed: Math.max(0, parseInt(document.getElementById('seed').value, 10) || 0) };
  const emotion = document.getElementById('emotion').value;
  const intensity = document.getElementById('intensity').value;
  if (emotion) start.emotion = emotion;
  if (intensity) start.intensity = parseInt(intensity, 10);
  return start;
}

// Open a stream: resolves with {ws, started, ended} once the server answered the start message.
function openStream(sampleRate, onFrame) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/stream`);
    let endResolve, endReject;
    const ended = new Promise((res, rej) => { endResolve = res; endReject = rej; });
    ended.catch(() => {});
    ws.onopen = () => ws.send(JSON.stringify({ ...settings(), sample_rate: sampleRate }));
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === 'start') { names = msg.names; resolve({ ws, lookahead: msg.lookahead_ms, ended }); }
      else if (msg.type === 'frame') { frames[msg.index] = msg.weights; if (onFrame) onFrame(msg); }
      else if (msg.type === 'end') { endResolve(msg.frames); ws.close(); }
      else if (msg.type === 'error') { fail(msg.error); reject(new Error(msg.error)); endReject(new Error(msg.error)); }
    };
    ws.onerror = () => { const e = new Error('the stream connection failed'); reject(e); endReject(e); };
    ws.onclose = (event) => {
      if (event.code !== 1000 && event.code !== 1005) endReject(new Error(`stream closed (${event.code})`));
    };
  });
}

// Stream `samples` (Float32Array at `rate`): paced at speaking speed and played (a dropped file), or as
// fast as possible without sound (pace=false). Resolves with the number of frames the server sent.
async function streamSamples(samples, rate, { pace = true, play = true } = {}) {
  await ready;
  frames = [];
  clock = null;
  const ctx = play ? audioContext() : null;
  const { ws, lookahead, ended } = await openStream(rate, null);
  if (play) {
    const buffer = ctx.createBuffer(1, samples.length, rate);
    buffer.copyToChannel(samples, 0);
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    clock = { ctx, start: ctx.currentTime + (lookahead + JITTER_MS) / 1000 };
    source.start(clock.start);
  }
  const chunk = Math.round(rate * CHUNK_SECONDS);
  const t0 = performance.now();
  for (let i = 0; i < samples.length; i += chunk) {
    if (pace) {
      const due = t0 + (i / rate) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    ws.send(pcm16(samples.subarray(i, i + chunk)));
  }
  ws.send(JSON.stringify({ type: 'end' }));
  const count = await ended;
  say(`streamed ${count} frames (${(count / FPS).toFixed(2)} s), look-ahead ${lookahead} ms`);
  return count;
}

let sharedContext = null;
function audioContext() {
  if (!sharedContext) sharedContext = new AudioContext();
  if (sharedContext.state === 'suspended') sharedContext.resume();
  return sharedContext;
}

async function streamFile(file) {
  try {
    const ctx = audioContext();
    const decoded = await ctx.decodeAudioData(await file.arrayBuffer());
    const mono = new Float32Array(decoded.length);
    for (let c = 0; c < decoded.numberOfChannels; c++) {
      const data = decoded.getChannelData(c);
      for (let i = 0; i < mono.length; i++) mono[i] += data[i] / decoded.numberOfChannels;
    }
    say(`streaming ${file.name}…`);
    await streamSamples(mono, decoded.sampleRate, { pace: true, play: true });
  } catch (e) {
    fail(e.message || e);
  }
}

// ------------------------------------------------------------------ microphone
let mic = null;
async function toggleMic() {
  const button = document.getElementById('mic');
  if (mic) {
    mic.stop();
    mic = null;
    button.textContent = 'microphone';
    return;
  }
  try {
    await ready;
    const ctx = audioContext();
    const media = await navigator.mediaDevices.getUserMedia({ audio: true });
    frames = [];
    clock = null;
    live = true;
    const { ws } = await openStream(ctx.sampleRate, (msg) => { if (live) applyWeights(msg.weights); });
    const source = ctx.createMediaStreamSource(media);
    const processor = ctx.createScriptProcessor(1024, 1, 1);
    processor.onaudioprocess = (e) => { if (ws.readyState === 1) ws.send(pcm16(e.inputBuffer.getChannelData(0))); };
    source.connect(processor);
    processor.connect(ctx.destination); // outputs silence; keeps the processor running
    mic = {
      stop() {
        live = false;
        processor.disconnect();
        source.disconnect();
        media.getTracks().forEach((t) => t.stop());
        if (ws.readyState === 1) ws.send(JSON.stringify({ type: 'end' }));
      },
    };
    button.textContent = 'stop';
    say('listening…');
  } catch (e) {
    fail(`microphone: ${e.message || e}`);
  }
}

// ------------------------------------------------------------------ page wiring
const drop = document.getElementById('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  if (e.dataTransfer.files.length) streamFile(e.dataTransfer.files[0]);
});
document.getElementById('file').addEventListener('change', (e) => {
  if (e.target.files.length) streamFile(e.target.files[0]);
});
document.getElementById('mic').addEventListener('click', toggleMic);

// ------------------------------------------------------------------ hooks for scripts and tests
function base64Samples(b64) { // little-endian PCM16 -> Float32Array
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const ints = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
  return Float32Array.from(ints, (v) => v / 32768);
}

window.thunder3d = {
  ready: ready.then(() => true),
  errors,
  names: () => names,
  frames: () => frames,
  // Stream PCM16 (base64) at `rate`: {pace, play} as for a dropped file; resolves with the frame count.
  streamPcm16: (b64, rate, options = {}) => streamSamples(base64Samples(b64), rate,
                                                          { pace: false, play: false, ...options }),
  // Show these weights (ARKit order, as the server's names) now, and render them.
  showWeights(weights) {
    clock = null;
    if (!names) throw new Error('no stream yet: the names come with the first start message');
    applyWeights(weights);
    renderer.render(scene, camera);
  },
  // Show frame `i` of the last utterance now (and render it).
  showFrame(i) {
    clock = null;
    applyWeights(frames[i]);
    renderer.render(scene, camera);
    return frames[i] !== undefined;
  },
  // The mouth's box on the canvas [x0, y0, x1, y1] (CSS pixels): the vertices jawOpen moves.
  mouthBox() {
    const target = mesh.geometry.morphAttributes.position[mesh.morphTargetDictionary.jawOpen];
    const base = mesh.geometry.attributes.position;
    const rect = renderer.domElement.getBoundingClientRect();
    const p = new THREE.Vector3();
    let box = [Infinity, Infinity, -Infinity, -Infinity];
    mesh.updateMatrixWorld();
    for (let v = 0; v < base.count; v++) {
      if (Math.hypot(target.getX(v), target.getY(v), target.getZ(v)) < 1e-4) continue;
      p.fromBufferAttribute(base, v).applyMatrix4(mesh.matrixWorld).project(camera);
      const x = (p.x + 1) / 2 * rect.width, y = (1 - p.y) / 2 * rect.height;
      box = [Math.min(box[0], x), Math.min(box[1], y), Math.max(box[2], x), Math.max(box[3], y)];
    }
    return box;
  },
};
