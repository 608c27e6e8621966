import re
from dataclasses import fields
from pathlib import Path

import pytest

from clipsvc.encoder.loading import IMAGE_BATCH
from clipsvc.encoder.precision import MIN_COSINE
from clipsvc.settings import ENV_VARS, Settings, SettingsError, markdown_table, shown_default

ENV_HINTS = {spec.metadata["var"]: spec.metadata["hint"] for spec in fields(Settings)}


def test_every_field_has_a_variable_a_hint_and_a_meaning():
    assert set(ENV_VARS) == {f.name for f in fields(Settings)}
    for spec in fields(Settings):
        assert spec.metadata["var"] and spec.metadata["hint"] and spec.metadata["doc"], spec.name


def test_defaults_without_a_value_to_show_are_described_in_words():
    """None, an empty tuple or a computed default needs a shown_default; a plain value is shown as one sets it."""
    assert shown_default("port") == "`8081`" and shown_default("cpu_packed_weights") == "`on`"
    assert shown_default("model_dir") == "`/model`" and shown_default("fetch_allow_hosts") == "empty (no fetching)"
    table = markdown_table()
    assert table.count("\n") == 2 + len(fields(Settings)) and "None" not in table and "`()`" not in table


def test_the_meanings_quote_the_encoders_numbers():
    """Numbers the settings table states but the encoder owns (settings.py imports no torch): the accuracy guard's
    default per format, and the images per forward pass when CLIP_MAX_BATCH does not set it."""
    cosines = shown_default("precision_min_cosine")
    for precision, cosine in MIN_COSINE.items():
        assert re.search(rf"\b{precision}\b[^`]*`{cosine}`", cosines), (precision, cosine)
    doc = next(spec.metadata["doc"] for spec in fields(Settings) if spec.name == "max_batch")
    assert f"stays at {IMAGE_BATCH} rows" in doc


def test_defaults_match_the_users_docker_run():
    settings = Settings.from_env({})
    assert settings.model_dir == Path("/model")
    assert settings.port == 8081
    assert (settings.max_request_mb, settings.max_image_mb, settings.max_image_pixels) == (64, 20, 40_000_000)
    assert (settings.max_text_words, settings.max_items) == (50, 64)


def test_environment_overrides():
    settings = Settings.from_env({
        "CLIP_MODEL_DIR": "/m", "PORT": "9000", "WEB_CONCURRENCY": "3", "CLIP_TORCH_THREADS": "2",
        "CLIP_DEVICE": "CPU", "CLIP_MAX_REQUEST_MB": "1.5", "CLIP_MAX_IMAGE_MB": "1", "CLIP_LOG_LEVEL": "DEBUG",
    })
    assert settings.model_dir == Path("/m") and settings.port == 9000 and settings.workers == 3
    assert settings.threads_per_worker == 2 and settings.device == "cpu" and settings.log_level == "debug"
    assert settings.max_request_bytes == int(1.5 * 1024 * 1024)


def test_threads_default_to_cores_divided_by_workers(monkeypatch):
    monkeypatch.setattr("clipsvc.settings.cpu_count", lambda: 8)
    assert Settings(workers=2).threads_per_worker == 4
    assert Settings(workers=16).threads_per_worker == 1


