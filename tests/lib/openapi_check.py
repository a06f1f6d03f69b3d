#!/usr/bin/env python3
"""Checks recorded HTTP exchanges against api/openapi.yaml.

    openapi_check.py --tools
        exit 0 when PyYAML and jsonschema can be imported, else 77 (the
        ctest skip code) with the missing Debian package named on stderr.

    openapi_check.py SPEC EXCHANGES [--closed] [--require-all]
        SPEC is the OpenAPI 3.0 file; EXCHANGES holds one JSON object per
        line: {"method", "path" (as sent, query included), "proto",
        "status", "headers": {lower-case name: value}, "body"}.

        For each exchange: the path and method must be a documented
        operation, the status one of its documented responses, the
        Content-Type one of that response's media types, every header the
        response marks required must be there, and a JSON body must validate
        (jsonschema, draft 7, formats checked) against that response's
        schema. --closed also refuses fields a schema with `properties` does
        not declare (the file must describe everything the code returns).
        --require-all fails when an operation has no 2xx exchange.

        Exit 0 when everything matches, 1 with every mismatch on stdout,
        2 on a usage or spec error, 77 when a tool is missing.

OpenAPI 3.0 schemas are not JSON Schema: `nullable: true` becomes a type
list (and adds null to an enum), or an anyOf with {"type": "null"} where
there is no type; OpenAPI-only keywords are dropped; each
#/components/schemas/X becomes #/definitions/X, so $refs resolve inside one
draft 7 document (draft 7, like OpenAPI 3.0, ignores a $ref's siblings).
"""

import datetime
import json
import re
import sys

MISSING_HINT = {
    "yaml": "python3-yaml",
    "jsonschema": "python3-jsonschema",
}


def import_tools():
    """(yaml, jsonschema), or exits 77 naming what is missing."""
    mods = {}
    missing = []
    for name in ("yaml", "jsonschema"):
        try:
            mods[name] = __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        pkgs = " ".join(MISSING_HINT[m] for m in missing)
        print(
            "openapi_check: %s cannot import %s: install %s (scripts/bootstrap does)"
            % (sys.executable, ", ".join(missing), pkgs),
            file=sys.stderr,
        )
        sys.exit(77)
    return mods["yaml"], mods["jsonschema"]


OAS_ONLY = {
    "nullable", "discriminator", "readOnly", "writeOnly", "xml",
    "externalDocs", "example", "deprecated",
}
SCHEMA_PREFIX = "#/components/schemas/"


