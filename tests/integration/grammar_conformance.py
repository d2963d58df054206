#!/usr/bin/python3
"""Structured-output conformance: every schema below, sent as
response_format json_schema to `maas serve` serving random-weight models,
at temperature 1 with several seeds. Every output that finishes with `stop`
must parse as JSON and validate against its schema (python3-jsonschema,
draft 2020-12, with format checks); with a generous max_tokens every output
must finish with `stop`. Every schema bounds its strings, arrays and
recursion so that a random model, which picks tokens nearly uniformly, ends.

usage: grammar_conformance.py PORT MODEL [MODEL...]
"""
import concurrent.futures
import copy
import json
import sys
import urllib.request

import jsonschema

S = {"type": "string", "maxLength": 6}
I = {"type": "integer"}

SCHEMAS = [
    # type, and arrays of types
    {"type": "boolean"},
    {"type": "null"},
    {"type": "integer"},
    {"type": "number"},
    {"type": "string", "maxLength": 8},
    {"type": ["integer", "null"]},
    {"type": ["string", "boolean"], "maxLength": 3},
    # integer and number bounds, edge values
    {"type": "integer", "minimum": 0, "maximum": 0},
    {"type": "integer", "minimum": -5, "maximum": 5},
    {"type": "integer", "minimum": 1000},
    {"type": "integer", "maximum": -1000},
    {"type": "integer", "exclusiveMinimum": 9, "exclusiveMaximum": 11},
    {"type": "integer", "minimum": -1234567, "maximum": 7654321},
    {"type": "integer", "minimum": 99, "maximum": 101},
    {"type": "number", "minimum": 0, "maximum": 1},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    {"type": "number", "minimum": -3},
    {"type": "number", "maximum": -2, "minimum": -7},
    {"type": "number", "exclusiveMaximum": 0},
    # number bounds with fractions (decimal digit strings compared exactly)
    {"type": "number", "minimum": 0.25, "maximum": 0.75},
    {"type": "number", "exclusiveMinimum": -2.25, "exclusiveMaximum": -0.5},
    {"type": "number", "exclusiveMinimum": 0.1, "exclusiveMaximum": 0.2},
    {"type": "number", "minimum": 1e-3, "maximum": 99.95},
    {"type": "object", "properties": {"p": {"type": "number", "minimum": -10.05, "exclusiveMaximum": 10.05},
                                      "q": {"type": "number", "exclusiveMinimum": 2.5, "maximum": 2.75}},
     "required": ["p", "q"], "additionalProperties": False},
    # strings
    {"type": "string", "minLength": 3, "maxLength": 3},
    {"type": "string", "maxLength": 0},
    {"type": "string", "minLength": 1, "maxLength": 2},
    {"type": "string", "format": "date"},
    {"type": "string", "format": "time"},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "uuid"},
    {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
    {"type": "string", "pattern": "^(cat|dog)s?$"},
    {"type": "string", "pattern": "^[^a-z\"]{1,4}\\.?$"},
    {"type": "string", "pattern": "^\\w{1,6}@\\w{1,3}\\.(com|org)$"},
    {"type": "string", "pattern": "^[\"\\\\]{2}x*$"},
    # enum and const
    {"enum": ["red", "green", "blue"]},
    {"enum": [1, "one", None, True, [1, 2], {"a": "b"}]},
    {"const": "fixed"},
    {"const": {"k": [1, {"n": None}]}},
    {"enum": ["caf\u00e9", "\u65e5\u672c", "a\"b", "back\\slash"]},
    # objects
    {"type": "object", "properties": {"a": S, "b": I}, "required": ["a", "b"], "additionalProperties": False},
    {"type": "object", "properties": {"a": S, "b": I, "c": {"type": "boolean"}}, "additionalProperties": False},
    {"type": "object", "properties": {"x": I}, "required": ["x"]},
    {"type": "object", "properties": {}, "additionalProperties": False},
    {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 9},
     "properties": {"id": S}, "required": ["id"]},
    {"type": "object", "properties": {"p": {"type": "object", "properties": {"q": {"type": "object",
     "properties": {"r": {"enum": [1, 2]}}, "required": ["r"], "additionalProperties": False}},
     "required": ["q"], "additionalProperties": False}}, "required": ["p"], "additionalProperties": False},
    {"type": "object", "properties": {"name": S, "age": {"type": "integer", "minimum": 0, "maximum": 150},
     "email": {"type": "string", "pattern": "^[a-z]{1,5}@[a-z]{1,5}\\.com$"}},
     "required": ["name", "email"], "additionalProperties": False},
    # arrays
    {"type": "array", "items": I, "maxItems": 3},
    {"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 2},
    {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1, "maxItems": 4},
    {"type": "array", "prefixItems": [S, I, {"type": "boolean"}], "items": False},
    {"type": "array", "prefixItems": [{"const": "head"}], "items": {"type": "null"}, "maxItems": 3},
    {"type": "array", "maxItems": 0},
    {"type": "array", "items": {"type": "array", "items": I, "maxItems": 2}, "maxItems": 2},
    # combinators
    {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "string", "maxLength": 2}]},
    {"oneOf": [{"type": "boolean"}, {"type": "null"}]},
    {"allOf": [{"type": "object", "properties": {"a": I}, "required": ["a"]},
               {"properties": {"b": S}, "required": ["b"]}]},
    {"allOf": [{"type": "integer", "minimum": 3}, {"maximum": 7}]},
    {"type": "object", "properties": {"v": {"anyOf": [S, I, {"type": "null"}]}}, "required": ["v"],
     "additionalProperties": False},
    # nullable
    {"type": "integer", "nullable": True, "minimum": 1, "maximum": 3},
    {"type": "object", "properties": {"n": {"type": "string", "maxLength": 2, "nullable": True}},
     "required": ["n"], "additionalProperties": False},
    # $ref / $defs, recursive
    {"$defs": {"pt": {"type": "object", "properties": {"x": I, "y": I}, "required": ["x", "y"],
     "additionalProperties": False}}, "type": "array", "items": {"$ref": "#/$defs/pt"}, "maxItems": 2},
    {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer", "minimum": 0, "maximum": 9},
     "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["v"],
     "additionalProperties": False}}, "$ref": "#/$defs/node"},
    {"definitions": {"list": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {
     "head": {"type": "integer", "minimum": 0, "maximum": 9}, "tail": {"$ref": "#/definitions/list"}},
     "required": ["head", "tail"], "additionalProperties": False}]}}, "$ref": "#/definitions/list"},
    {"type": "object", "properties": {"child": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
     "required": ["child"], "additionalProperties": False},
]


