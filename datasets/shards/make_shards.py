"""Write WebDataset shards from an image-caption table or from class folders.

    python datasets/shards/make_shards.py --table pairs.csv --output shards/pairs-%06d.tar [--label-key label]
    python datasets/shards/make_shards.py --folder images/ --output shards/images-%06d.tar

Each shard holds ``--samples-per-shard`` samples (default 10,000): the image's
own bytes, its caption (``txt``) and class number (``cls``) when there is one.
The class names go to ``classes.json`` next to the shards. The script prints
the brace pattern that reads the shards back (``ShardedImageText(pattern, ...)``,
open_clip's ``--train-data``). See ``README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from contrastive_seq.data.shard_writer import shards_from_folder, shards_from_table


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments, write the shards and print their brace pattern."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--table", type=Path, help="CSV or JSON-lines file of (image path, caption) rows")
    source.add_argument("--folder", type=Path, help="root/<class>/<image> folders")
    parser.add_argument("--output", required=True, help="shard names with a printf field, e.g. out/pairs-%%06d.tar")
    parser.add_argument("--samples-per-shard", type=int, default=10_000)
    parser.add_argument("--image-key", default="image")
    parser.add_argument("--caption-key", default="caption")
    parser.add_argument("--label-key", default=None, help="table column of class names (optional)")
    parser.add_argument("--on-missing", choices=("error", "skip"), default="error", help="rows whose image is missing")
    args = parser.parse_args(argv)
    if args.table is not None:
        shards, classes = shards_from_table(args.table, args.output, args.samples_per_shard, args.on_missing,
                                            args.image_key, args.caption_key, args.label_key)
    else:
        shards, classes = shards_from_folder(args.folder, args.output, args.samples_per_shard)
    if classes is not None:
        (shards[0].parent / "classes.json").write_text(json.dumps(classes) + "\n")
    print(f"{len(shards)} shards; read them back with: " + brace_pattern(args.output, len(shards)))


def brace_pattern(pattern: str, count: int) -> str:
    """The brace pattern naming ``pattern % 0`` ... ``pattern % (count - 1)`` (``"out/pairs-{000000..000003}.tar"``)."""
    head, tail = pattern.split("%", 1)
    field, rest = tail[: tail.index("d") + 1], tail[tail.index("d") + 1:]
    return f"{head}{{{('%' + field) % 0}..{('%' + field) % (count - 1)}}}{rest}"


if __name__ == "__main__":
    sys.exit(main())
