"""Build the emoji image-caption set from Debian's ``ruby-gemojione`` package.

    python datasets/emoji/build_emoji.py --output data/emoji/emoji.h5 [--csv data/emoji/emoji.csv]

Fetches the package with ``apt-get download`` and unpacks it with ``dpkg -x``
into ``--cache`` (no Ruby needed, nothing installed), or reads an unpacked
copy given with ``--gem-root``. Every emoji with a category of at least
``--min-category-size`` members becomes one image (its 64x64 PNG) with one
or two captions made from its name, category and keywords; its category is
its label (the zero-shot classes) and its code points without skin-tone
modifiers its group (the five tones of one emoji are split together). See
``README.md`` for the dataset card.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from contrastive_seq.data.image_text import ImageTextDataset, read_image, save_image_text_hdf5

PACKAGE = "ruby-gemojione"
INDEX = Path("config") / "index.json"
PNG_FOLDER = Path("assets") / "png"
SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}  # Fitzpatrick modifiers


def fetch_gemojione(cache: Path) -> Path:
    """Download and unpack ``ruby-gemojione`` into ``cache`` (once); returns the gem's root folder."""
    unpacked = cache / "root"
    if not unpacked.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", PACKAGE], cwd=cache, check=True)
        debs = sorted(cache.glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise FileNotFoundError(f"apt-get download {PACKAGE} left no .deb in {cache}")
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(unpacked)], check=True)
    return find_gem_root(unpacked)


def find_gem_root(folder: Path) -> Path:
    """The folder under ``folder`` holding ``config/index.json`` and ``assets/png``."""
    for index in sorted(Path(folder).rglob("index.json")):
        root = index.parent.parent
        if index.parent.name == "config" and (root / PNG_FOLDER).is_dir():
            return root
    raise FileNotFoundError(f"no gemojione tree (config/index.json with assets/png/) under {folder}")


def emoji_captions(name: str, category: str, keywords: Sequence[str]) -> list[str]:
    """Captions of one emoji, each naming its category (one from its name, one from its keywords).

    ``"{name}, a {category} emoji"`` and, when it has keywords not already in
    its name, ``"a {category} emoji of {up to six keywords}"``.

    Every caption names the category, as web captions name what a picture
    shows; with the category in only some captions the names (unique to each
    emoji) carry the contrastive loss alone and zero-shot prompts such as
    ``"a people emoji"`` stay below the majority-class rate. HTML entities in
    the index (``r&eacute;publique``) are decoded.
    """
    name, keywords = html.unescape(name), [html.unescape(word) for word in keywords]
    captions = [f"{name}, a {category} emoji"]
    words = [word for word in keywords if word and word not in name.split()]
    if words:
        captions.append(f"a {category} emoji of " + ", ".join(words[:6]))
    return captions


def base_emoji(unicode: str) -> str:
    """An emoji's code points (``"1F44D-1F3FD"``) without skin-tone modifiers (``"1F44D"``): the group of its variants.

    A tone swatch on its own (``"1F3FB"``) is its own group.
    """
    points = unicode.upper().split("-")
    return "-".join(point for point in points if point not in SKIN_TONES) or "-".join(points)


def selected_entries(index_path: Path, min_category_size: int) -> list[dict]:
    """The index entries, sorted by code points, of the categories with at least ``min_category_size`` emoji."""
    entries = sorted(json.loads(index_path.read_text(encoding="utf-8")).values(), key=lambda e: e["unicode"])
    sizes = Counter(entry["category"] for entry in entries)
    return [entry for entry in entries if sizes[entry["category"]] >= min_category_size]


def build_emoji_dataset(gem_root: Path, image_size: int = 64, min_category_size: int = 10) -> ImageTextDataset:
    """Images ``(n, 3, image_size, image_size)`` uint8 with captions, category labels and groups, from an unpacked gem.

    Raises:
        FileNotFoundError: naming the index or the first missing PNG (checked before any image is read).
    """
    gem_root = Path(gem_root)
    index_path = gem_root / INDEX
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} does not exist; is {gem_root} an unpacked ruby-gemojione gem?")
    entries = selected_entries(index_path, min_category_size)
    if not entries:
        raise ValueError(f"no category in {index_path} has min_category_size={min_category_size} emoji or more")
    paths = [gem_root / PNG_FOLDER / f"{entry['unicode'].upper()}.png" for entry in entries]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} emoji images named in {index_path} are missing (first: {missing[0]})")
    class_names = sorted({entry["category"] for entry in entries})
    captions, caption_image = [], []
    for number, entry in enumerate(entries):
        own = emoji_captions(entry["name"], entry["category"], entry.get("keywords", []))
        captions += own
        caption_image += [number] * len(own)
    images = torch.stack([read_image(path, image_size) for path in paths])
    labels = torch.tensor([class_names.index(entry["category"]) for entry in entries])
    group_ids: dict[str, int] = {}
    groups = torch.tensor([group_ids.setdefault(base_emoji(entry["unicode"]), len(group_ids)) for entry in entries])
    return ImageTextDataset(images, captions, torch.tensor(caption_image), labels, class_names, groups)


def write_csv(path: Path, gem_root: Path, min_category_size: int = 10) -> None:
    """The same pairs as a CSV table (image path, caption, label, group) pointing at the PNGs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "caption", "label", "group"])
        for entry in selected_entries(gem_root / INDEX, min_category_size):
            image = (gem_root / PNG_FOLDER / f"{entry['unicode'].upper()}.png").resolve()
            for caption in emoji_captions(entry["name"], entry["category"], entry.get("keywords", [])):
                writer.writerow([str(image), caption, entry["category"], base_emoji(entry["unicode"])])


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: fetch (or find) the gem, build the HDF5 file (and optionally the CSV table)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("data/emoji/emoji.h5"), help="HDF5 file to write")
    parser.add_argument("--csv", type=Path, default=None, help="also write a CSV table of (image, caption, label, group)")
    parser.add_argument("--cache", type=Path, default=Path("data/emoji/cache"), help="where the .deb is unpacked")
    parser.add_argument("--gem-root", type=Path, default=None, help="an unpacked gem (skips the download)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--min-category-size", type=int, default=10)
    args = parser.parse_args(argv)
    gem_root = find_gem_root(args.gem_root) if args.gem_root else fetch_gemojione(args.cache)
    dataset = build_emoji_dataset(gem_root, args.image_size, args.min_category_size)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_image_text_hdf5(args.output, dataset)
    if args.csv is not None:
        write_csv(args.csv, gem_root, args.min_category_size)
    counts = Counter(dataset.labels.tolist())
    print(
        f"wrote {args.output}: {len(dataset)} images, {len(dataset.captions)} captions, "
        f"{len(dataset.class_names)} categories ({', '.join(f'{n} {counts[i]}' for i, n in enumerate(dataset.class_names))}), "
        f"{int(dataset.groups.max()) + 1} groups (an emoji with its skin tones)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