@pytest.mark.parametrize("env, named", [
    ({"PORT": "eighty"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY"),
    ({"CLIP_TORCH_THREADS": "-1"}, "CLIP_TORCH_THREADS"),
    ({"CLIP_DEVICE": "tpu"}, "CLIP_DEVICE"),
    ({"CLIP_DEVICE": "cuda:abc"}, "CLIP_DEVICE"),
    ({"CLIP_MAX_REQUEST_MB": "inf"}, "CLIP_MAX_REQUEST_MB"),
    ({"CLIP_MAX_REQUEST_MB": "nan"}, "CLIP_MAX_REQUEST_MB"),
    ({"CLIP_MAX_REQUEST_MB": "lots"}, "CLIP_MAX_REQUEST_MB"),
    ({"CLIP_MAX_IMAGE_MB": "100"}, "CLIP_MAX_IMAGE_MB"),
    ({"CLIP_MAX_ITEMS": "0"}, "CLIP_MAX_ITEMS"),
    ({"CLIP_LOG_LEVEL": "loud"}, "CLIP_LOG_LEVEL"),
    ({"CLIP_FETCH_ALLOW_HOSTS": "https://images.example.com"}, "CLIP_FETCH_ALLOW_HOSTS"),
    ({"CLIP_FETCH_ALLOW_HOSTS": "images.example.com/path"}, "CLIP_FETCH_ALLOW_HOSTS"),
    ({"CLIP_FETCH_ALLOW_HOSTS": "*"}, "CLIP_FETCH_ALLOW_HOSTS"),
    ({"CLIP_FETCH_TIMEOUT_S": "0"}, "CLIP_FETCH_TIMEOUT_S"),
    ({"CLIP_FETCH_TIMEOUT_S": "600"}, "CLIP_FETCH_TIMEOUT_S"),
    ({"CLIP_API_KEYS": "fifteen-chars-x"}, "CLIP_API_KEYS"),
    ({"CLIP_API_KEYS": "k" * 513}, "CLIP_API_KEYS"),
    ({"CLIP_API_KEYS": "sixteen-chars-ok,with space-0123456"}, "CLIP_API_KEYS"),
    ({"CLIP_API_KEYS": "sixteen-chars-\u00e9k"}, "CLIP_API_KEYS"),
    ({"CLIP_API_KEYS": ",,"}, "CLIP_API_KEYS"),
    ({"CLIP_API_KEYS_FILE": "/nonexistent/clipsvc-keys"}, "CLIP_API_KEYS_FILE"),
    ({"CLIP_TRUSTED_PROXIES": "proxy.internal"}, "CLIP_TRUSTED_PROXIES"),
    ({"CLIP_TRUSTED_PROXIES": "10.0.0.7/8"}, "CLIP_TRUSTED_PROXIES"),
    ({"CLIP_TRUSTED_PROXIES": "10.0.0.0/33"}, "CLIP_TRUSTED_PROXIES"),
])
def test_bad_values_are_refused_naming_the_variable(env, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_fetch_allow_list_is_split_and_normalised():
    settings = Settings.from_env({"CLIP_FETCH_ALLOW_HOSTS": " Images.Example.com., *.cdn.example.com:8443  10.0.0.7"})
    assert settings.fetch_allow_hosts == ("images.example.com", "*.cdn.example.com:8443", "10.0.0.7")
    assert Settings().fetch_allow_hosts == ()


# (environment, the refusal's fields: variable, value as given (None: a secret), problem, accepted)
REFUSALS = [
    ({"PORT": "eighty"}, ("PORT", "eighty", "expected a whole number", "1-65535")),
    ({"PORT": " 99999 "}, ("PORT", "99999", "out of range", "1-65535")),
    ({"CLIP_DEVICE": "TPU"}, ("CLIP_DEVICE", "TPU", "out of range", "auto, cpu, cuda or cuda:N")),
    ({"CLIP_MAX_REQUEST_MB": "1"}, ("CLIP_MAX_IMAGE_MB", "20", "its default is out of range",
                                    "greater than 0 and at most CLIP_MAX_REQUEST_MB")),
    ({"CLIP_TRUSTED_PROXIES": "10.0.0.7/8"}, ("CLIP_TRUSTED_PROXIES", "10.0.0.7/8", "10.0.0.7/8 has host bits set",
                                              ENV_HINTS["CLIP_TRUSTED_PROXIES"])),
    ({"CLIP_API_KEYS": "short"}, ("CLIP_API_KEYS", None, "out of range", ENV_HINTS["CLIP_API_KEYS"])),
    ({"CLIP_API_KEYS": ",,"}, ("CLIP_API_KEYS", None, "it holds no key", ENV_HINTS["CLIP_API_KEYS"])),
]


@pytest.mark.parametrize("env, refusal", REFUSALS)
def test_a_refusal_carries_its_parts_for_the_log_line(env, refusal):
    """clipsvc.server.logs.refuse_configuration logs these as fields; the message says the same in a sentence."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    error = caught.value
    assert (error.variable, error.value, error.problem, error.accepted) == refusal
    assert str(error).startswith(error.variable) and error.accepted in str(error)


def test_trusted_proxies_are_normalised_networks():
    settings = Settings.from_env({"CLIP_TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.7  ::1,10.0.0.0/8"})
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.168.1.7/32", "::1/128")
    assert Settings().trusted_proxies == ()


def test_blank_values_mean_default():
    assert Settings.from_env({"PORT": " ", "CLIP_DEVICE": ""}) == Settings()


KEY_A, KEY_B = "a-key-of-sixteen+", "b_key/with=signs~0123"


def test_api_keys_are_trimmed_deduplicated_and_off_by_default():
    assert Settings().api_keys == Settings().api_keys_from_file == ()
    assert Settings.from_env({"CLIP_API_KEYS": f" {KEY_A} , {KEY_B},{KEY_A}, "}).api_keys == (KEY_A, KEY_B)
    assert Settings.from_env({"CLIP_API_KEYS": "  "}).api_keys == ()  # blank: the default, off


def test_the_key_file_has_one_key_a_line_with_comments(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# rotated 2026-01\n\n{KEY_A}\n   # old one, until the clients move:\n  {KEY_B}  \r\n\n")
    assert Settings.from_env({"CLIP_API_KEYS_FILE": str(path)}).api_keys_from_file == (KEY_A, KEY_B)


@pytest.mark.parametrize("content, message", [
    (b"", "holds no key"),
    (b"# only a comment\n\n", "holds no key"),
    (b"\xff\xfe-not-utf-8-0123456789\n", "not UTF-8"),
    (b"short\n", "out of range"),
])
def test_a_bad_key_file_is_refused_at_start_up_without_its_content(tmp_path, content, message):
    path = tmp_path / "keys"
    path.write_bytes(content)
    with pytest.raises(SettingsError, match=message) as caught:
        Settings.from_env({"CLIP_API_KEYS_FILE": str(path)})
    assert str(caught.value).startswith("CLIP_API_KEYS_FILE") and "short" not in str(caught.value)


def test_an_unreadable_key_file_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="CLIP_API_KEYS_FILE is invalid: cannot read it: Is a directory"):
        Settings.from_env({"CLIP_API_KEYS_FILE": str(tmp_path)})


def test_keys_are_never_shown(tmp_path):
    with pytest.raises(SettingsError) as caught:
        Settings(api_keys=(KEY_A, "tiny"))
    assert "tiny" not in str(caught.value) and KEY_A not in str(caught.value)
    settings = Settings(api_keys=(KEY_A,), api_keys_from_file=(KEY_B,))
    assert KEY_A not in repr(settings) and KEY_B not in repr(settings)
