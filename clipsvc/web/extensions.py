"""Where the app keeps its settings and encoder, and the one way views fetch them."""

from __future__ import annotations

from flask import Flask, current_app

from ..encoder.model import ClipEncoder
from ..errors import ApiError, Code
from ..parsing.items import ItemRules
from ..settings import Settings

SETTINGS_KEY = "clipsvc.settings"
ENCODER_KEY = "clipsvc.encoder"


def init_app(app: Flask, settings: Settings, encoder: ClipEncoder | None) -> None:
    app.extensions[SETTINGS_KEY] = settings
    app.extensions[ENCODER_KEY] = encoder


def get_settings() -> Settings:
    return current_app.extensions[SETTINGS_KEY]


def loaded_encoder() -> ClipEncoder | None:
    return current_app.extensions.get(ENCODER_KEY)


def get_encoder() -> ClipEncoder:
    """The worker's encoder, or a 503 that says the model is not loaded (yet)."""
    encoder = loaded_encoder()
    if encoder is None:
        raise ApiError(Code.MODEL_NOT_READY, "The model is not loaded in this worker; retry shortly or check the "
                                             "start-up log")
    return encoder


def item_rules(encoder: ClipEncoder) -> ItemRules:
    """What this app's items are checked against: its limits, and the loaded model's input size (images need
    not be decoded much larger)."""
    return ItemRules(get_settings(), encoder.info.image_size)
