"""Search your images by text: index them in a vector database through clipsvc's OpenAI-compatible API.

    pip install -r requirements-examples.txt     # openai and qdrant-client, at the tested versions
    python examples/image_search.py --url http://localhost:8081/v1 photos/*.jpg --query "a dog on a beach"

The embedder is the plain `openai` SDK pointed at clipsvc (`base_url`), as LangChain, LlamaIndex or a vector
database's own "OpenAI-compatible" embedder would use it; the index is Qdrant in local mode (in memory,
no server). CLIP puts images and texts in one space, so a text query finds the images it describes.
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
from pathlib import Path

from openai import OpenAI
from qdrant_client import QdrantClient, models

COLLECTION = "images"


def data_uri(path: Path) -> str:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def embed(client: OpenAI, model: str, inputs: list) -> list[list[float]]:
    """One vector per input, in order; images go as {"image": <data: URI>}, texts as strings."""
    return [item.embedding for item in client.embeddings.create(model=model, input=inputs).data]


def index(client: OpenAI, model: str, store: QdrantClient, paths: list[Path], batch: int = 16) -> None:
    """Every image's vector, with its path as payload; a batch of images per request."""
    size = len(embed(client, model, ["probe"])[0])
    store.create_collection(COLLECTION, vectors_config=models.VectorParams(size=size, distance=models.Distance.COSINE))
    for start in range(0, len(paths), batch):
        chunk = paths[start:start + batch]
        vectors = embed(client, model, [{"image": data_uri(p)} for p in chunk])
        store.upsert(COLLECTION, [models.PointStruct(id=start + i, vector=v, payload={"path": str(p)})
                                  for i, (p, v) in enumerate(zip(chunk, vectors, strict=True))])


def search(client: OpenAI, model: str, store: QdrantClient, query: str, limit: int = 3) -> list[tuple[str, float]]:
    """The images nearest the text, best first, with their cosine similarity."""
    hits = store.query_points(COLLECTION, query=embed(client, model, [query])[0], limit=limit).points
    return [(hit.payload["path"], hit.score) for hit in hits]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--query", action="append", required=True, help="a text to search for (repeatable)")
    parser.add_argument("--url", default="http://localhost:8081/v1", help="clipsvc's /v1 base URL")
    parser.add_argument("--api-key", default="unused", help="a key from CLIP_API_KEYS, if the server needs one")
    parser.add_argument("--limit", type=int, default=3)
    args = parser.parse_args(argv)
    client = OpenAI(base_url=args.url, api_key=args.api_key)
    model = client.models.list().data[0].id  # the one model the server serves
    store = QdrantClient(":memory:")
    index(client, model, store, args.images)
    for query in args.query:
        print(query)
        for path, score in search(client, model, store, query, args.limit):
            print(f"  {score:.4f}  {path}")


if __name__ == "__main__":
    main()
