// maas serve through the official OpenAI Node SDK. Run by
// tests/integration/sdk_openai.sh, which starts the servers and sets:
//   MAAS_URL       base URL of a server with a tiny random model (…/v1)
//   MAAS_BUSY_URL  a server with --max-queue 1 --max-running 1 (queue-full test)
//   MAAS_MODEL     the model name both serve
//   MAAS_EMB_MODEL an embedding model (a tiny BERT) the first one also serves
// The model is random: its text is gibberish, but deterministic at
// temperature 0 and for a fixed seed, which is what these tests compare.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const MODEL = process.env.MAAS_MODEL || 'tiny';
const client = new OpenAI({ baseURL: process.env.MAAS_URL, apiKey: 'dummy', maxRetries: 0, timeout: 60_000 });
const USER = [{ role: 'user', content: 'Tell me a story about a robot.' }];

async function greedyChat(extra = {}) {
  return client.chat.completions.create({ model: MODEL, messages: USER, max_tokens: 12, temperature: 0, ...extra });
}

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

const deltaText = (chunks) => chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');

test('models.list names the served model; models.retrieve finds it', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes(MODEL), `ids ${ids}`);
  const m = await client.models.retrieve(MODEL);
  assert.equal(m.id, MODEL);
  assert.equal(m.object, 'model');
});

test('chat.completions.create: plain, with usage', async () => {
  const r = await greedyChat();
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.model, MODEL);
  const ch = r.choices[0];
  assert.equal(ch.message.role, 'assistant');
  assert.equal(typeof ch.message.content, 'string');
  assert.ok(['stop', 'length'].includes(ch.finish_reason), ch.finish_reason);
  const u = r.usage;
  assert.ok(u.prompt_tokens > 0 && u.completion_tokens > 0 && u.completion_tokens <= 12, JSON.stringify(u));
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.equal(typeof u.prompt_tokens_details.cached_tokens, 'number');
  assert.equal(ch.finish_reason === 'length', u.completion_tokens === 12);
  const again = await greedyChat();
  assert.equal(again.choices[0].message.content, ch.message.content, 'temperature 0 is deterministic');
});

test('chat streaming: content assembled from chunks equals the plain reply; one finish_reason', async () => {
  const plain = await greedyChat();
  const chunks = await collect(await greedyChat({ stream: true }));
  assert.ok(chunks.length >= 2);
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.equal(deltaText(chunks), plain.choices[0].message.content);
  const fin = chunks.filter((c) => c.choices[0]?.finish_reason);
  assert.equal(fin.length, 1);
  assert.equal(fin[0].choices[0].finish_reason, plain.choices[0].finish_reason);
  assert.ok(chunks.every((c) => !c.usage), 'no usage chunk without stream_options.include_usage');
});

test('chat streaming with stream_options.include_usage: a final usage chunk', async () => {
  const plain = await greedyChat();
  const chunks = await collect(await greedyChat({ stream: true, stream_options: { include_usage: true } }));
  const withUsage = chunks.filter((c) => c.usage);
  assert.equal(withUsage.length, 1);
  const last = chunks[chunks.length - 1];
  assert.equal(withUsage[0], last, 'the usage chunk is the last one');
  assert.deepEqual(last.choices, []);
  const u = last.usage;
  assert.equal(u.prompt_tokens, plain.usage.prompt_tokens);
  assert.equal(u.completion_tokens, plain.usage.completion_tokens);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  // the same prompt just ran: its full KV blocks are in the prefix cache
  const cached = u.prompt_tokens_details.cached_tokens;
  assert.ok(Number.isInteger(cached) && cached >= 0 && cached <= u.prompt_tokens, `cached_tokens ${cached}`);
  assert.equal(deltaText(chunks), plain.choices[0].message.content);
});

test('the SDK stream helper: finalChatCompletion() equals the plain reply', async () => {
  const plain = await greedyChat();
  const s = client.chat.completions.stream({ model: MODEL, messages: USER, max_tokens: 12, temperature: 0 });
  const seen = [];
  s.on('content', (delta) => seen.push(delta));
  const fin = await s.finalChatCompletion();
  assert.equal(fin.choices[0].message.content, plain.choices[0].message.content);
  assert.equal(seen.join(''), plain.choices[0].message.content);
});

async function greedyCompletion(extra = {}) {
  return client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 24, temperature: 0,
                                     ...extra });
}