def for_validator(s):
    """OpenAPI's `nullable` is not JSON Schema: spell it as anyOf with null."""
    if isinstance(s, list):
        return [for_validator(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {k: for_validator(v) for k, v in s.items() if k != "nullable"}
    if s.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def request(port, model, schema, seed):
    body = {"model": model, "prompt": "Answer in JSON:", "max_tokens": 600, "temperature": 1, "seed": seed,
            "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": True}}}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        ch = json.load(r)["choices"][0]
    return ch["text"], ch["finish_reason"]


def check(port, model, i, seed):
    schema = SCHEMAS[i]
    try:
        text, fin = request(port, model, schema, seed)
    except Exception as e:  # noqa: BLE001 - reported as a failure
        return f"{model} schema {i} seed {seed}: request failed: {e}"
    if fin != "stop":
        return f"{model} schema {i} seed {seed}: finish_reason {fin}: {text[:200]!r}"
    try:
        value = json.loads(text)
    except ValueError as e:
        return f"{model} schema {i} seed {seed}: not JSON ({e}): {text[:200]!r}"
    v = jsonschema.Draft202012Validator(for_validator(copy.deepcopy(schema)),
                                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errs = list(v.iter_errors(value))
    if errs:
        return f"{model} schema {i} seed {seed}: invalid: {errs[0].message}: {text[:200]!r}"
    return None


def main():
    port, models = sys.argv[1], sys.argv[2:]
    seeds = [1, 2, 3]
    jobs = [(m, i, s) for m in models for i in range(len(SCHEMAS)) for s in seeds]
    fails = []
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        for r in ex.map(lambda a: check(port, *a), jobs):
            if r:
                fails.append(r)
    for f in fails[:20]:
        print("FAIL:", f)
    print(f"{len(jobs) - len(fails)}/{len(jobs)} outputs valid ({len(SCHEMAS)} schemas x {len(seeds)} seeds x "
          f"{len(models)} models)")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
