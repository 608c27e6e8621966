"""The encoder service: CLIP built once per worker, ready to serve, by `model.ClipEncoder.build` (images and texts
in, unit vectors out), its model directory (`modeldir`, torch-free: the master runs it), preprocessing (`pixels`),
the one inference thread (`batching`), CUDA graphs, torch threads that follow the load, and the stand-in writer.

It knows nothing of HTTP or of request parsing: it imports neither Flask nor clipsvc.parsing.
"""
