#!/usr/bin/python3
"""serve_tools.py PORT MAAS_BIN MODEL TMPDIR CALL_ID BAD_CALL_ID — the tool
and reasoning response shapes of maas serve (standard library only); see
serve_tools.sh. CALL_ID is a token holding a whole well-formed Hermes call,
BAD_CALL_ID one holding a malformed call.
"""
import http.client
import json
import os
import subprocess
import sys

PORT, BIN, MODEL, TMP = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
CALL, BAD = sys.argv[5], sys.argv[6]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather.",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
USER = [{"role": "user", "content": "Weather in Paris?"}]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    sys.stdout.flush()
    if not cond:
        failures.append(what)
    return cond


def post(body, port=PORT):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    if body.get("stream") and r.status == 200:
        return r.status, [json.loads(l[6:]) for l in data.split("\n") if l.startswith("data: {")]
    return r.status, json.loads(data)


def req(**kw):
    b = {"model": "tiny", "messages": USER, "tools": TOOLS, "temperature": 0, "max_tokens": 4}
    b.update(kw)
    return b


def one_call():
    st, r = post(req(parallel_tool_calls=False, logit_bias={CALL: 100}))
    check(st == 200, "a call: 200")
    ch = r["choices"][0]
    m = ch["message"]
    check(ch["finish_reason"] == "tool_calls", "a call: finish_reason tool_calls (got %s)" % ch["finish_reason"])
    check(m["content"] is None, "a call: content null")
    tc = m.get("tool_calls") or []
    check(len(tc) == 1, "parallel_tool_calls false: exactly one call (%d)" % len(tc))
    if tc:
        check(tc[0]["id"].startswith("call_") and tc[0]["type"] == "function", "a call: id call_…, type function")
        check(tc[0]["function"]["name"] == "get_weather", "a call: function.name")
        check(json.loads(tc[0]["function"]["arguments"]) == {"city": "Paris"}, "a call: arguments a JSON string")
    check(r["usage"]["completion_tokens"] == 1, "generation ended at the call: 1 completion token")
    return tc


def streamed_call(plain):
    st, chunks = post(req(parallel_tool_calls=False, logit_bias={CALL: 100}, stream=True))
    check(st == 200, "streamed call: 200")
    calls, finish = {}, [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]]
    for c in chunks:
        for d in c["choices"][0]["delta"].get("tool_calls", []):
            e = calls.setdefault(d["index"], {"id": None, "name": None, "args": ""})
            if "id" in d:
                check(e["id"] is None and d["type"] == "function", "streamed call: id and type once, first")
                e["id"], e["name"] = d["id"], d["function"]["name"]
            e["args"] += d["function"].get("arguments", "")
    check(finish == ["tool_calls"], "streamed call: one finish_reason tool_calls (%s)" % finish)
    check(len(calls) == 1 and calls[0]["name"] == "get_weather", "streamed call: one call, its name")
    if calls and plain:
        check(calls[0]["args"] == plain[0]["function"]["arguments"], "streamed arguments equal the whole answer's")
        check(calls[0]["id"].startswith("call_") and calls[0]["id"] != plain[0]["id"], "ids are unique per call")


def parallel_and_none():
    st, r = post(req(max_tokens=3, logit_bias={CALL: 100}))
    tc = r["choices"][0]["message"].get("tool_calls") or []
    check(st == 200 and len(tc) == 3, "parallel: 3 tokens, 3 calls (%d)" % len(tc))
    check(len({t["id"] for t in tc}) == len(tc), "parallel: the ids differ")
    check(r["choices"][0]["finish_reason"] == "length", "parallel cut by max_tokens: finish_reason length")
    st, r = post(req(max_tokens=1, logit_bias={CALL: 100}, tool_choice="none"))
    m = r["choices"][0]["message"]
    check(st == 200 and "tool_calls" not in m and "<tool_call>" in (m["content"] or ""),
          "tool_choice none: the call stays text")
    # tool_choice auto holds a call the model starts to the tool's schema: the malformed call token is
    # never chosen (it is masked out and the next best token taken)
    st, r = post(req(max_tokens=1, logit_bias={BAD: 100}))
    m = r["choices"][0]["message"] if st == 200 else {}
    check(st == 200 and "city\": </tool_call>" not in (m.get("content") or ""),
          "auto: the malformed call token is never written (%r)" % (m.get("content") or "")[:40])
    # a schema the grammar cannot enforce: calls are only parsed, the malformed one comes back as text
    loose = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "contentEncoding": "base64"}}}}}]
    st, r = post(req(max_tokens=1, logit_bias={BAD: 100}, tools=loose))
    m = r["choices"][0]["message"]
    check(st == 200 and "tool_calls" not in m and m["content"].startswith("<tool_call>"),
          "a malformed call comes back as text, 200")
    check(r["choices"][0]["finish_reason"] == "length", "a malformed call: finish_reason length")
    # a pattern the grammar compiler refuses (an empty group repeated): a forced call is a 400,
    # auto falls back to parsing only
    odd = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "pattern": "^(|a)+$"}}}}}]
    st, r = post(req(max_tokens=2, tools=odd, tool_choice="required"))
    check(st == 400 and r["error"]["param"] == "tools", "required, a pattern the compiler refuses: 400 (%s)" %
          r.get("error", {}).get("message"))
    st, r = post(req(max_tokens=2, tools=odd))
    check(st == 200, "auto, the same pattern: 200, the call parsed only")


