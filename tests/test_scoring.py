import numpy as np
import pytest

from clipsvc.parsing.form import ImageItem, ParsedRequest, TextItem
from clipsvc.web.scoring import clip_score, embed


@pytest.mark.parametrize("cosine, score", [
    (-0.3, 0), (0.0, 0), (0.1, 25), (0.2, 50), (0.3, 75), (0.4, 100), (0.9, 100), (0.123, 31),
])
def test_clip_score(cosine, score):
    assert clip_score(cosine) == score


def test_embed_scores_only_ids_sent_as_both(encoder):
    from PIL import Image

    red = Image.new("RGB", (40, 40), "red")
    parsed = ParsedRequest(
        images=[ImageItem("1", red), ImageItem("2", red)],
        texts=[TextItem("1", "a red square"), TextItem("3", "other")],
    )
    result = embed(encoder, parsed)
    assert [p.id for p in result.pairs] == ["1"]
    assert result.order == ["1", "2", "3"]
    pair = result.pairs[0]
    assert pair.cosine == pytest.approx(float(np.dot(result.images["1"], result.texts["1"])))
    assert pair.score == clip_score(pair.cosine)
