// The guppy playground: chat with the model in the browser and watch its attention.
//
// Everything runs here, from files beside this one: onnxruntime-web runs model.onnx (the graph
// `guppy export --onnx` writes, with a KV cache and the attention probabilities as outputs), the
// Hugging Face tokenizer (tokenizers.js) reads tokenizer.json, and the chat template in
// tokenizer_config.json is rendered by @huggingface/jinja. The rules for what the model sees are
// guppy's own (guppy/chat.py, guppy/sampler.py), written again below: keep them in step.

import * as ort from "./vendor/ort.wasm.bundle.min.mjs";
import { Tokenizer } from "./vendor/tokenizers.min.mjs";
import { Template } from "./vendor/jinja.mjs";

// The WebAssembly binary from beside this page, never a CDN: the page works offline. (Its JavaScript
// glue is inside the bundle.)
ort.env.wasm.wasmPaths = { wasm: new URL("./vendor/ort-wasm-simd-threaded.wasm", import.meta.url).href };
// Several threads need cross-origin isolation (COOP/COEP headers), which a plain file server does not
// send; at this size one thread is fast enough anyway.
ort.env.wasm.numThreads = 1;

const $ = (id) => document.getElementById(id);
const stats = (window.guppyStats = { loadMs: null, replies: [] });

const meta = await (await fetch("guppy.json")).json();
const config = meta.model;
const [tokenizerJson, tokenizerConfig] = await Promise.all(
  ["tokenizer.json", "tokenizer_config.json"].map((f) => fetch(f).then((r) => r.json())));
const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
const template = new Template(tokenizerConfig.chat_template);
const IM_END = meta.special.im_end;
// guppy chat: a reply gets at most half the context, so that the conversation before it fits too.
const MAX_NEW_TOKENS = Math.min(meta.chat.max_new_tokens, Math.floor(config.context / 2));

let session = null;
let history = [];
let last = null; // the last reply's tokens, attention rows and top-5s

// ---------------------------------------------------------------------------------- guppy's rules

function encodePrompt(messages) {
  // tokenizer.encode_prompt: the chat in ChatML, then "<|im_start|>assistant\n".
  const text = template.render({ messages, add_generation_prompt: true });
  return tokenizer.encode(text, { add_special_tokens: false }).ids;
}

function trimHistory(messages, budget) {
  // guppy.chat.trim_history: drop the oldest messages until the prompt fits in `budget` tokens and
  // starts with the user; the newest message always stays.
  while (messages.length > 1 && (messages[0].role !== "user" || encodePrompt(messages).length > budget)) {
    messages = messages.slice(1);
  }
  return messages;
}

function sampleNext(logits, { temperature, topK, topP }) {
  // guppy.sampler.sample_next for one row: temperature 0 is argmax (the first of equal maxima).
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (temperature === 0) return best;
  let scaled = Array.from(logits, (x) => x / temperature);
  if (topK > 0 && topK < scaled.length) {
    const kth = [...scaled].sort((a, b) => b - a)[topK - 1];
    scaled = scaled.map((x) => (x < kth ? -Infinity : x));
  }
  const probs = softmax(scaled);
  if (topP < 1) { // the fewest likeliest tokens whose probability adds up to top_p
    const order = [...probs.keys()].sort((a, b) => probs[b] - probs[a]);
    let before = 0;
    for (const i of order) {
      const p = probs[i];
      if (before >= topP) probs[i] = 0;
      before += p;
    }
  }
  let u = Math.random() * probs.reduce((a, b) => a + b, 0);
  for (let i = 0; i < probs.length; i++) if ((u -= probs[i]) < 0) return i;
  return best;
}

