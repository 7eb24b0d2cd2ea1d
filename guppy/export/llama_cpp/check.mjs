// llama.cpp's side of `guppy export --gguf`'s check (guppy/export/gguf_check.py runs it with node).
// stdin: {"model": path, "context": n, "texts": [chat text], "prompts": [[id]], "max_new_tokens": n, "stop_id": id,
//         "vocab_size": n}
// stdout: {"tokenized": [[id] per text], "replies": [{"tokens": [id], "logits": base64 float32 (steps x vocab)}]}
// Greedy decoding by hand, one token at a time, so that every step's raw logits come back.
// llama.cpp aborts the process on a token at position >= context: such a request is refused here.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

async function readAll(stream) {  // a stream read to its end (readFileSync(0) can fail with EAGAIN on a big pipe)
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    return Buffer.concat(chunks).toString("utf8");
}

// `node check.mjs --probe`: does llama.cpp start here (node's version, the platform's binaries)?
const probe = process.argv.includes("--probe");
const request = probe ? {prompts: []} : JSON.parse(await readAll(process.stdin));
const refuse = (why) => { process.stdout.write(JSON.stringify({error: why})); process.exit(2); };

for (const [i, prompt] of request.prompts.entries()) {
    if (prompt.length >= request.context)
        refuse(`prompt ${i} has ${prompt.length} tokens; the context holds ${request.context}`);
}

// build "never": use the prebuilt binaries as installed, never download or compile at run time.
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error}).catch((e) => {
    process.stderr.write(`${e.name}: ${e.message}\n`);  // e.g. no prebuilt binary for this platform
    process.exit(3);
});
if (probe) process.exit(0);
const model = await llama.loadModel({modelPath: request.model, gpuLayers: 0});
const tokenized = request.texts.map((text) => Array.from(model.tokenize(text, true)));

const context = await model.createContext({contextSize: request.context, batchSize: request.context, threads: 1,
                                           sequences: 1});
const sequence = context.getSequence();

async function nextLogits(feed) {  // feed the tokens; the last one's logits for the next token
    const items = feed.map((t, i) => i === feed.length - 1 ? [t, {generateNext: {logits: true}}] : t);
    const out = await sequence.controlledEvaluate(items);
    return out[feed.length - 1].next.logits;  // Map token -> logit, every token of the vocabulary
}

const replies = [];
for (const prompt of request.prompts) {
    await sequence.clearHistory();
    const steps = Math.min(request.max_new_tokens, request.context - prompt.length);
    const tokens = [], rows = [];
    let feed = prompt;
    while (tokens.length < steps) {
        const logits = await nextLogits(feed);
        const row = new Float32Array(request.vocab_size);
        let best = -1;
        for (const [token, logit] of logits) {
            row[token] = logit;
            if (best < 0 || logit > row[best] || (logit === row[best] && token < best)) best = token;
        }
        rows.push(row);
        tokens.push(best);
        if (best === request.stop_id) break;
        feed = [best];
    }
    const all = new Float32Array(rows.length * request.vocab_size);
    rows.forEach((row, i) => all.set(row, i * request.vocab_size));
    replies.push({tokens, logits: Buffer.from(all.buffer).toString("base64")});
}
process.stdout.write(JSON.stringify({tokenized, replies}));
await context.dispose();
await model.dispose();
await llama.dispose();
