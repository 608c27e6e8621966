import json

import pytest
from transformers import CLIPConfig, CLIPTokenizer

from clipsvc.encoder.standin import ARCHS, PREPROCESSOR_CONFIG, byte_alphabet, main, vocab_and_merges


def test_the_directory_has_the_real_layout(model_dir):
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json",
                 "tokenizer_config.json", "preprocessor_config.json"):
        assert (model_dir / name).is_file(), name
    assert json.loads((model_dir / "preprocessor_config.json").read_text()) == PREPROCESSOR_CONFIG


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_vocabulary_size_matches_the_architecture(arch):
    vocab, merges = vocab_and_merges(ARCHS[arch]["vocab_size"])
    assert len(vocab) == ARCHS[arch]["vocab_size"] == len(set(vocab.values()))
    assert len(merges) == len(vocab) - 2 * 256 - 2
    assert list(vocab)[-2:] == ["<|startoftext|>", "<|endoftext|>"]


def test_byte_alphabet_is_clips():
    alphabet = byte_alphabet()
    assert len(set(alphabet)) == 256 and alphabet[0] == "!" and "Ġ" in alphabet


def test_the_tokenizer_round_trips(model_dir):
    tokenizer = CLIPTokenizer.from_pretrained(model_dir)
    ids = tokenizer("a man staring at the moon")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a man staring at the moon"
    assert tokenizer.unk_token_id not in ids[1:-1]  # CLIP: unk is the end token


def test_config_is_the_published_architecture(model_dir):
    config = CLIPConfig.from_pretrained(model_dir)
    assert config.vision_config.image_size == 224 and config.text_config.max_position_embeddings == 77
    assert config.text_config.hidden_act == "quick_gelu"


def test_cli(tmp_path, capsys):
    main([str(tmp_path / "m"), "--arch", "tiny", "--seed", "3"])
    assert "meaningless" in capsys.readouterr().out
    assert (tmp_path / "m" / "model.safetensors").is_file()
