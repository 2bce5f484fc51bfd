// A browser call: microphone -> /ws/call, bot voice <- /ws/call, live transcript and intent.
"use strict";
const $ = (id) => document.getElementById(id);
// What the page heard, for people and for the end-to-end test.
window.voicebot = { botSamples: 0, botPeak: 0, events: [], closed: null };

let ws = null, ctx = null, mic = null, playAt = 0, playing = [];

function line(cls, text) {
  const p = document.createElement("p");
  p.className = cls;
  p.textContent = text;
  $("transcript").appendChild(p);
  return p;
}

function play(buffer) {
  const pcm = new Int16Array(buffer);
  const audio = ctx.createBuffer(1, pcm.length, 16000);
  const out = audio.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) {
    out[i] = pcm[i] / 32768;
    window.voicebot.botPeak = Math.max(window.voicebot.botPeak, Math.abs(pcm[i]));
  }
  window.voicebot.botSamples += pcm.length;
  const source = ctx.createBufferSource();
  source.buffer = audio;
  source.connect(ctx.destination);
  playAt = Math.max(playAt, ctx.currentTime + 0.05);
  source.start(playAt);
  playAt += audio.duration;
  playing.push(source);
  source.onended = () => { playing = playing.filter((s) => s !== source); };
}

function clearPlayback() {
  for (const source of playing) source.stop();
  playing = [];
  playAt = 0;
}

let botLine = null;
function onEvent(event) {
  window.voicebot.events.push(event);
  if (event.type === "partial") $("partial").textContent = event.text;
  else if (event.type === "final") {
    $("partial").textContent = "";
    if (event.text) line("caller", "You: " + event.text);
  } else if (event.type === "dtmf") line("caller", "You (keypad): " + event.text);
  else if (event.type === "reply") {
    botLine = line("bot", "Bot: " + event.text);
    if (event.intent) $("intent").textContent = `${event.intent} (${event.confidence})`;
  } else if (event.type === "bot_turn" && event.interrupted && botLine) {
    botLine.classList.add("cut");
    line("bot", "Bot (heard): " + (event.text || "-"));
  } else if (event.type === "clear") clearPlayback();
  else if (event.type === "handoff") $("status").textContent = "transferring (" + event.reason + ")";
}

async function start() {
  $("start").disabled = true;
  ctx = new AudioContext({ sampleRate: 16000 });
  await ctx.audioWorklet.addModule("/call-worklet.js");
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, channelCount: 1 },
  });
  mic = new AudioWorkletNode(ctx, "mic-frames");
  ctx.createMediaStreamSource(stream).connect(mic);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws/call`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "start", sampleRate: ctx.sampleRate, callerId: $("caller").value }));
    mic.port.onmessage = (e) => { if (ws.readyState === WebSocket.OPEN) ws.send(e.data); };
    $("status").textContent = "in call";
    $("hangup").disabled = false;
  };
  ws.onmessage = (e) => (typeof e.data === "string" ? onEvent(JSON.parse(e.data)) : play(e.data));
  ws.onclose = (e) => {
    window.voicebot.closed = { code: e.code, reason: e.reason };
    $("status").textContent = `call ended (${e.code} ${e.reason})`;
    $("hangup").disabled = true;
    stream.getTracks().forEach((t) => t.stop());
  };
}

$("start").onclick = () => start().catch((err) => { $("status").textContent = "error: " + err; });
$("hangup").onclick = () => ws && ws.send(JSON.stringify({ type: "stop" }));
for (const key of "123456789*0#") {
  const b = document.createElement("button");
  b.textContent = key;
  b.onclick = () => ws && ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify({ type: "dtmf", digit: key }));
  $("keypad").appendChild(b);
}
