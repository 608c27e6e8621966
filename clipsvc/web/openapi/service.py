"""The service's own operations: the probes and /meta (web.health), this document and its page (web.docs), the
demo page (web.demo) and /metrics (server.metrics)."""

from __future__ import annotations

from ...settings import CPU_ENGINES, LIMIT_TYPES, Settings
from .parts import DEMO_TYPES, SWAGGER_TYPES, Routes, error_responses, json_content, ok, operation, page, ref


def paths(settings: Settings, routes: Routes) -> dict:
    status = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    return {
        "/livez": {"get": operation("health", "Liveness: the process runs (no model needed)", "Always 200.", {
            "200": ok("Alive", json_content(status | {"properties": {"status": {"const": "alive"}}},
                                            {"status": "alive"})), **error_responses(routes.codes["health.livez"])})},
        "/readyz": {"get": operation("health", "Readiness: this worker has loaded the model", "503 until it has.", {
            "200": ok("Ready", json_content(status | {"properties": {"status": {"const": "ready"}}},
                                            {"status": "ready"})), **error_responses(routes.codes["health.readyz"])})},
        "/meta": {"get": operation("health", "The model, device, version and limits", "Needs a loaded model.", {
            "200": ok("Metadata", json_content(ref("Meta"))), **error_responses(routes.codes["health.meta"])})},
        "/openapi.json": {"get": operation("docs", "This OpenAPI 3.1 document", "Built from this server's settings.", {
            "200": ok("The document", json_content({"type": "object", "required": ["openapi", "paths"]})),
            **error_responses(routes.codes["docs.openapi"])})},
        "/docs": page("docs", "Interactive API documentation (Swagger UI, served from this app)", ("text/html",),
                      routes.codes["docs.docs"]),
        "/docs/assets/{filename}": page("docs", "A file of the /docs page (Swagger UI's own assets)",
                                        SWAGGER_TYPES, routes.codes["docs.asset"], "filename"),
        "/": page("docs", "Demo page: rank captions against an image through POST /rank", ("text/html",),
                  routes.codes["demo.page"]),
        "/demo/{name}": page("docs", "A file of the demo page", DEMO_TYPES, routes.codes["demo.asset"], "name"),
        "/metrics": page("operations", "Prometheus metrics of all workers (text exposition format 0.0.4)",
                         ("text/plain; version=0.0.4",), routes.codes["metrics.metrics"]),
    }


def components(settings: Settings, routes: Routes) -> dict:
    integer, string = {"type": "integer"}, {"type": "string"}
    limits = {name: {"type": kind} for name, kind in LIMIT_TYPES.items()}
    fields = {"model": string, "model_path": string, "embedding_dim": integer, "image_size": integer,
              "max_text_tokens": integer, "device": string,
              "engine": {"type": "string", "enum": list(CPU_ENGINES),
                         "description": "what computes the towers (CLIP_CPU_ENGINE on a CPU; torch on a GPU)"},
              "dtype": string,
              "request_threads": {"type": "integer", "description": "CLIP_THREADS: connections each worker serves "
                                  "at once (reading, decoding, preprocessing)"},
              "torch_threads": {"type": "integer", "description": "threads of one forward pass (CLIP_TORCH_THREADS, or "
                                "the most when they follow the load)"},
              "torch_threads_follow_load": {"type": "boolean"}, "packed_weights": {"type": "boolean"},
              "precision": {"type": "string", "enum": ["fp32", "bf16", "fp16", "int8"]},
              "precision_cosine": {"type": ["number", "null"], "description": "the accuracy guard's worst cosine "
                                   "against fp32 on its probe at load (null: fp32, or the guard is off)"},
              "precision_fallback": {"type": "boolean"}, "text_cache_size": integer,
              "batching": {"type": "boolean"},
              "max_batch": integer, "version": string,
              "limits": {"type": "object", "required": list(limits), "properties": limits}}
    return {"schemas": {"Meta": {"type": "object", "required": list(fields), "properties": fields}}}
