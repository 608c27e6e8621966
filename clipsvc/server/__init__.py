"""The server's operations: gunicorn's hooks (`lifecycle`) and worker (`worker`, `deadlines`), the JSON logs and
request ids every line carries, Prometheus metrics, and gunicorn's own error replies in our JSON shape.

Everything gunicorn's master imports lives here or below, and none of it imports torch.
"""