test('completions.create: plain and streamed', async () => {
  const r = await greedyCompletion();
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(r.choices[0].text.length > 0);
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
  const chunks = await collect(await greedyCompletion({ stream: true }));
  assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), r.choices[0].text);
});

test('stop strings: the output never contains them and finish_reason is stop', async () => {
  const text = (await greedyCompletion()).choices[0].text;
  const chars = [...text];
  assert.ok(chars.length >= 8, `greedy text long enough for stop strings: ${JSON.stringify(text)}`);
  let tried = 0;
  for (const at of [2, 4, 6]) {
    const stop = chars.slice(at, at + 2).join('');
    const expect = text.slice(0, text.indexOf(stop));
    const r = await greedyCompletion({ stop: [stop, 'never-appears-0xyz'] });
    const out = r.choices[0].text;
    assert.ok(!out.includes(stop), `stop ${JSON.stringify(stop)} in output ${JSON.stringify(out)}`);
    assert.equal(out, expect);
    assert.equal(r.choices[0].finish_reason, 'stop');
    const streamed = (await collect(await greedyCompletion({ stop, stream: true })))
      .map((c) => c.choices[0]?.text ?? '').join('');
    assert.ok(!streamed.includes(stop), `stop ${JSON.stringify(stop)} in streamed ${JSON.stringify(streamed)}`);
    assert.equal(streamed, expect);
    tried++;
  }
  const reply = (await greedyChat()).choices[0].message.content;
  const rc = [...reply];
  if (rc.length >= 4) {
    const stop = rc.slice(2, 4).join('');
    const r = await greedyChat({ stop });
    assert.ok(!r.choices[0].message.content.includes(stop));
    assert.equal(r.choices[0].message.content, reply.slice(0, reply.indexOf(stop)));
    assert.equal(r.choices[0].finish_reason, 'stop');
    tried++;
  }
  assert.ok(tried >= 3);
});

test('seed: same seed same output, different seeds differ (temperature 1)', async () => {
  const run = async (seed) => (await client.chat.completions.create({
    model: MODEL, messages: USER, max_tokens: 10, temperature: 1.0, seed })).choices[0].message.content;
  const a = await run(42), b = await run(42);
  assert.equal(a, b);
  const others = [await run(7), await run(8), await run(9)];
  assert.ok(new Set([a, ...others]).size > 1, 'different seeds give different outputs');
});

async function expectError(promise, cls, status) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof cls, `${e.constructor.name} is not ${cls.name}: ${e.message}`);
    assert.ok(e instanceof OpenAI.APIError);
    assert.equal(e.status, status);
    return e;
  }
  assert.fail(`expected ${cls.name}`);
}

test('errors: BadRequestError with param, NotFoundError for an unknown model', async () => {
  let e = await expectError(greedyChat({ temperature: 3 }), OpenAI.BadRequestError, 400);
  assert.equal(e.param, 'temperature');
  assert.equal(e.type, 'invalid_request_error');
  e = await expectError(greedyChat({ max_tokens: 'five' }), OpenAI.BadRequestError, 400);
  assert.equal(e.param, 'max_tokens');
  e = await expectError(greedyChat({ n: 2 }), OpenAI.BadRequestError, 400);
  assert.equal(e.param, 'n');
  e = await expectError(client.completions.create({ model: MODEL, prompt: 5 }), OpenAI.BadRequestError, 400);
  assert.equal(e.param, 'prompt');
  e = await expectError(greedyChat({ stream: true, top_p: 0 }), OpenAI.BadRequestError, 400);
  assert.equal(e.param, 'top_p');
  e = await expectError(greedyChat({ model: 'no-such-model' }), OpenAI.NotFoundError, 404);
  assert.equal(e.code, 'model_not_found');
  assert.equal(e.param, 'model');
  await expectError(client.models.retrieve('no-such-model'), OpenAI.NotFoundError, 404);
});

