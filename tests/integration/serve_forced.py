#!/usr/bin/python3
"""serve_forced.py PORT OPEN_ID CLOSE_ID — forced tool calls against maas serve
(see serve_forced.sh). OPEN_ID and CLOSE_ID are the control tokens
<tool_call> and </tool_call>.
"""
import http.client
import json
import sys

import jsonschema

PORT, OPEN, CLOSE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
WEATHER = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 12},
    "unit": {"enum": ["celsius", "fahrenheit"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city", "unit"]}
LOOKUP = {"type": "object", "properties": {
    "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,6}$"}, "maxItems": 3},
    "exact": {"type": "boolean"}}, "required": ["tags", "exact"], "additionalProperties": False}
MODE = {"type": "object", "properties": {"mode": {"enum": ["on", "off"]}}, "required": ["mode"]}
# every schema bounded: a random model inside a free string or a free object would not stop
SCHEMAS = {"get_weather": WEATHER, "lookup": LOOKUP, "set_mode": MODE}
TOOLS = [{"type": "function", "function": {"name": n, "parameters": s}} for n, s in SCHEMAS.items()]
USER = [{"role": "user", "content": "Weather in Paris?"}]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    sys.stdout.flush()
    if not cond:
        failures.append(what)
    return cond


def post(body):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    if body.get("stream") and r.status == 200:
        return r.status, [json.loads(l[6:]) for l in data.split("\n") if l.startswith("data: {")]
    return r.status, json.loads(data)


def valid_calls(calls, names):
    """Each call names one of names and its arguments validate against that tool's schema."""
    for c in calls:
        if c["type"] != "function" or c["function"]["name"] not in names:
            return "name %r" % c["function"]["name"]
        try:
            jsonschema.validate(json.loads(c["function"]["arguments"]), SCHEMAS[c["function"]["name"]])
        except Exception as e:  # noqa: BLE001 - the reason is printed
            return "arguments %s: %s" % (c["function"]["arguments"], str(e).split("\n")[0])
    return None


def forced(choice, names, seeds, parallel=True):
    for seed in seeds:
        st, r = post({"model": "tiny", "messages": USER, "tools": TOOLS, "tool_choice": choice, "seed": seed,
                      "temperature": 1, "max_tokens": 1200, "parallel_tool_calls": parallel})
        ch = r["choices"][0] if st == 200 else {}
        calls = ch.get("message", {}).get("tool_calls") or []
        bad = valid_calls(calls, names) if calls else "no call"
        check(st == 200 and ch["finish_reason"] == "tool_calls" and bad is None and
              (parallel or len(calls) == 1) and ch["message"]["content"] is None,
              "tool_choice %s, seed %d: %d call(s) %s%s" % (json.dumps(choice), seed, len(calls),
              [c["function"]["name"] for c in calls], "" if bad is None else " -- " + bad))


def streamed():
    st, chunks = post({"model": "tiny", "messages": USER, "tools": TOOLS, "tool_choice": "required", "seed": 7,
                       "temperature": 1, "max_tokens": 1200, "stream": True})
    calls = {}
    for ch in chunks:
        for d in ch["choices"][0]["delta"].get("tool_calls") or []:
            c = calls.setdefault(d["index"], {"type": "function", "function": {"name": "", "arguments": ""}})
            c["function"]["name"] += d.get("function", {}).get("name", "")
            c["function"]["arguments"] += d.get("function", {}).get("arguments", "")
    fin = [ch["choices"][0]["finish_reason"] for ch in chunks if ch["choices"] and ch["choices"][0]["finish_reason"]]
    bad = valid_calls(list(calls.values()), SCHEMAS) if calls else "no call"
    check(st == 200 and fin == ["tool_calls"] and bad is None, "streamed: %d call(s) %s" % (len(calls), bad or "valid"))


