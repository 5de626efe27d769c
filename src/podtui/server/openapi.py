"""The OpenAPI 3 description, generated from the route table and the pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from .. import __version__

_REF = "#/components/schemas/{model}"


def _schema(shape: Any, components: dict[str, Any]) -> dict[str, Any]:
    if shape is dict:
        return {"type": "object"}
    schema = TypeAdapter(shape).json_schema(ref_template=_REF, mode="serialization")
    components.update(schema.pop("$defs", {}))
    title = schema.get("title")
    if schema.get("type") == "object" and title:
        components[title] = schema
        return {"$ref": _REF.format(model=title)}
    return schema


def build_openapi(routes: Any) -> dict[str, Any]:
    """The whole description: one path item per route, shared components."""
    components: dict[str, Any] = {}
    error_ref = _schema(_error_model(), components)
    paths: dict[str, Any] = {}
    for route in routes:
        op: dict[str, Any] = {"summary": route.summary, "operationId": route.handler.__name__,
                              "responses": {}}
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in ("run_id", "nonce", "provider", "pod_id", "name") if "{" + name + "}" in route.path]
        for p in route.params:
            schema: dict[str, Any] = {"type": p.kind}
            if p.minimum is not None:
                schema["minimum"] = p.minimum
            if p.maximum is not None:
                schema["maximum"] = p.maximum
            if p.enum is not None:
                schema["enum"] = list(p.enum)
            params.append({"name": p.name, "in": "query", "required": False, "schema": schema,
                           "description": p.description}
                          | ({"allowEmptyValue": True} if p.kind == "integer" else {}))  # empty: as absent
        if params:
            op["parameters"] = params
        if route.body is not None:
            body_schema = TypeAdapter(route.body).json_schema(ref_template=_REF, mode="validation")
            components.update(body_schema.pop("$defs", {}))
            name = route.body.__name__ + "Input"
            components[name] = body_schema
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=name)}}}}
        if route.content_type == "application/json":
            content = {"application/json": {"schema": _schema(route.response, components)}}
        else:
            content = {route.content_type: {"schema": {"type": "string"}}}
        op["responses"][str(route.status)] = {"description": "OK", "content": content}
        for code in ("400", "401", "403", "404", "409", "410", "413", "422", "502", "503"):
            op["responses"][code] = {"description": "error",
                                     "content": {"application/json": {"schema": error_ref}}}
        if route.auth == "admin" or route.auth == "pod":
            op["security"] = [{"bearer": []}]
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "podtui control plane", "version": __version__},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _error_model() -> Any:
    from ..models import ErrorBody

    return ErrorBody
