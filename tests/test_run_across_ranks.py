"""A run under two gloo ranks shares its final evaluation among them and reports one process's table.

Each forked rank runs ``run_experiment`` on the same config (SimCLR on the
digits with kNN, few-label 1-NN and linear probes; CLIP on a tiny emoji file
with zero-shot and retrieval). Rank 0's table must equal the one a single
process computes from the checkpoint the run wrote, rank 1 returns nothing,
and each rank embeds only its share of the rows (counted through
``embed_in_batches``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from shared_checks import free_port, join_ranks, leaving_process_group

import contrastive_seq.evaluation.distributed_embed as distributed_embed
import contrastive_seq.evaluation.zero_shot as zero_shot
from contrastive_seq.data.image_text import ImageTextDataset, save_image_text_hdf5
from contrastive_seq.experiments import load_experiment_config, load_run, run_experiment
from contrastive_seq.experiments.run import choose_evaluator

WORLD = 2
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
COMMON = ["train.max_steps=2", "train.warmup_steps=1", "train.batch_size=8", "train.progress=false",
          "train.num_workers=0", "train.eval_every=null", "train.checkpoint_every=2"]


def emoji_file(path: Path) -> Path:
    """24 random 16x16 "emoji" in 4 categories, two captions each (the emoji config's layout)."""
    generator = torch.Generator().manual_seed(0)
    names = ["food", "nature", "people", "travel"]
    labels = torch.arange(24) % 4
    captions = [text for i in range(24) for text in (f"thing {i}, a {names[labels[i]]} emoji", f"{names[labels[i]]} emoji")]
    data = ImageTextDataset(torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=generator), captions,
                            torch.arange(24).repeat_interleave(2), labels, names, groups=torch.arange(24) // 2)
    save_image_text_hdf5(path, data)
    return path


def cases(folder: Path) -> dict[str, tuple[Path, list[str]]]:
    """``{name: (config, overrides)}`` for the two evaluators that share their work among the ranks."""
    return {
        "probes": (CONFIGS / "simclr_digits.yaml", ["evaluation.label_draws=1"]),
        "zero_shot": (CONFIGS / "clip_emoji.yaml", [f"data.path={folder / 'emoji.h5'}",
                                                    "encoder.vision={image_size: 32, layers: [1, 1, 1, 1], width: 16}",
                                                    "encoder.text={width: 16, heads: 2, layers: 1}"]),
    }


def counting_embedded_rows(monkeypatch_target: list[int]) -> None:
    """Count the rows every ``embed_in_batches`` / ``embed_texts_in_batches`` call of the evaluation embeds."""
    for module, name in ((distributed_embed, "embed_in_batches"), (zero_shot, "embed_in_batches"),
                         (zero_shot, "embed_texts_in_batches")):
        original = getattr(module, name)

        def counted(model, inputs, *args, _original=original, **kwargs):
            monkeypatch_target.append(len(inputs))
            return _original(model, inputs, *args, **kwargs)

        setattr(module, name, counted)


def _worker(rank: int, port: int, folder: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    rows: list[int] = []
    counting_embedded_rows(rows)
    with leaving_process_group():
        out = {}
        for name, (config, overrides) in cases(folder).items():
            rows.clear()
            config = load_experiment_config(config, [*COMMON, *overrides, f"train.output_dir={folder / name}"])
            out[name] = {"results": run_experiment(config), "rows": sum(rows)}
        torch.save(out, folder / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run_across_ranks")
    emoji_file(folder / "emoji.h5")
    # forked, not spawned: the ranks need not import torch, open_clip and sklearn again
    join_ranks(mp.start_processes(_worker, args=(free_port(), folder), nprocs=WORLD, join=False, start_method="fork"))
    return folder, [torch.load(folder / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD)]


@pytest.mark.parametrize("name", ["probes", "zero_shot"])
def test_two_ranks_report_one_processs_table_each_embedding_its_share(ranks, name):
    folder, (first, second) = ranks
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows: list[int] = []
    originals = {(m, n): getattr(m, n) for m in (distributed_embed, zero_shot)
                 for n in ("embed_in_batches", "embed_texts_in_batches") if hasattr(m, n)}
    try:
        experiment, untrained = load_run(folder / name, keep_untrained=True)
        evaluator = choose_evaluator(experiment)
        counting_embedded_rows(rows)
        expected = evaluator.results(experiment.method, untrained)
        evaluator.during_training(experiment.method)  # the run's last step evaluates too
    finally:
        for (module, attribute), original in originals.items():
            setattr(module, attribute, original)
        torch.set_num_threads(threads)
    assert evaluator.across_ranks and second[name]["results"] == {}
    assert first[name]["results"].keys() == expected.keys()
    for row, scores in expected.items():
        assert first[name]["results"][row] == pytest.approx(scores, abs=1e-6), row
    assert first[name]["rows"] + second[name]["rows"] == sum(rows)  # the ranks split the one process's rows
    assert max(first[name]["rows"], second[name]["rows"]) <= 0.6 * sum(rows)