def markers():
    """+100 on both marker tokens: the grammar lets them be chosen as single control tokens."""
    st, r = post({"model": "tiny", "messages": USER, "tools": TOOLS, "seed": 1, "max_tokens": 100,
                  "tool_choice": {"type": "function", "function": {"name": "set_mode"}},
                  "logit_bias": {OPEN: 100, CLOSE: 100}, "logprobs": True})
    ch = r["choices"][0] if st == 200 else {}
    toks = [t["token"] for t in (ch.get("logprobs") or {}).get("content") or []]
    check(st == 200 and ch["finish_reason"] == "tool_calls" and toks[:1] == ["<tool_call>"] and
          toks.count("</tool_call>") == 1 and toks.count("<tool_call>") == 1,
          "the control tokens <tool_call> and </tool_call> are chosen as single tokens: %s" % toks[:4])
    check(valid_calls(ch.get("message", {}).get("tool_calls") or [], ["set_mode"]) is None, "  and the call is valid")


def auto(bias, seeds, stream=False):
    """tool_choice auto, parallel_tool_calls false, with logit_bias on <tool_call>: an answer
    that starts a call (the marker anywhere in the output) ends in exactly one valid call."""
    started = 0
    for seed in seeds:
        body = {"model": "tiny", "messages": USER, "tools": TOOLS, "tool_choice": "auto", "seed": seed,
                "temperature": 1, "max_tokens": 600 if bias > 0 else 100, "parallel_tool_calls": False,
                "logit_bias": {OPEN: bias}}
        if stream:
            body["stream"] = True
        st, r = post(body)
        if st != 200:
            check(False, "auto, bias %d, seed %d: status %d %s" % (bias, seed, st, r))
            continue
        if stream:
            content, calls, fin = "", {}, []
            for ch in r:
                if not ch["choices"]:
                    continue
                d = ch["choices"][0]["delta"]
                content += d.get("content") or ""
                for t in d.get("tool_calls") or []:
                    c = calls.setdefault(t["index"], {"type": "function", "function": {"name": "", "arguments": ""}})
                    c["function"]["name"] += t.get("function", {}).get("name", "")
                    c["function"]["arguments"] += t.get("function", {}).get("arguments", "")
                if ch["choices"][0]["finish_reason"]:
                    fin.append(ch["choices"][0]["finish_reason"])
            calls, fin = list(calls.values()), fin[0] if len(fin) == 1 else fin
        else:
            ch = r["choices"][0]
            content, calls, fin = ch["message"]["content"] or "", ch["message"].get("tool_calls") or [], ch["finish_reason"]
        what = "auto%s, bias %+d, seed %d: " % (" streamed" if stream else "", bias, seed)
        if calls or "<tool_call>" in content:
            started += 1
            bad = valid_calls(calls, SCHEMAS) if calls else "no call parsed"
            check(fin == "tool_calls" and len(calls) == 1 and bad is None and "<tool_call>" not in content,
                  what + "%d chars of text, then %s%s" % (len(content), [c["function"]["name"] for c in calls],
                                                           "" if bad is None else " -- " + bad))
        else:
            check(bias < 0 and fin in ("stop", "length") and content, what + "text only (%d chars, %s)" % (len(content), fin))
    return started


def errors():
    bad = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "string", "contentEncoding": "base64"}}}}}]
    st, r = post({"model": "tiny", "messages": USER, "tools": bad, "tool_choice": "required"})
    check(st == 400 and r["error"]["param"] == "tools" and "contentEncoding" in r["error"]["message"],
          "a schema keyword it cannot enforce: 400 naming it (%s)" % r.get("error", {}).get("message"))
    st, r = post({"model": "tiny", "messages": USER, "tools": TOOLS, "tool_choice": "required",
                  "response_format": {"type": "json_object"}})
    check(st == 400 and r["error"]["param"] == "response_format", "a forced call and a response_format: 400")


forced("required", SCHEMAS, range(1, 6))
forced("required", SCHEMAS, range(6, 8), parallel=False)
forced({"type": "function", "function": {"name": "lookup"}}, ["lookup"], range(1, 4))
forced({"type": "function", "function": {"name": "get_weather"}}, ["get_weather"], range(1, 3))
streamed()
check(auto(100, range(1, 4)) == 3, "auto: +100 on the marker: every answer is a call")
auto(6, range(4, 8))
check(auto(100, range(8, 10), stream=True) == 2, "auto streamed: every answer is a call")
check(auto(-100, range(1, 4)) == 0, "auto: -100 on the marker: every answer is text")
markers()
errors()
print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
