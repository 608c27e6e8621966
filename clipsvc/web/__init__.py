"""The HTTP surface: `create_app` (app.py), one view module per API the service speaks (`clip`, `bentoml`,
`truss`, `jina`, `openai`) and for its probes and pages (`health`, `docs`, `demo`); what views share (`context`,
`envelope`, `scoring`, `serialize`), the one error handler, and the OpenAPI document (`openapi/`, one part per
view module).
"""
