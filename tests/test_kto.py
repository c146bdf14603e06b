"""KTO helpers (weights, sampler, stats) and an end-to-end KTOTrainer run on the CPU."""

import copy
import logging
import math

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_model import need_trl, tiny_model_and_tokenizer

import claudesidian_synthetic as cs
from claudesidian_tools.kto import MixedLabelBatchSampler, homogeneous_batches, kto_weights

labels_strategy = st.lists(st.booleans(), min_size=2, max_size=300).filter(lambda labels: 0 < sum(labels) < len(labels))


def test_the_builder_does_not_import_the_tools():
    """Imports point one way, tools to builder: the loading script stands alone."""
    import ast

    with open(cs.__file__, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] == "claudesidian_tools"}
    assert "numpy" in imported and "datasets" in imported  # the walk sees this file's imports


def test_weights_of_full_and_balanced(source_path):
    full = cs.load("full", split="train", source=source_path)
    weights = kto_weights(full)
    assert weights["desirable_weight"] == 1.0 and abs(weights["undesirable_weight"] - 2.94) < 0.01
    assert kto_weights([True, False] * 254) == {"desirable_weight": 1.0, "undesirable_weight": 1.0}


@settings(max_examples=300, deadline=None)
@given(labels=labels_strategy)
def test_weights_sit_inside_eq_8(labels):
    weights = kto_weights(labels)
    n_d, n_u = sum(labels), len(labels) - sum(labels)
    # KTO paper, Eq. 8: desirable_weight * n_desirable / (undesirable_weight * n_undesirable) in [1, 4/3]
    assert 1.0 <= weights["desirable_weight"] * n_d / (weights["undesirable_weight"] * n_u) <= 4 / 3
    minority_weight = weights["undesirable_weight"] if n_u < n_d else weights["desirable_weight"]
    assert minority_weight >= 1.0 and max(weights.values()) == minority_weight


def _trl_warns_about(weights: dict, labels: list) -> bool:
    """Whether TRL's KTOTrainer, preparing a dataset with these labels, warns that the weights are out of
    its recommended range: TRL's own check (it lives inside `_prepare_dataset`)."""
    import datasets
    import trl

    model, tokenizer = tiny_model_and_tokenizer()
    rows = [{"prompt": [{"role": "user", "content": "the question"}],
             "completion": [{"role": "assistant", "content": "the answer"}], "label": label} for label in labels]
    args = trl.KTOConfig(output_dir="unused", per_device_train_batch_size=2, report_to=[], use_cpu=True,
                         max_length=64, **weights)
    trainer = trl.KTOTrainer(model=model, ref_model=copy.deepcopy(model), args=args,
                             train_dataset=datasets.Dataset.from_list(rows[:4]), processing_class=tokenizer)
    warnings = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("trl.trainer.kto_trainer").addHandler(handler)
    try:
        trainer._prepare_dataset(datasets.Dataset.from_list(rows), tokenizer, args, "train")
    finally:
        logging.getLogger("trl.trainer.kto_trainer").removeHandler(handler)
    return any("weights on the desirable and undesirable losses" in message for message in warnings)


@pytest.mark.kto
@pytest.mark.parametrize(("desirable", "undesirable"), [(746, 254), (671, 229), (30, 10), (10, 30), (100, 3)])
def test_trls_own_check_accepts_the_weights(desirable, undesirable):
    need_trl()
    labels = [True] * desirable + [False] * undesirable
    assert not _trl_warns_about(kto_weights(labels), labels)
    assert _trl_warns_about({"desirable_weight": 1.0, "undesirable_weight": 1.0}, labels)  # the check can fail


def test_weights_need_both_labels():
    with pytest.raises(cs.OptionError, match="need both labels"):
        kto_weights([True, True])


@settings(max_examples=200, deadline=None)
@given(labels=labels_strategy, seed=st.integers(0, 100), drop_last=st.booleans(), data=st.data())
def test_sampler_protocol(labels, seed, drop_last, data):
    n_d = sum(labels)
    smallest = cs.smallest_mixed_batch_size(n_d, len(labels) - n_d)
    batch_size = data.draw(st.integers(smallest, smallest + 4))
    sampler = MixedLabelBatchSampler(labels, batch_size, seed=seed, drop_last=drop_last)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    flat = [i for batch in batches for i in batch]
    if drop_last:
        assert len(flat) == len(labels) // batch_size * batch_size and len(set(flat)) == len(flat)
    else:
        assert sorted(flat) == list(range(len(labels)))  # every index once per epoch
    for batch in batches:
        if len(batch) == batch_size:
            assert len({labels[i] for i in batch}) == 2
    assert list(sampler) == batches  # same epoch, same order
    sampler.set_epoch(1)
    again = [i for batch in sampler for i in batch]
    assert len(again) == len(flat) and (drop_last or sorted(again) == sorted(flat))


def test_sampler_gives_a_fresh_order_each_epoch():
    sampler = MixedLabelBatchSampler([True] * 60 + [False] * 20, batch_size=4)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_sampler_refuses_an_impossible_batch_size():
    with pytest.raises(cs.OptionError, match="smallest batch size that works is 4"):
        MixedLabelBatchSampler([True] * 746 + [False] * 254, batch_size=3)


def test_sampler_feeds_a_torch_dataloader():
    torch = pytest.importorskip("torch", reason="torch is in the [kto] extra")
    labels = [True] * 30 + [False] * 10
    loader = torch.utils.data.DataLoader(
        torch.arange(40), batch_sampler=MixedLabelBatchSampler(labels, batch_size=4)
    )
    batches = [batch.tolist() for batch in loader]
    assert len(batches) == 10 and all(len({labels[i] for i in batch}) == 2 for batch in batches)


def test_homogeneous_batches():
    assert homogeneous_batches([True, True, False, True, False, False, True], 2) == 2
    assert homogeneous_batches([True, False, True, False], 4) == 0


def _readme_block(marker: str) -> str:
    """The README's python code block that contains `marker`, so the documented recipe is what runs."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]
    (block,) = [block for block in blocks if marker in block]
    return block


@pytest.mark.kto
@pytest.mark.slow
def test_readme_random_order_recipe_trains_on_mixed_batches(source_path, tmp_path):
    need_trl()
    import torch
    import trl

    torch.manual_seed(0)
    namespace = {"cs": cs}
    exec(_readme_block("class MixedKTOTrainer"), namespace)  # noqa: S102 - the README's own recipe
    dataset = cs.load("full", split="train", source=source_path)  # 746 / 254: batches of 4 can all be mixed
    model, tokenizer = tiny_model_and_tokenizer()
    args = trl.KTOConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=3, max_length=128,
        learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=True, dataloader_num_workers=0,
        loss_type="apo_zero_unpaired", train_sampling_strategy="random", **kto_weights(dataset),
    )
    trainer = namespace["MixedKTOTrainer"](
        model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=dataset, processing_class=tokenizer
    )
    batches = list(trainer.get_train_dataloader())
    assert len(batches) == math.ceil(len(dataset) / 4)
    assert all(0 < int(batch["label"].sum()) < len(batch["label"]) for batch in batches)  # both labels, every batch
    result = trainer.train()
    assert result.global_step == 3 and math.isfinite(result.training_loss)
