"""CLIP data loading from WebDataset shards at scale: ours (by index) against open_clip's webdataset pipeline.

    python benchmarks/shards_scale.py --pairs 100000 1000000 --steps 300 --workers 2

For each size, writes that many synthetic pairs (16x16 PNG images of random
colours, short captions) into shards of 10,000 (once, under ``--cache``),
then runs two loaders over the same shards with the same batch size, image
size, workers and augmentation (a random resized crop, scale 0.9-1):

- ours: :class:`~contrastive_seq.data.shards.ShardedImageText` +
  ``PairedSampler`` + ``ImageTextViews`` through ``SampledBatches`` (the
  Trainer's (seed, step) batches) in a ``DataLoader``;
- open_clip's: ``open_clip_train.data.get_wds_dataset`` (shard shuffle,
  sample shuffle buffer, PIL decoding, its train transform and tokenizer).

Reported per loader: pairs per second over ``--steps`` batches after 20
warm-up batches (loading + decoding + augmenting; no model), and the peak memory
of the loader's processes over batches 0-100 and over batches 100 to the end
(sampled every 0.2 s): resident (``Rss``
summed over main + workers, so pages the forked workers share with the main
process count once per process), proportional (``Pss`` summed: a shared
page counts once in all), the main process's own ``Pss`` (where the dataset
is built) and the workers' private memory (copied on write, or their own). Our index time (read from the cached shard indexes after the
first run) and token time (each shard's captions tokenised once into a cache beside its index, read
from it after the first run), the memory they leave held, and the bytes a pair the token caches take
on disk are reported too. Both loaders tokenise with a context of 16 tokens.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import threading
import time
from argparse import Namespace
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from contrastive_seq.data.shards import ShardedImageText
from contrastive_seq.memory import workers_share_memory
from contrastive_seq.models.clip_towers import OpenCLIPTokenizer
from contrastive_seq.sampling.paired import PairedSampler
from contrastive_seq.training.batches import SampledBatches
from contrastive_seq.views.image_text import ImageTextViews, caption_tokens_of

PER_SHARD = 10_000
WORDS = ["red", "green", "blue", "small", "large", "square", "circle", "bright", "dark", "photo"]


def write_pairs(folder: Path, pairs: int) -> str:
    """``pairs`` synthetic pairs in shards of :data:`PER_SHARD` under ``folder`` (kept); returns the brace pattern."""
    import webdataset

    shards = -(-pairs // PER_SHARD)
    pattern = str(folder / f"pairs-{{000000..{shards - 1:06d}}}.tar")
    if (folder / "done.json").is_file():
        return pattern
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    palette = torch.randint(0, 256, (1000, 3), generator=generator)
    encoded = []
    for colour in palette.tolist():  # 1,000 distinct images, reused: encoding is not what is measured
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), tuple(colour)).save(buffer, format="png")
        encoded.append(buffer.getvalue())
    with webdataset.ShardWriter(str(folder / "pairs-%06d.tar"), maxcount=PER_SHARD, verbose=0) as writer:
        for i in range(pairs):
            words = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7))
            writer.write({"__key__": f"{i:09d}", "png": encoded[i % 1000], "txt": f"a {words} picture {i}"})
    (folder / "done.json").write_text(json.dumps({"pairs": pairs}))
    return pattern


def _loader_pids() -> list[int]:
    """This process and its children (DataLoader workers)."""
    pids = [os.getpid()]
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        children = (task / "children").read_text().split()
        pids.extend(int(pid) for pid in children)
    return pids


def _memory_kib(pid: int, fields: tuple[str, ...]) -> int:
    """The sum of ``fields`` (kB lines) of ``/proc/PID/smaps_rollup``; 0 for a process that has exited."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return sum(int(line.split()[1]) for line in lines if line.split(":")[0] in fields)


def loader_rss_mib() -> float:
    """Resident memory of this process and its children (DataLoader workers), MiB: pages shared by
    forked workers are counted once per process (what ``top`` shows, summed)."""
    return sum(_memory_kib(pid, ("Rss",)) for pid in _loader_pids()) / 1024


def loader_pss_mib() -> float:
    """Proportional memory of this process and its workers, MiB: a page shared by k processes counts 1/k,
    so the sum is the memory the loader really holds."""
    return sum(_memory_kib(pid, ("Pss",)) for pid in _loader_pids()) / 1024


def workers_private_mib() -> float:
    """Memory the workers hold privately (copied on write, or their own), MiB: what grows per worker."""
    return sum(_memory_kib(pid, ("Private_Clean", "Private_Dirty")) for pid in _loader_pids()[1:]) / 1024


