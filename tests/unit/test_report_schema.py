"""The report's schema is defined once, in the agent package (bootstrap/agent/report.py, standard-library types):
the control plane's msgspec decoder (`report_rows._Report`) and `models.Report` take exactly its keys, types and
limits, and what the real agent posts fits it."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec.inspect as mi

from podtui.bootstrap.agent.report import REPORT, Field
from podtui.models import Report
from podtui.report_rows import _Report
from tests.agent_pyz import agent_pyz
from tests.fakes.report_sink import ReportSink

NON_FINITE = {"NaN", "Infinity", "-Infinity", "nan", "inf", "-inf"}


def canonical(field: Field) -> Field:
    """A field with its choices in one order and nested parts canonical too."""
    of = field.of
    if isinstance(of, Field):
        of = canonical(of)
    elif isinstance(of, dict):
        of = {k: canonical(v) for k, v in of.items()}
    return field._replace(choices=tuple(sorted(field.choices)), of=of,
                          minimum=None if field.minimum is None else float(field.minimum),
                          maximum=None if field.maximum is None else float(field.maximum))


def from_msgspec(t: Any, required: bool = False) -> Field:
    """The schema field a msgspec type decodes."""
    if isinstance(t, mi.UnionType):
        (t,) = [u for u in t.types if not isinstance(u, mi.NoneType)]
    if isinstance(t, mi.IntType | mi.FloatType):
        return Field("integer" if isinstance(t, mi.IntType) else "number", required, t.ge, t.le)
    if isinstance(t, mi.StrType):
        return Field("string", required, min_length=t.min_length, max_length=t.max_length)
    if isinstance(t, mi.LiteralType):
        return Field("string", required, choices=t.values)
    if isinstance(t, mi.ListType):
        return Field("array", required, min_length=t.min_length, max_length=t.max_length, of=from_msgspec(t.item_type))
    assert isinstance(t, mi.StructType) and t.forbid_unknown_fields, t  # no key beyond the schema's
    return Field("object", required, of={f.name: from_msgspec(f.type, f.required) for f in t.fields})


def from_json_schema(s: dict[str, Any], defs: dict[str, Any], required: bool = False) -> Field:
    """The schema field a pydantic model's JSON schema describes."""
    if "$ref" in s:
        s = defs[s["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in s:
        kinds = [k for k in s["anyOf"] if k.get("type") != "null"]
        if len(kinds) == 2 and kinds[0].get("type") == "number" and set(kinds[1].get("enum", ())) <= NON_FINITE:
            kinds = kinds[:1]  # a number, or NaN/Infinity spelled as a string: the schema's "number"
        (s,) = kinds
        return from_json_schema(s, defs, required)
    kind = s["type"]
    if kind == "object":
        assert s.get("additionalProperties") is False, s  # no key beyond the schema's
        need = set(s.get("required", ()))
        return Field("object", required, of={k: from_json_schema(v, defs, k in need)
                                             for k, v in s["properties"].items()})
    if kind == "array":
        return Field("array", required, min_length=s.get("minItems"), max_length=s.get("maxItems"),
                     of=from_json_schema(s["items"], defs))
    if kind == "string":
        return Field("string", required, min_length=s.get("minLength"), max_length=s.get("maxLength"),
                     choices=tuple(s.get("enum", ())))
    return Field(kind, required, s.get("minimum"), s.get("maximum"))


SCHEMA = canonical(Field("object", of=REPORT))


def test_the_msgspec_decoder_takes_the_agents_schema():
    assert canonical(from_msgspec(mi.type_info(_Report))) == SCHEMA


def test_the_report_model_takes_the_agents_schema():
    schema = Report.model_json_schema()
    assert canonical(from_json_schema(schema, schema.get("$defs", {}))) == SCHEMA


def problems(value: Any, field: Field, where: str = "report") -> list[str]:
    """What in a value the schema refuses (a plain checker, independent of both decoders)."""
    kind = field.type
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where} is no object"]
        found = [f"{where}.{k} is not in the schema" for k in value if k not in field.of]
        found += [f"{where}.{k} is missing" for k, f in field.of.items() if f.required and k not in value]
        return found + [p for k, v in value.items() if k in field.of for p in problems(v, field.of[k], f"{where}.{k}")]
    if kind == "array":
        if not isinstance(value, list) or (field.max_length is not None and len(value) > field.max_length):
            return [f"{where} is no array within {field.max_length}"]
        return [p for i, v in enumerate(value) for p in problems(v, field.of, f"{where}[{i}]")]
    if kind == "string":
        ok = isinstance(value, str) and len(value) >= (field.min_length or 0) and (
            field.max_length is None or len(value) <= field.max_length) and (
            not field.choices or value in field.choices)
        return [] if ok else [f"{where} = {value!r:.80} is refused"]
    if kind == "number" and value in NON_FINITE:
        return []
    number = isinstance(value, int) if kind == "integer" else isinstance(value, int | float) and math.isfinite(value)
    ok = number and not isinstance(value, bool) and (field.minimum is None or value >= field.minimum) and (
        field.maximum is None or value <= field.maximum)
    return [] if ok else [f"{where} = {value!r} is refused"]


def test_the_checker_refuses_what_the_schema_does():
    assert problems({"status": "done", "extra": 1, "metrics": [{"name": "", "step": -1, "value": True}]},
                    Field("object", of=REPORT)) == [
        "report.extra is not in the schema", "report.status = 'done' is refused",
        "report.metrics[0].ts is missing", "report.metrics[0].name = '' is refused",
        "report.metrics[0].step = -1 is refused", "report.metrics[0].value = True is refused"]


def test_what_the_agent_posts_fits_the_schema(tmp_path: Path):
    plane = ReportSink()
    script = ("import sys, time\n"
              "print('##podtui status training', flush=True)\n"
              "for i in range(30):\n"
              "    sys.stderr.write(f'\\rtrain: {i + 1}/30 [00:0{i // 10}<00:01, 9.1it/s, loss={1 / (i + 1):.3f}]')\n"
              "    sys.stderr.flush()\n"
              "    print(f'step={i} loss={1 / (i + 1)} nan_metric=nan', flush=True)\n"
              "    time.sleep(0.02)\n"
              "print('{\"step\": 99, \"acc\": 0.5}', flush=True)\n"
              "sys.exit(3)\n")
    env = {**os.environ, "PODTUI_URL": plane.url, "PODTUI_RUN_ID": "r1", "PODTUI_TOKEN": "t",
           "PODTUI_HOME": str(tmp_path), "NO_PROXY": "127.0.0.1", "PODTUI_REPORT_INTERVAL_S": "0.2"}
    result = subprocess.run([sys.executable, str(agent_pyz()), "run", "--", sys.executable, "-c", script], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    bodies = [body for _, body in plane.reports]
    sent = {key for body in bodies for key in body}
    assert {"metrics", "logs", "heartbeat_ts", "status", "exit_code", "error", "live", "metrics_source"} <= sent
    assert any(m["value"] == "NaN" for body in bodies for m in body["metrics"])
    assert [p for body in bodies for p in problems(body, Field("object", of=REPORT))] == []
