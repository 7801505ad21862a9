"""docs/extending.md runs: a method, a sampler, a data source and an evaluation defined outside the package.

The page's ``python`` blocks are executed in order in one module (so the page
is the code under test); its variants are unregistered afterwards so that no
other test sees them.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastive_seq.config import ConfigError
from contrastive_seq.experiments.run import build_experiment, config_from_mapping
from contrastive_seq.experiments.sections import DataConfig, EvaluationConfig, MethodConfig, NoEvaluation

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
REGISTERED = ((DataConfig, "npy_images"), (MethodConfig, "cosine_margin"), (EvaluationConfig, "nearest_centroid"))


def page_blocks() -> list[str]:
    """The ``python`` code blocks of docs/extending.md, in order."""
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


@pytest.fixture(scope="module")
def page() -> Iterator[types.ModuleType]:
    """docs/extending.md executed as a module (registered in ``sys.modules``: dataclasses resolve hints there)."""
    for section, name in REGISTERED:
        assert name not in section.variants, f"{section.__name__} already has a variant {name!r}"
    module = types.ModuleType("docs_extending_page")
    sys.modules[module.__name__] = module
    torch.manual_seed(0)
    try:
        for block in page_blocks():
            exec(compile(block, str(PAGE), "exec"), module.__dict__)
        yield module
    finally:
        for section, name in REGISTERED:
            if name in section.variants:
                section.unregister(name)
        del sys.modules[module.__name__]
        if "folder" in module.__dict__:
            shutil.rmtree(module.folder, ignore_errors=True)


def test_the_page_has_a_block_per_piece_and_per_way_of_training():
    blocks = page_blocks()
    for definition in ("class NpyImages", "class NeighbourSampler", "class CosineMarginCLR",
                       "class CosineMarginMethod", "class NearestCentroidEvaluation",
                       "Trainer(", "run_experiment(", "main(["):
        assert sum(definition in block for block in blocks) == 1, definition


def test_the_pieces_train_from_python_and_report_a_table(page):
    losses = [record["loss"] for record in page.trainer.history if "loss" in record]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert page.trainer.step == 20
    assert set(page.python_results) == {"random encoder", "trained"}
    for row in page.python_results.values():
        assert 0 <= row["nearest_centroid_accuracy"] <= 1


def test_the_registered_variants_train_from_a_config_mapping_and_from_yaml(page):
    assert set(page.config_results) == {"random encoder", "trained"}
    run = page.folder / "run"
    stored = json.loads((run / "results.json").read_text())
    assert stored["results"] == page.config_results
    assert stored["config"]["method"] == {"name": "cosine_margin", "temperature": 0.2, "margin": 0.2, "neighbours": 3}
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluated = [record["step"] for record in logged if "nearest_centroid_accuracy" in record.get("eval", {})]
    assert evaluated == [5, 10]  # during_training, every train.eval_every steps
    assert page.exit_status == 0
    cli_run = page.folder / "cli_run"
    # no evaluation section: the data's default evaluation ran
    assert set(json.loads((cli_run / "results.json").read_text())["results"]) == {"random encoder", "trained"}
    assert json.loads((cli_run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 8  # train.max_steps=8


def test_cosine_margin_infonce_matches_the_formula_row_by_row(page):
    generator = torch.Generator().manual_seed(1)
    query, positive = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    temperature, margin = 0.3, 0.25
    rows = []
    for i in range(6):
        logits = []
        for j in range(6):
            cosine = torch.dot(query[i], positive[j]) / (query[i].norm() * positive[j].norm())
            logits.append((cosine - (margin if i == j else 0.0)) / temperature)
        logits = torch.stack(logits)
        rows.append(torch.logsumexp(logits, 0) - logits[i])
    expected = torch.stack(rows).mean()
    assert torch.allclose(page.cosine_margin_infonce(query, positive, temperature, margin), expected, atol=1e-6)
    # the margin makes the positive harder: the loss grows with it
    assert page.cosine_margin_infonce(query, positive, temperature, 0.5) > page.cosine_margin_infonce(
        query, positive, temperature, 0.0
    )


def test_the_neighbour_sampler_draws_by_its_definition(page):
    inputs = torch.randn(30, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    sampler = page.NeighbourSampler.nearest(inputs, k=4)
    flat = inputs.flatten(1)
    for i in range(30):  # the table: the 4 nearest other samples, by a loop over all of them
        distances = [(float((flat[i] - flat[j]).norm()), j) for j in range(30) if j != i]
        assert set(sampler.table[i].tolist()) == {j for _, j in sorted(distances)[:4]}
    pairs = sampler.sample(25, torch.Generator().manual_seed(3))
    assert len(set(pairs.reference.tolist())) == 25
    for reference, positive in zip(pairs.reference.tolist(), pairs.positive[:, 0].tolist()):
        assert positive in sampler.table[reference].tolist()
    again = sampler.sample(25, torch.Generator().manual_seed(3))
    assert torch.equal(pairs.reference, again.reference) and torch.equal(pairs.positive, again.positive)
    with pytest.raises(ValueError, match="batch_size=31 exceeds the 30 samples available without replacement"):
        sampler.sample(31, torch.Generator())
    with pytest.raises(ValueError, match=r"table must hold indices in \[0, 2\)"):
        page.NeighbourSampler(torch.tensor([[1], [2]]))
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 29\]"):
        page.NeighbourSampler.nearest(inputs, k=30)


def test_bad_settings_of_the_registered_variants_are_config_errors_before_training(page, tmp_path):
    sections = {key: dict(value) for key, value in page.sections.items()}
    sections["method"]["margin"] = 3.0
    with pytest.raises(ConfigError, match=r"method\.margin must lie in \[0, 2\)"):
        build_experiment(config_from_mapping(sections))
    sections["method"] = {"name": "cosine_margin", "neighbours": 500}
    with pytest.raises(ConfigError, match=r"method\.neighbours must be an int in \[1, 119\], got 500"):
        build_experiment(config_from_mapping(sections))
    np.save(tmp_path / "flat.npy", np.zeros((10, 64), dtype=np.float32))
    sections["data"]["path"] = str(tmp_path / "flat.npy")
    with pytest.raises(ConfigError, match=r"flat\.npy: expected images \(n, C, H, W\), got shape \(10, 64\)"):
        build_experiment(config_from_mapping(sections))
    with pytest.raises(ConfigError, match="method.margin"):
        config_from_mapping({**page.sections, "method": {"name": "cosine_margin", "margin": "wide"}})


def test_unregister_removes_a_variant_and_names_an_unknown_one():
    @EvaluationConfig.register("extending_test_temporary")
    @dataclass
    class Temporary(NoEvaluation):
        name: str = "extending_test_temporary"

    assert EvaluationConfig.variants["extending_test_temporary"] is Temporary
    EvaluationConfig.unregister("extending_test_temporary")
    assert "extending_test_temporary" not in EvaluationConfig.variants
    with pytest.raises(KeyError, match="EvaluationConfig has no variant 'extending_test_temporary'"):
        EvaluationConfig.unregister("extending_test_temporary")