function softmax(xs) {
  let max = -Infinity;
  for (const x of xs) if (x > max) max = x;
  const e = Array.from(xs, (x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

function top5(logits) {
  const probs = softmax(logits);
  return [...probs.keys()].sort((a, b) => probs[b] - probs[a]).slice(0, 5).map((i) => [i, probs[i]]);
}

async function* generate(prompt, options) {
  // guppy.sampler.generate for one prompt: cut it from the left only where it leaves the reply less
  // than min(max_new_tokens, context / 2) tokens; stop at <|im_end|> or the context's end.
  const room = Math.min(options.maxNewTokens, Math.floor(config.context / 2));
  prompt = prompt.slice(-(config.context - room));
  const steps = Math.min(options.maxNewTokens, config.context - prompt.length);
  const empty = [config.n_layer, 1, config.n_head, 0, meta.head_size];
  let keys = new ort.Tensor("float32", new Float32Array(0), empty);
  let values = new ort.Tensor("float32", new Float32Array(0), empty);
  let x = prompt;
  for (let step = 0; step < steps; step++) {
    const input_ids = new ort.Tensor("int64", BigInt64Array.from(x, (i) => BigInt(i)), [1, x.length]);
    const out = await session.run({ input_ids, past_keys: keys, past_values: values });
    const V = config.vocab_size, T = x.length;
    const logits = out.logits.data.subarray((T - 1) * V, T * V);
    const token = sampleNext(logits, options);
    yield { token, fed: x, attention: out.attention, top: top5(logits) };
    if (token === IM_END) return;
    keys = out.present_keys;
    values = out.present_values;
    x = [token];
  }
}

// ---------------------------------------------------------------------------------- chat

async function ask(text, options = readControls()) {
  const started = performance.now();
  history = trimHistory([...history, { role: "user", content: text }], config.context - MAX_NEW_TOKENS);
  const prompt = encodePrompt(history);
  const shown = addMessage("assistant", "");
  const reply = { ids: [], seq: [], rows: null, top: [], started, times: [] };
  for await (const step of generate(prompt, { ...options, maxNewTokens: MAX_NEW_TOKENS })) {
    reply.times.push(performance.now());
    reply.promptLength ??= step.fed.length; // the first step reads the (possibly cut) prompt
    reply.seq.push(...step.fed);
    keepRows(reply, step.attention, step.fed.length);
    reply.top.push({ token: step.token, top: step.top });
    if (step.token === IM_END) break;
    reply.ids.push(step.token);
    const textSoFar = tokenizer.decode(reply.ids, { skip_special_tokens: true }).trimStart();
    if (!textSoFar.endsWith("\ufffd")) shown.textContent = textSoFar; // wait for the rest of a character
  }
  const content = tokenizer.decode(reply.ids, { skip_special_tokens: true }).trim();
  shown.textContent = content;
  history.push({ role: "assistant", content });
  last = reply;
  const n = reply.times.length;
  stats.replies.push({
    reply: content, tokens: n, firstTokenMs: reply.times[0] - reply.started,
    // decoding speed after the first token (which also reads the whole prompt)
    tokensPerSecond: n > 1 ? (n - 1) / ((reply.times[n - 1] - reply.times[0]) / 1000) : null,
  });
  showMemory();
  drawAttention();
  drawTop5();
  return content;
}

function keepRows(reply, attention, T) {
  // attention (layers, 1, heads, T, S): append this call's T query rows of every layer and head.
  const [L, , H, , S] = attention.dims;
  reply.rows ??= Array.from({ length: L }, () => Array.from({ length: H }, () => []));
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const start = ((l * H + h) * T + t) * S;
        reply.rows[l][h].push(attention.data.slice(start, start + S));
      }
    }
  }
}

function readControls() {
  const number = (id, fallback) => (Number.isFinite(parseFloat($(id).value)) ? parseFloat($(id).value) : fallback);
  return { temperature: Math.max(0, number("temperature", 0.8)), topK: Math.max(0, Math.round(number("top-k", 0))),
           topP: Math.min(1, Math.max(0.01, number("top-p", 1))) };
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  if (role === "assistant") {
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = `${meta.persona.name}: `;
    div.append(who);
    const body = document.createElement("span");
    body.className = "reply";
    div.append(body);
    $("messages").append(div);
    return body;
  }
  div.textContent = text;
  $("messages").append(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return div;
}

function showMemory() {
  const used = encodePrompt(history).length;
  $("memory").textContent = `it remembers ${history.length} message(s), ${used} of its ${config.context} tokens`
    + ` (older ones are forgotten to leave ${MAX_NEW_TOKENS} for a reply)`;
}

// ---------------------------------------------------------------------------------- attention panel

const label = (id) => tokenizer.decode([id], { skip_special_tokens: false }).replaceAll("\n", "↵").replaceAll(" ", "␣");

// viridis at five stops, interpolated: dark = 0, yellow = 1
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function color(p) {
  const x = Math.min(1, Math.max(0, p)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x)), f = x - i;
  const [a, b] = [STOPS[i], STOPS[i + 1]];
  return `rgb(${a.map((v, k) => Math.round(v + f * (b[k] - v))).join(",")})`;
}

const MARGIN = 90;