def reasoning():
    b = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "max_tokens": 6,
         "chat_template_kwargs": {"enable_thinking": True}, "logit_bias": {CALL: -100, BAD: -100}}
    st, r = post(b)
    m, u = r["choices"][0]["message"], r["usage"]
    check(st == 200 and m.get("reasoning_content") and m["content"] == "",
          "thinking: the output (inside the opened <think>) is reasoning_content")
    check(u["completion_tokens_details"]["reasoning_tokens"] == u["completion_tokens"],
          "thinking: every token is a reasoning token (%s)" % u)
    st, chunks = post(dict(b, stream=True))
    text = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks)
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    check(text == m["reasoning_content"] and content == "", "thinking streamed: the same reasoning, no content")
    st, r = post(dict(b, chat_template_kwargs={"enable_thinking": False}))
    check(st == 200 and "reasoning_content" not in r["choices"][0]["message"] and r["choices"][0]["message"]["content"],
          "thinking off: content, no reasoning_content")


def tool_round():
    msgs = USER + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temp\": 18}"}]
    st, r = post(req(messages=msgs, max_tokens=1, logit_bias={CALL: -100, BAD: -100}))
    check(st == 200, "a tool round (assistant tool_calls, tool message): 200")
    case = {"messages": USER + [dict(msgs[1], content="", tool_calls=[dict(msgs[1]["tool_calls"][0], function={
        "name": "get_weather", "arguments": {"city": "Paris"}})]), msgs[2]], "tools": TOOLS}
    with open(TMP + "/case.json", "w") as f:
        json.dump(case, f)
    rendered = subprocess.run([BIN, "template", "--model", MODEL, TMP + "/case.json"], capture_output=True).stdout
    with open(TMP + "/rendered.txt", "wb") as f:
        f.write(rendered)
    ids = subprocess.run([BIN, "tokenize", "--model", MODEL, "--special", "--file", TMP + "/rendered.txt"],
                         capture_output=True, text=True).stdout.split()
    check(b'"arguments": {"city": "Paris"}' in rendered, "maas template renders the arguments as an object")
    check(b"(tool_use variant)" in rendered, "with tools, maas template uses tokenizer.chat_template.tool_use")
    check(st == 200 and r["usage"]["prompt_tokens"] == len(ids),
          "the served prompt is what maas template renders (%s tokens vs %d)" % (r["usage"]["prompt_tokens"] if st == 200 else "-", len(ids)))


def errors():
    bad = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "x": {"type": "string", "contentEncoding": "base64"}}}}}]
    st, r = post(req(tool_choice="required", tools=bad))
    check(st == 400 and r["error"]["param"] == "tools" and "contentEncoding" in r["error"]["message"],
          "tool_choice required with a schema it cannot enforce: 400 naming tools")
    st, r = post(req(tools=[{"type": "function", "function": {"name": "bad name"}}]))
    check(st == 400 and r["error"]["param"] == "tools[0].function.name", "a bad tool name: 400 naming it")
    family = int(os.environ.get("FAMILY_PORT", "0"))
    if family:
        st, r = post(req(), port=family)
        check(st == 400 and r["error"]["param"] == "tools" and "built-in" in r["error"]["message"],
              "a built-in family (--chat-template chatml): tools get a 400")
        st, r = post({"model": "tiny", "messages": USER, "max_tokens": 2}, port=family)
        check(st == 200, "a built-in family: a plain chat still works")


plain = one_call()
streamed_call(plain)
parallel_and_none()
reasoning()
tool_round()
errors()
if failures:
    print("%d checks failed" % len(failures))
    sys.exit(1)
print("all checks passed")