def measure(batches: object, batch_size: int, steps: int) -> dict[str, float]:
    """Pairs per second over ``steps`` batches after 20, and the loader's peak memory over batches 0-100
    and 100-``steps`` (sampled every 0.2 s by a thread, so the loop is not held up while it reads)."""
    iterator = iter(batches)
    for _ in range(20):
        next(iterator)
    done, samples = [0], []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            main_pss = _memory_kib(os.getpid(), ("Pss",)) / 1024
            samples.append((done[0], loader_rss_mib(), loader_pss_mib(), workers_private_mib(), main_pss))

    watcher = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    watcher.start()
    for step in range(steps):
        next(iterator)
        done[0] = step + 1
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    figures = {"pairs_per_s": steps * batch_size / seconds, "memory_samples": len(samples)}
    for part, rows in (("to_100", [row for row in samples if row[0] <= 100]),
                       ("after_100", [row for row in samples if row[0] > 100])):
        for column, name in ((1, "rss"), (2, "pss"), (3, "workers_private"), (4, "main_pss")):
            figures[f"peak_{name}_mib_{part}"] = max((row[column] for row in rows), default=float("nan"))
    return figures


def ours(pattern: str, args: Namespace) -> dict[str, float]:
    start = time.perf_counter()
    rss_before = loader_rss_mib()
    data = ShardedImageText(pattern, image_size=args.image_size)
    indexed = time.perf_counter()
    tokens = caption_tokens_of(data, OpenCLIPTokenizer(context_length=16))
    token_files = [path.stat().st_size for path in Path(pattern).parent.glob("*.tokens-*.npz")]
    index = {"index_s": indexed - start, "tokens_s": time.perf_counter() - indexed,
             "index_mib": loader_rss_mib() - rss_before, "token_cache_bytes_per_pair": sum(token_files) / len(data)}
    crop = v2.RandomResizedCrop(args.image_size, scale=(0.9, 1.0), antialias=True)
    views = ImageTextViews(tokens, image_transform=crop)
    steps = args.steps + 20
    batches = SampledBatches(data, PairedSampler(data.caption_image, len(data)), views, args.batch_size, steps)
    loader = DataLoader(batches, batch_size=None, sampler=range(steps), num_workers=args.workers)
    with workers_share_memory():  # as the Trainer's fit does (open_clip's loader, measured next, runs as it would)
        return {**index, **measure(loader, args.batch_size, args.steps)}


def index_figures(pattern: str, image_size: int) -> dict[str, float]:
    """One process: seconds to build the dataset scanning the tars (an empty ``index_dir``) and then from
    the caches just written, the memory the built dataset holds (tracemalloc), and the private memory of a
    forked child after it reads 100 batches of 256 random images (``Private_Clean + Private_Dirty``), plain
    and with ``gc.freeze()`` in the parent before the fork."""
    import gc
    import tempfile
    import tracemalloc

    figures = {}
    with tempfile.TemporaryDirectory() as index_dir:
        for name in ("scan_s", "cached_s"):
            start = time.perf_counter()
            ShardedImageText(pattern, image_size=image_size, index_dir=index_dir)
            figures[name] = time.perf_counter() - start
        gc.collect()
        tracemalloc.start()
        data = ShardedImageText(pattern, image_size=image_size, index_dir=index_dir)
        gc.collect()
        figures["dataset_mib"] = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
    for name, freeze in (("forked_child_private_mib", False), ("forked_child_private_mib_gc_frozen", True)):
        if freeze:  # the collector then leaves the parent's objects alone, in the child too
            gc.collect()
            gc.freeze()
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # a DataLoader worker's situation: forked after the dataset was built
            generator = torch.Generator().manual_seed(0)
            for _ in range(100):
                data[torch.randint(len(data), (256,), generator=generator)]
            gc.collect()
            os.write(write, str(_memory_kib(os.getpid(), ("Private_Clean", "Private_Dirty"))).encode())
            os._exit(0)
        os.close(write)
        figures[name] = int(os.read(read, 64)) / 1024
        os.close(read)
        os.waitpid(child, 0)
    gc.unfreeze()
    return figures


def open_clips(pattern: str, pairs: int, args: Namespace) -> dict[str, float]:
    import open_clip
    from open_clip_train.data import get_wds_dataset

    options = Namespace(train_data=pattern, train_num_samples=pairs, dataset_resampled=False,
                        train_data_upsampling_factors=None, seed=0, batch_size=args.batch_size, world_size=1,
                        workers=args.workers)
    preprocess = open_clip.image_transform(args.image_size, is_train=True)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=16)
    info = get_wds_dataset(options, preprocess, is_train=True, tokenizer=tokenizer)
    return measure(info.dataloader, args.batch_size, args.steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("data/shards_scale"))
    parser.add_argument("--ours-only", action="store_true", help="skip open_clip's pipeline")
    parser.add_argument("--index", action="store_true",
                        help="also the index figures in one process (scan vs cache, dataset memory, a forked child)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for pairs in args.pairs:
        start = time.perf_counter()
        pattern = write_pairs(args.cache / str(pairs), pairs)
        written = time.perf_counter() - start
        result = {"pairs": pairs, "write_s": written}
        if args.index:  # first: the forked child meets the heap of a process that has only built the dataset
            result["index"] = index_figures(pattern, args.image_size)
        result["ours"] = ours(pattern, args)
        if not args.ours_only:
            result["open_clip"] = open_clips(pattern, pairs, args)
            result["throughput_ratio"] = result["ours"]["pairs_per_s"] / result["open_clip"]["pairs_per_s"]
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