function drawAttention() {
  const canvas = $("attention"), ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!last) return;
  const rows = last.rows[+$("layer").value][+$("head").value];
  const N = rows.length, cell = (canvas.width - MARGIN) / N;
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < N; j++) {
      ctx.fillStyle = j <= i ? color(rows[i][j]) : "#e8e8e8"; // grey: the masked future
      ctx.fillRect(MARGIN + j * cell, MARGIN + i * cell, Math.ceil(cell), Math.ceil(cell));
    }
  }
  const promptLength = last.promptLength;
  ctx.strokeStyle = "#fff";
  ctx.beginPath();
  ctx.moveTo(MARGIN, MARGIN + promptLength * cell);
  ctx.lineTo(canvas.width, MARGIN + promptLength * cell);
  ctx.moveTo(MARGIN + promptLength * cell, MARGIN);
  ctx.lineTo(MARGIN + promptLength * cell, canvas.height);
  ctx.stroke();
  if (cell >= 5) { // token labels, when they can be read
    ctx.fillStyle = "#1d2430";
    ctx.font = `${Math.min(11, Math.floor(cell))}px ui-monospace, monospace`;
    ctx.textBaseline = "middle";
    last.seq.forEach((id, i) => {
      const text = label(id).slice(0, 12);
      ctx.textAlign = "right";
      ctx.fillText(text, MARGIN - 4, MARGIN + (i + 0.5) * cell);
      ctx.save();
      ctx.translate(MARGIN + (i + 0.5) * cell, MARGIN - 4);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left";
      ctx.fillText(text, 0, 0);
      ctx.restore();
    });
  }
}

function hover(event) {
  if (!last) return;
  const canvas = $("attention"), box = canvas.getBoundingClientRect();
  const x = (event.clientX - box.left) * (canvas.width / box.width) - MARGIN;
  const y = (event.clientY - box.top) * (canvas.height / box.height) - MARGIN;
  const rows = last.rows[+$("layer").value][+$("head").value];
  const cell = (canvas.width - MARGIN) / rows.length;
  const i = Math.floor(y / cell), j = Math.floor(x / cell);
  if (i < 0 || j < 0 || i >= rows.length || j >= rows.length) return;
  const p = j <= i ? rows[i][j].toFixed(3) : "0 (masked: a later token)";
  $("hover").textContent = `${label(last.seq[i])} → ${label(last.seq[j])}: ${p}`;
}

function drawTop5() {
  const body = $("top5").querySelector("tbody");
  body.replaceChildren();
  last.top.forEach((step, n) => {
    const tr = document.createElement("tr");
    const p = step.top.find(([i]) => i === step.token);
    const cells = [String(n + 1), label(step.token), p ? p[1].toFixed(3) : "< top 5"];
    cells.forEach((text, k) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (k === 1) td.className = "tok";
      tr.append(td);
    });
    const alts = document.createElement("td");
    for (const [i, q] of step.top) {
      const span = document.createElement("span");
      span.className = i === step.token ? "alt chosen" : "alt";
      span.textContent = `${label(i)} ${q.toFixed(2)}`;
      alts.append(span);
    }
    tr.append(alts);
    body.append(tr);
  });
}

// ---------------------------------------------------------------------------------- start

async function load(kind) {
  setState("loading", `loading the ${kind} model…`);
  session = await ort.InferenceSession.create(kind === "int8" ? "model.int8.onnx" : "model.onnx",
                                              { executionProviders: ["wasm"] });
  setState("ready", `ready: ${meta.persona.name}, ${kind}, ${(meta.files[kind] / 1e6).toFixed(1)} MB, `
    + `${config.n_layer} layers x ${config.n_head} heads, context ${config.context} tokens`);
}

function setState(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
  for (const id of ["prompt", "send", "model"]) $(id).disabled = state !== "ready";
}

function fillSelect(id, n) {
  $(id).replaceChildren(...Array.from({ length: n }, (_, i) => new Option(String(i), String(i))));
}

async function start() {
  $("persona-name").textContent = meta.persona.name;
  $("persona-description").textContent = meta.persona.description;
  document.title = `${meta.persona.name}: guppy playground`;
  fillSelect("layer", config.n_layer);
  fillSelect("head", config.n_head);
  const kind = new URLSearchParams(location.search).get("model") === "int8" ? "int8" : "fp32";
  $("model").value = kind;
  await load(kind);
  stats.loadMs = performance.now(); // from the start of navigation
  $("ask").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (!text) return;
    $("prompt").value = "";
    addMessage("user", text);
    setState("generating", "thinking…");
    try {
      await ask(text);
      setState("ready", "ready");
    } catch (e) {
      setState("error", `error: ${e.message ?? e}`);
    }
  });
  $("reset").addEventListener("click", () => { history = []; $("messages").replaceChildren(); showMemory(); });
  $("model").addEventListener("change", () => load($("model").value).catch((e) => setState("error", `error: ${e}`)));
  $("layer").addEventListener("change", drawAttention);
  $("head").addEventListener("change", drawAttention);
  $("attention").addEventListener("mousemove", hover);
  drawAttention();
}

window.guppy = { encodePrompt, trimHistory, ask, load, reset: () => { history = []; } };
start().catch((e) => setState("error", `error: ${e.message ?? e}`));
