"""The OpenAPI 3 description ``taskbert serve`` answers at ``GET /openapi.json``.

Written by hand: the API is five routes, and the request schema has to say what
:func:`.serve.parse_inputs` accepts (a text or a record per input), which no framework
would infer better. The limits in it are the running server's.
"""

ERROR = {"$ref": "#/components/schemas/Error"}


def _answer(description, schema=ERROR, retry=False):
    out = {"description": description, "content": {"application/json": {"schema": schema}}}
    if retry:
        out["headers"] = {"Retry-After": {"description": "seconds to wait before retrying",
                                          "schema": {"type": "integer"}}}
    return out


def openapi_description(state):
    """The description as a dict, with ``state``'s limits and task name."""
    task = state.predictor.name if state.predictor is not None else None
    return {
        "openapi": "3.0.3",
        "info": {"title": "taskbert serve", "version": "1",
                 "description": f"Predictions of a taskbert model (task: {task or 'loading'}); "
                                "the same dicts `taskbert predict` writes."},
        "paths": {
            "/predict": {"post": {
                "summary": "Predict for a list of inputs",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
                "responses": {
                    "200": _answer("one prediction per input, in order",
                                   {"$ref": "#/components/schemas/PredictResponse"}),
                    "400": _answer("a body that is not UTF-8 JSON of this shape, or an input the task rejects"),
                    "408": _answer("the body did not arrive in time"),
                    "411": _answer("no Content-Length, or a chunked body"),
                    "413": _answer(f"a body over {state.max_bytes} bytes or more than "
                                   f"{state.max_inputs} inputs"),
                    "415": _answer("a content type other than JSON"),
                    "500": _answer("the model call failed (every request of that batch gets it)"),
                    "503": _answer("queue full, model loading, or shutting down", retry=True)}}},
            "/health": {"get": {"summary": "Liveness: the process answers",
                                "responses": {"200": _answer("status, task, backend, limits",
                                                             {"type": "object"})}}},
            "/ready": {"get": {"summary": "Readiness: the model is loaded",
                               "responses": {"200": _answer("ready", {"type": "object"}),
                                             "503": _answer("still loading (or failed)", retry=True)}}},
            "/metrics": {"get": {"summary": "Request counts, latency p50/p99, batch sizes, queue depth",
                                 "responses": {"200": _answer("metrics", {"type": "object"})}}},
            "/openapi.json": {"get": {"summary": "This description",
                                      "responses": {"200": _answer("OpenAPI 3", {"type": "object"})}}},
        },
        "components": {"schemas": {
            "PredictRequest": {"type": "object", "required": ["inputs"], "additionalProperties": False,
                               "properties": {"inputs": {
                                   "type": "array", "minItems": 1, "maxItems": state.max_inputs,
                                   "items": {"oneOf": [
                                       {"type": "string", "description": "a text, read as a line of a .txt input"},
                                       {"type": "object", "description": "a record, as a line of a .jsonl input"}]}}}},
            "PredictResponse": {"type": "object", "required": ["predictions"],
                                "properties": {"predictions": {"type": "array", "items": {"type": "object"}}}},
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string", "description": "one line"}}},
        }},
    }