test('embeddings.create: a string, a batch, base64 (the SDK default) and float, dimensions', async () => {
  const EMB = process.env.MAAS_EMB_MODEL;
  if (!EMB) return;
  const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const one = await client.embeddings.create({ model: EMB, input: 'Hello world' });
  assert.equal(one.object, 'list');
  assert.equal(one.data.length, 1);
  assert.equal(one.data[0].index, 0);
  const v = one.data[0].embedding;
  assert.equal(v.length, 64);
  assert.ok(Math.abs(norm(v) - 1) < 1e-5, `norm ${norm(v)}`);
  assert.ok(one.usage.prompt_tokens > 0 && one.usage.total_tokens === one.usage.prompt_tokens);
  const batch = await client.embeddings.create({ model: EMB, input: ['Hello world', 'second text'],
    encoding_format: 'float' });
  assert.deepEqual(batch.data.map((d) => d.index), [0, 1]);
  const diff = Math.max(...batch.data[0].embedding.map((x, i) => Math.abs(x - v[i])));
  assert.ok(diff < 1e-5, `batch vs single ${diff}`);
  const d8 = await client.embeddings.create({ model: EMB, input: 'Hello world', dimensions: 8 });
  assert.equal(d8.data[0].embedding.length, 8);
  assert.ok(Math.abs(norm(d8.data[0].embedding) - 1) < 1e-5);
  const e = await expectError(client.embeddings.create({ model: EMB, input: '' }), OpenAI.BadRequestError, 400);
  assert.equal(e.param, 'input');
  await expectError(client.embeddings.create({ model: MODEL, input: 'x' }), OpenAI.BadRequestError, 400);
});

