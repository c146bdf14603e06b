"""Scale-out: sharded generation (`num_proc`, streaming shards), sharded export, and mixed batches on
every rank with `split_dataset_by_node` and with accelerate's batch-sampler sharding."""

import json

import datasets
import pytest
from conftest import DATA, generate_source, run_cli, single_label_batches
from datasets.distributed import split_dataset_by_node

import claudesidian_synthetic as cs
from claudesidian_tools import export as exporter
from claudesidian_tools.cli import main

BATCH = 4


@pytest.fixture(scope="module")
def big_source(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("big") / "source.jsonl"
    generate_source(path, 5000)
    return str(path)


def test_num_proc_and_shards_do_not_change_the_rows(big_source, monkeypatch, tmp_path):
    options = {"source": big_source, "test_size": 0.1, "order": "mixed", "batch_size": 8}
    serial = cs.load("balanced_custom", cache_dir=str(tmp_path / "serial"), **options)
    monkeypatch.setattr(cs, "ROWS_PER_SHARD", 1000)  # 3 shards of train: num_proc has something to share
    parallel = cs.load("balanced_custom", cache_dir=str(tmp_path / "parallel"), num_proc=2, **options)
    for split in serial:
        assert list(parallel[split]) == list(serial[split])
    streamed = cs.load("balanced_custom", split="train", streaming=True, **options)
    assert len(serial["train"]) > 2000 and streamed.num_shards == -(-len(serial["train"]) // 1000)
    assert [row["label"] for row in streamed] == serial["train"]["label"]


def test_streaming_with_num_proc_is_refused(source_path):
    with pytest.raises(cs.OptionError, match="num_proc builds the Arrow cache"):
        cs.load("full", source=source_path, streaming=True, num_proc=2)


@pytest.mark.parametrize(
    ("rows", "shards", "batch", "expected"),
    [(10, 3, None, [0, 3, 6, 10]), (1000, 8, 4, [0, 124, 248, 372, 500, 624, 748, 872, 1000]),
     (1001, 2, 4, [0, 500, 1001]), (7, 1, 4, [0, 7])],
)
def test_shard_bounds(rows, shards, batch, expected):
    bounds = exporter.shard_bounds(rows, shards, batch)
    assert bounds == expected
    if batch:
        assert all(bound % batch == 0 for bound in bounds[:-1])


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, source_path):
    folder = tmp_path_factory.mktemp("sharded") / "dataset"
    result = run_cli("export", str(folder), "--source", source_path, "--num-shards", "8",
                     "--config", "mixed4=full:order=mixed,batch_size=4", cache=tmp_path_factory.mktemp("hf"))
    assert result.returncode == 0, result.stderr
    return folder


def test_sharded_export_files_and_card(sharded):
    names = sorted(path.name for path in (sharded / "data" / "mixed4").iterdir())
    assert names == [f"train-{index:05d}-of-00008.parquet" for index in range(8)]
    card = (sharded / "README.md").read_text(encoding="utf-8")
    for name in names:
        assert f"data/mixed4/{name}" in card  # every shard is listed in the card's configs
    sizes = [datasets.Dataset.from_parquet(str(sharded / "data" / "mixed4" / name)).num_rows for name in names]
    assert sum(sizes) == 1000 and all(size % BATCH == 0 for size in sizes)


def test_sharded_export_loads_the_builders_rows(sharded, source_path):
    loaded = datasets.load_dataset(str(sharded), name="mixed4", split="train")
    assert list(loaded) == list(cs.load("full", split="train", source=source_path, order="mixed", batch_size=4))


@pytest.mark.parametrize("world_size", [2, 4, 8])
def test_every_rank_gets_only_mixed_batches(sharded, world_size):
    stream = datasets.load_dataset(str(sharded), name="mixed4", streaming=True)["train"]
    assert stream.num_shards == 8
    seen = 0
    for rank in range(world_size):
        labels = [row["label"] for row in split_dataset_by_node(stream, rank=rank, world_size=world_size)]
        seen += len(labels)
        assert single_label_batches(labels) == 0, (world_size, rank)
    assert seen == 1000


def test_a_shard_count_that_is_not_a_multiple_deals_rows_and_loses_the_mix(sharded):
    """What the README and the card say happens: datasets deals every world-size-th row instead."""
    stream = datasets.load_dataset(str(sharded), name="mixed4", streaming=True)["train"]
    counts = [single_label_batches([row["label"] for row in split_dataset_by_node(stream, rank=rank, world_size=3)])
              for rank in range(3)]
    print("world size 3, 8 shards: single-label batches of 4 per rank:", counts)
    assert sum(counts) > 0


@pytest.mark.parametrize("world_size", [2, 4, 8])
@pytest.mark.parametrize("split_batches", [False, True])
def test_accelerate_sharding_keeps_every_batch_mixed(source_path, world_size, split_batches):
    """accelerate with split_batches=False hands each process whole batches of B; with True, the
    loader's batch is B * processes and each process gets a slice of B (build the order with that B)."""
    pytest.importorskip("accelerate", reason="accelerate comes with the [kto] extra")
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, SequentialSampler

    labels = cs.load("full", split="train", source=source_path, order="mixed", batch_size=BATCH)["label"]
    loader_batch = BATCH * world_size if split_batches else BATCH
    sampler = BatchSampler(SequentialSampler(range(len(labels))), batch_size=loader_batch, drop_last=False)
    for rank in range(world_size):
        shard = BatchSamplerShard(sampler, num_processes=world_size, process_index=rank, split_batches=split_batches)
        batches = [batch for batch in shard if len(batch) == BATCH]
        assert batches and all(len({labels[index] for index in batch}) == 2 for batch in batches)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-shards", "0"], "--num-shards 0: must be a positive whole number"),
        (["--num-shards", "2", "--max-shard-size", "1MB"], "give one"),
        (["--max-shard-size", "lots"], "--max-shard-size lots: give a whole number of bytes, or of a unit, such as "
                                       "500MB, 1GB or 1500KB (no decimals)"),
        (["--max-shard-size", "1.5MB"], "--max-shard-size 1.5MB: give a whole number of bytes"),
        (["--max-shard-size", "100kb"], "--max-shard-size 100kb: a lower-case b means bits to datasets (8 times the "
                                        "shards); write 100KB for bytes"),
        (["--max-shard-size", "1KB"], "balanced_254/train: 743 shards of at most 1,000 bytes are needed, more than its "
                                      "508 rows: give a larger --max-shard-size"),
    ],
)
def test_bad_sharding_options(tmp_path, capsys, args, message):
    assert main(["export", str(tmp_path / "out"), "--source", str(DATA), *args]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "out").exists()


