"""A tiny randomly initialised Llama and a word-level tokenizer with a chat template, built here with
no download, for the tests that train (the [kto] extra)."""

import os


def tiny_model_and_tokenizer():
    import tokenizers
    import transformers

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.WordLevelTrainer(vocab_size=2000, special_tokens=list(vocab))
    backend.train_from_iterator(["user assistant system tool_call arguments result the a of"], trainer=trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    tokenizer.chat_template = (
        "{% for message in messages %}{{ message['role'] }} : {{ message['content'] }} <eos> {% endfor %}"
        "{% if add_generation_prompt %}assistant : {% endif %}"
    )
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=0, eos_token_id=1, bos_token_id=1,
    )
    return transformers.LlamaForCausalLM(config), tokenizer


def save_tiny_model(folder) -> str:
    """The tiny model saved where `from_pretrained(folder)` (and `trl kto --model_name_or_path`) reads it."""
    import torch

    torch.manual_seed(0)
    model, tokenizer = tiny_model_and_tokenizer()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return os.fspath(folder)


def need_trl() -> None:
    """Skip (with the reason) without the [kto] extra; in CI, which installs it, fail instead."""
    import importlib.util

    import pytest

    missing = [name for name in ("torch", "trl", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        message = f"training needs the [kto] extra; missing: {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs [kto]: a skip there would hide a broken install
        pytest.skip(message)
