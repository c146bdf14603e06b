"""A tiny random model for a dry run of the recipes, made here with no download: a two-layer Llama whose
tokenizer is a byte-level BPE trained on the source's own text and carries Qwen2.5's chat template, as TRL
ships it (`trl/chat_templates/qwen2_5.jinja`). `trl kto|sft|dpo --config RECIPE --model_name_or_path FOLDER`
then runs end to end on a CPU in a minute, offline, and TRL treats the model as it treats Qwen2.5 (its
training template marks the assistant's turns for `assistant_only_loss`). It learns nothing worth keeping:
it shows that a recipe trains, and what its loss sees.

Needs the [kto] extra (torch, transformers, trl); imported only by the command that writes the model.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Iterator

import claudesidian_synthetic as cs

# Qwen2.5's special tokens, which its chat template writes; `<|im_end|>` ends each turn.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
VOCAB_SIZE = 2048
# Small enough to train a step in a second on a CPU; positions enough for the longest row with its tools.
MODEL_SHAPE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "num_key_value_heads": 2, "max_position_embeddings": 32768}
INSTALL_KTO = cs.install_hint("kto")


def qwen25_chat_template() -> str:
    """Qwen2.5's chat template as TRL ships it, which TRL recognises and patches for assistant-only loss."""
    return (importlib.resources.files("trl") / "chat_templates" / "qwen2_5.jinja").read_text(encoding="utf-8")


def _texts(source: str | None, revision: str | None) -> Iterator[str]:
    """What the model will read: every message of the source and every tool definition, as text."""
    import json

    built = cs.builder("full", source=source, revision=revision, layout="conversations")
    for plan in built.plan_splits().values():
        for example in built.iter_examples(plan):
            yield from (message["content"] for message in example["conversations"])
    schemas = cs.load_tool_schemas()
    yield from (json.dumps(schemas.definition(name), ensure_ascii=False) for name in schemas.tools)


def write_tiny_model(folder: str, source: str | None = None, *, revision: str | None = None, seed: int = 0) -> str:
    """Write the model, its tokenizer (trained on `source`, default the Hub file at `revision`) and Qwen2.5's
    chat template into `folder`, where `from_pretrained(folder)` and `--model_name_or_path` read them."""
    try:
        import tokenizers
        import torch
        import transformers
    except ImportError as error:
        raise cs.OptionError(f"the tiny model needs the kto extra ({error.name} is missing): {INSTALL_KTO}") from None
    backend = tokenizers.Tokenizer(tokenizers.models.BPE())
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS),
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
                                             show_progress=False)
    backend.train_from_iterator(_texts(source, revision), trainer=trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>",
                                                     pad_token="<|endoftext|>")
    tokenizer.chat_template = qwen25_chat_template()
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=True,
                                      **MODEL_SHAPE)
    os.makedirs(folder, exist_ok=True)
    transformers.utils.logging.disable_progress_bar()  # one small file: nothing to watch
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    mask = os.umask(0)
    os.umask(mask)
    for name in os.listdir(folder):  # safetensors writes its file 0600: readable as the user's other files are
        os.chmod(os.path.join(folder, name), 0o666 & ~mask)
    return os.fspath(folder)