def test_a_split_of_fewer_batches_than_the_shards_asked_says_its_batches(source_path, tmp_path, capsys):
    """full_eval's test split: 100 rows in mixed batches of 4 are 25 batches, and a shard holds whole batches."""
    assert main(["export", str(tmp_path / "out"), "--source", source_path, "--num-shards", "30",
                 "--config", "full_eval"]) == 0
    err = capsys.readouterr().err
    assert "full_eval/test: 25 batches of 4, so 25 shards of the 30 asked (every shard holds one at least)" in err
    assert len(list((tmp_path / "out" / "data" / "full_eval").glob("test-*.parquet"))) == 25


def test_a_split_smaller_than_the_shards_asked_gets_one_shard_per_unit_and_says_so(source_path, tmp_path, capsys):
    """`--num-shards 8` (a world size) on the default export: the small test splits cannot hold 8 shards."""
    assert main(["export", str(tmp_path / "out"), "--source", source_path, "--num-shards", "5",
                 "--config", "full_eval", "--config", "pairs"]) == 0
    err = capsys.readouterr().err
    assert "pairs/test: 3 rows, so 3 shards of the 5 asked (every shard holds one at least)" in err
    assert sorted(path.name for path in (tmp_path / "out" / "data" / "pairs").iterdir()) == [
        *(f"test-0000{index}-of-00003.parquet" for index in range(3)),
        *(f"train-0000{index}-of-00005.parquet" for index in range(5))]
    assert len(list((tmp_path / "out" / "data" / "full_eval").glob("test-*"))) == 5  # 25 batches of 4: enough


@pytest.mark.slow
def test_max_shard_size_splits_by_bytes(source_path, tmp_path):
    result = run_cli("export", str(tmp_path / "out"), "--source", str(DATA), "--max-shard-size", "500KB",
                     cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    full = sorted((tmp_path / "out" / "data" / "full").iterdir())
    assert len(full) > 1 and json.dumps([path.name for path in full]).count("-of-") == len(full)