def to_json_schema(s, closed):
    """An OpenAPI 3.0 Schema Object as a draft 7 JSON Schema."""
    if not isinstance(s, dict):
        return s
    if "$ref" in s:
        ref = s["$ref"]
        if not ref.startswith(SCHEMA_PREFIX):
            raise ValueError("unsupported $ref %r" % ref)
        return {"$ref": "#/definitions/" + ref[len(SCHEMA_PREFIX):]}
    out = {}
    for k, v in s.items():
        if k in OAS_ONLY:
            continue
        if k == "properties":
            out[k] = {name: to_json_schema(p, closed) for name, p in v.items()}
        elif k in ("items", "not"):
            out[k] = to_json_schema(v, closed)
        elif k == "additionalProperties":
            out[k] = to_json_schema(v, closed) if isinstance(v, dict) else v
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [to_json_schema(x, closed) for x in v]
        else:
            out[k] = v
    if closed and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if s.get("nullable") is True:
        if "type" in out:
            t = out["type"]
            out["type"] = (t if isinstance(t, list) else [t]) + ["null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = list(out["enum"]) + [None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


class Spec:
    def __init__(self, doc, closed):
        self.doc = doc
        comps = doc.get("components", {})
        self.definitions = {
            name: to_json_schema(s, closed)
            for name, s in comps.get("schemas", {}).items()
        }
        self.closed = closed
        # (method, regex, template), literal segments before parameters.
        self.ops = []
        for template, item in doc["paths"].items():
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            for method, op in item.items():
                if method in ("parameters", "summary", "description", "servers"):
                    continue
                self.ops.append((method.upper(), re.compile(rx), template, op))
        self.ops.sort(key=lambda o: o[2].count("{"))

    def resolve(self, obj):
        """Follows a local $ref (responses, headers) to its object."""
        seen = 0
        while isinstance(obj, dict) and "$ref" in obj:
            node = self.doc
            for part in obj["$ref"].lstrip("#/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            obj = node
            seen += 1
            if seen > 16:
                raise ValueError("$ref loop")
        return obj

    def find(self, method, path):
        for m, rx, template, op in self.ops:
            if m == method and rx.match(path):
                return template, op
        return None, None

    def schema_doc(self, schema):
        root = {"definitions": self.definitions,
                "allOf": [to_json_schema(schema, self.closed)]}
        return root


def utc_rfc3339(value):
    """The date-time format (used when jsonschema has no checker of its own)."""
    if not isinstance(value, str):
        return True
    if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", value):
        return False
    datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


def header_ok(value, schema):
    t = schema.get("type")
    if t == "integer":
        return re.fullmatch(r"-?\d+", value.strip()) is not None
    if t == "number":
        try:
            float(value)
            return True
        except ValueError:
            return False
    return True


def main(argv):
    if len(argv) == 2 and argv[1] == "--tools":
        import_tools()
        return 0
    args = [a for a in argv[1:] if not a.startswith("--")]
    flags = {a for a in argv[1:] if a.startswith("--")}
    if len(args) != 2 or not flags <= {"--closed", "--require-all"}:
        print(__doc__, file=sys.stderr)
        return 2
    yaml, jsonschema = import_tools()
    with open(args[0], encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    spec = Spec(doc, "--closed" in flags)

    checker = jsonschema.FormatChecker()
    if "date-time" not in checker.checkers:
        checker.checks("date-time", raises=ValueError)(utc_rfc3339)
    validator_cls = jsonschema.Draft7Validator
    try:
        for name, d in spec.definitions.items():
            validator_cls.check_schema({"definitions": {name: d}})
    except jsonschema.SchemaError as e:
        print("openapi_check: %s: schema %s is not valid once translated: %s"
              % (args[0], name, e.message), file=sys.stderr)
        return 2

    problems = []
    ok_2xx = set()
    n = 0
    with open(args[1], encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            n += 1
            ex = json.loads(line)
            method, status = ex["method"].upper(), int(ex["status"])
            path = ex["path"].split("?", 1)[0]
            what = "%s %s (%s) answered %d" % (method, ex["path"], ex.get("proto", "?"), status)
            template, op = spec.find(method, path)
            if op is None:
                problems.append("%s: no such operation in the file" % what)
                continue
            where = "#/paths/%s/%s" % (template.replace("/", "~1"), method.lower())
            responses = op.get("responses", {})
            resp = responses.get(str(status)) or responses.get("%dXX" % (status // 100)) \
                or responses.get("default")
            if resp is None:
                problems.append("%s: status %d is not documented at %s/responses (documented: %s)"
                                % (what, status, where, ", ".join(sorted(responses))))
                continue
            resp = spec.resolve(resp)
            where += "/responses/%d" % status
            headers = {k.lower(): v for k, v in (ex.get("headers") or {}).items() if v != ""}
            for hname, h in (resp.get("headers") or {}).items():
                h = spec.resolve(h)
                value = headers.get(hname.lower())
                if value is None:
                    if h.get("required"):
                        problems.append("%s: required header %s is missing (%s)"
                                        % (what, hname, where))
                elif not header_ok(value, h.get("schema", {})):
                    problems.append("%s: header %s: %r does not match its schema (%s)"
                                    % (what, hname, value, where))
            content = resp.get("content")
            body = ex.get("body") or ""
            if not content:
                if body:
                    problems.append("%s: the file documents no body, one came (%s)" % (what, where))
                elif 200 <= status < 300:
                    ok_2xx.add((method, template))
                continue
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            media = next((m for m in content if m.lower() == ctype), None)
            if media is None:
                problems.append("%s: Content-Type %r is not one of %s (%s)"
                                % (what, ctype, ", ".join(content), where))
                continue
            schema = content[media].get("schema")
            if media.endswith("json"):
                try:
                    value = json.loads(body)
                except ValueError as e:
                    problems.append("%s: the body is not JSON (%s): %.200s" % (what, e, body))
                    continue
            else:
                value = body
            if schema is not None:
                v = validator_cls(spec.schema_doc(schema), format_checker=checker)
                errs = sorted(v.iter_errors(value), key=lambda e: list(e.absolute_path))
                for e in errs:
                    at = "/".join(str(p) for p in e.absolute_path) or "(the body)"
                    problems.append("%s: at %s: %s [%s/content/%s/schema]"
                                    % (what, at, e.message, where, media.replace("/", "~1")))
                if errs:
                    problems.append("    body: %.600s" % body)
                    continue
            if 200 <= status < 300:
                ok_2xx.add((method, template))

    if "--require-all" in flags:
        for method, _, template, _ in spec.ops:
            if (method, template) not in ok_2xx:
                problems.append("%s %s: no exchange answered 2xx and matched the file"
                                % (method, template))
    for p in problems:
        print(p)
    print("openapi_check: %d exchanges over %d operations, %d problems"
          % (n, len(spec.ops), sum(1 for p in problems if not p.startswith("    "))))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