test('RateLimitError with Retry-After when the queue is full', async () => {
  const busy = new OpenAI({ baseURL: process.env.MAAS_BUSY_URL, apiKey: 'dummy', maxRetries: 0, timeout: 60_000 });
  const metricsUrl = process.env.MAAS_BUSY_URL.replace(/\/v1$/, '/metrics');
  const gauge = async (name) => {
    const text = await (await fetch(metricsUrl)).text();
    const line = text.split('\n').find((l) => l.startsWith(name + '{') || l.startsWith(name + ' '));
    return line ? Number(line.split(' ').pop()) : NaN;
  };
  // 1) a long stream occupies the only running slot
  const abort = new AbortController();
  const blocker = await busy.completions.create(
    { model: MODEL, prompt: 'x', max_tokens: 60000, temperature: 0, stream: true,
      logit_bias: { 4093: -100, 4094: -100, 4095: -100 } }, { signal: abort.signal });
  const it = blocker[Symbol.asyncIterator]();
  await it.next();
  // 2) a request waits in the queue of one
  const queued = busy.completions.create({ model: MODEL, prompt: 'y', max_tokens: 3, temperature: 0 });
  let q = 0;
  for (let i = 0; i < 100 && q !== 1; i++) {
    q = await gauge('maas_queue_length');
    if (q !== 1) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(q, 1, 'one request queued');
  // 3) the next one is refused
  const e = await expectError(busy.chat.completions.create({ model: MODEL, messages: USER, max_tokens: 2 }),
                              OpenAI.RateLimitError, 429);
  assert.ok(Number(e.headers.get('retry-after')) > 0, `Retry-After ${e.headers.get('retry-after')}`);
  assert.ok(e.message.length > 0);
  // closing the stream cancels it; the queued request then runs
  abort.abort();
  await it.next().catch(() => {});
  const r = await queued;
  assert.equal(r.usage.completion_tokens > 0, true);
});

// tools: a model whose vocabulary holds a whole Hermes call as one token
// (sdk_openai.sh); logit_bias on it makes the random-weight model call.
const WEATHER = {
  type: 'function',
  function: { name: 'get_weather', description: 'Current weather.', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
};

test('tools with tool_choice auto: the SDK reads tool_calls, whole and streamed', async () => {
  const token = process.env.MAAS_CALL_TOKEN;
  const base = {
    model: 'tools', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [WEATHER],
    tool_choice: 'auto', parallel_tool_calls: false, temperature: 0, max_tokens: 4, logit_bias: { [token]: 100 },
  };
  const r = await client.chat.completions.create(base);
  const ch = r.choices[0];
  assert.equal(ch.finish_reason, 'tool_calls');
  assert.equal(ch.message.content, null);
  assert.equal(ch.message.tool_calls.length, 1);
  const call = ch.message.tool_calls[0];
  assert.match(call.id, /^call_/);
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
  // the SDK's stream helper assembles the deltas into the same message
  const stream = client.chat.completions.stream(base);
  const fin = await stream.finalChatCompletion();
  const sc = fin.choices[0];
  assert.equal(sc.finish_reason, 'tool_calls');
  assert.equal(sc.message.tool_calls[0].function.name, 'get_weather');
  assert.equal(sc.message.tool_calls[0].function.arguments, call.function.arguments);
  // the answer goes back as a tool message and the conversation continues
  const next = await client.chat.completions.create({
    ...base, logit_bias: { [token]: -100 }, parallel_tool_calls: undefined,
    messages: [...base.messages, ch.message, { role: 'tool', tool_call_id: call.id, content: '{"temp": 18}' }],
  });
  assert.ok(['stop', 'length'].includes(next.choices[0].finish_reason));
  assert.equal(typeof next.choices[0].message.content, 'string');
});

// a forced call is decoded under a grammar of the model's call syntax: whatever a random model samples, the
// answer is a call of the allowed tool with arguments valid for its schema (bounded schemas: a random model in a
// free string would not stop)
const FORECAST = {
  type: 'function',
  function: {
    name: 'forecast',
    parameters: {
      type: 'object', additionalProperties: false, required: ['city', 'days'],
      properties: { city: { type: 'string', maxLength: 10 }, days: { type: 'integer', minimum: 1, maximum: 5 } },
    },
  },
};

const ALERT = {
  type: 'function',
  function: { name: 'alert', parameters: { type: 'object', required: ['level'], properties: { level: { enum: ['low', 'high'] } } } },
};

function checkForecast(call) {
  assert.equal(call.type, 'function');
  assert.match(call.id, /^call_/);
  if (call.function.name === 'alert') {
    assert.ok(['low', 'high'].includes(JSON.parse(call.function.arguments).level), call.function.arguments);
    return;
  }
  assert.equal(call.function.name, 'forecast');
  const a = JSON.parse(call.function.arguments);
  assert.deepEqual(Object.keys(a).sort(), ['city', 'days']);
  assert.ok(typeof a.city === 'string' && [...a.city].length <= 10, call.function.arguments);
  assert.ok(Number.isInteger(a.days) && a.days >= 1 && a.days <= 5, call.function.arguments);
}

test('tool_choice required and named: the SDK gets a forced call, whole and streamed', async () => {
  const base = {
    model: 'forced', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [FORECAST, ALERT],
    temperature: 1, max_tokens: 800,
  };
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({ ...base, tool_choice: 'required', seed });
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    assert.ok(r.choices[0].message.tool_calls.length >= 1);
    r.choices[0].message.tool_calls.forEach(checkForecast);
  }
  const named = { ...base, tool_choice: { type: 'function', function: { name: 'forecast' } }, seed: 4 };
  const r = await client.chat.completions.create(named);
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(r.choices[0].message.content, null);
  assert.equal(r.choices[0].message.tool_calls.length, 1);
  assert.equal(r.choices[0].message.tool_calls[0].function.name, 'forecast');
  checkForecast(r.choices[0].message.tool_calls[0]);
  const fin = await client.chat.completions.stream(named).finalChatCompletion();
  assert.equal(fin.choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(fin.choices[0].message.tool_calls[0].function, r.choices[0].message.tool_calls[0].function);
});

test('response_format json_schema: the SDK parse() helper gets an object valid for the schema', async () => {
  const schema = {
    type: 'object', additionalProperties: false, required: ['name', 'tags', 'score'],
    properties: {
      name: { type: 'string', maxLength: 12 },
      tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, maxItems: 3 },
      score: { type: 'integer', minimum: 0, maximum: 9 },
    },
  };
  for (const seed of [1, 2]) {
    const r = await client.chat.completions.parse({
      model: MODEL, messages: USER, temperature: 1, seed, max_tokens: 300,
      response_format: { type: 'json_schema', json_schema: { name: 'item', strict: true, schema } },
    });
    const ch = r.choices[0];
    assert.equal(ch.finish_reason, 'stop');
    const p = ch.message.parsed;
    assert.deepEqual(Object.keys(p).sort(), ['name', 'score', 'tags']);
    assert.ok(typeof p.name === 'string' && [...p.name].length <= 12);
    assert.ok(Array.isArray(p.tags) && p.tags.length <= 3 && p.tags.every((t) => ['a', 'b', 'c'].includes(t)));
    assert.ok(Number.isInteger(p.score) && p.score >= 0 && p.score <= 9);
  }
});
