"""The HTTP surface: `create_app`, the routes (`clip`, `json_api`, `health`, `docs`, `demo`), the one error
handler, and serialisation of vectors and scores into the response bodies.
"""
