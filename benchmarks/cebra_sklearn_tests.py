"""CEBRA's own scikit-learn tests as the judge of ``contrastive_seq.CEBRA``.

Downloads nothing but the cebra 0.6.1 source distribution (its ``tests/``
folder ships in it)::

    pip download --no-deps --no-binary :all: cebra==0.6.1

runs ``tests/test_sklearn.py --runfast -m "not slow"`` twice — once against
cebra itself, once with ``cebra.CEBRA`` (and the module attribute
``cebra.integrations.sklearn.cebra.CEBRA`` the tests reach it through)
replaced by ``contrastive_seq.CEBRA`` — and prints passed / failed for both.
Tests that reach for a private name of CEBRA (not its public API) are left
out of the second run and listed with that name.

Needs cebra 0.6.1 installed (``pip install --no-deps cebra==0.6.1`` plus
``literate-dataclasses``; torch stays as it is). The sdist lacks CEBRA's
repository-level ``conftest.py``, so a small one here defines ``--runfast``
(skip tests marked ``slow``), which is what CEBRA's does.

Usage::

    python benchmarks/cebra_sklearn_tests.py [--workdir DIR] [--only-ours] [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

VERSION = "0.6.1"

# test id pattern -> the private name of CEBRA it reaches for
PRIVATE = {
    "test_sklearn_dataset_type_index[*": "CEBRA._prepare_fit",
    "test_api[*": "CEBRA._compute_offset",
    "test_adapt_model": "CEBRA._adapt_model",
    "test_new_transform[*": "_utils_deprecated.cebra_transform_deprecated (CEBRA._select_model, offset_, solver_)",
    "test_save_and_load[*parametrized-model-5*fit_*": "cebra.models.model._OffsetModel in CEBRA's model registry",
    "test_repro_pickle_error": "cebra.models.model._OffsetModel in CEBRA's model registry",
    "test_move_cpu_to_cuda_device[*": "CEBRA.solver_ (CEBRA's solver object)",
    "test_move_cpu_to_mps_device[*": "CEBRA.solver_ (CEBRA's solver object)",
    "test_move_mps_to_cuda_device[*": "CEBRA.solver_ (CEBRA's solver object)",
    "test_cuda[*": "CEBRA.solver_ (CEBRA's solver object)",
}

CONFTEST = '''
import pytest

SWAP = {swap}


def pytest_addoption(parser):
    parser.addoption("--runfast", action="store_true", default=False, help="skip tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runfast"):
        skip = pytest.mark.skip(reason="--runfast skips slow tests")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


if SWAP:
    import cebra
    import cebra.integrations.sklearn.cebra as sklearn_cebra

    import contrastive_seq

    cebra.CEBRA = contrastive_seq.CEBRA
    sklearn_cebra.CEBRA = contrastive_seq.CEBRA
'''


def fetch_tests(workdir: Path) -> Path:
    """The ``tests/`` folder of the cebra sdist, downloaded into ``workdir`` (reused when already there)."""
    archive = workdir / f"cebra-{VERSION}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"cebra=={VERSION}",
             "-d", str(workdir)],
            check=True,
        )
    root = workdir / f"cebra-{VERSION}"
    if not root.exists():
        with tarfile.open(archive) as tar:
            tar.extractall(workdir, filter="data")
    return root / "tests"


def run(tests: Path, swap: bool, report: Path, deselect: list[str], extra: list[str]) -> dict[str, str]:
    """Run the fast sklearn tests (with or without the swap, leaving out the node ids ``deselect``).

    Returns ``{test id: outcome}``.
    """
    (tests / "conftest.py").write_text(CONFTEST.format(swap=swap))
    command = [sys.executable, "-m", "pytest", "test_sklearn.py", "--runfast", "-m", "not slow", "-q",
               "-p", "no:cacheprovider", f"--junitxml={report}", *extra]
    for node in deselect:
        command += ["--deselect", node]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                                os.environ.get("PYTHONPATH", "")])}
    subprocess.run(command, cwd=tests, env=environment, check=False)
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        states = [child.tag for child in case if child.tag in ("skipped", "failure", "error")]
        outcomes[case.get("name")] = {"skipped": "skipped", "failure": "failed", "error": "error"}.get(
            states[0] if states else "", "passed"
        )
    return outcomes


def collect(tests: Path) -> dict[str, str]:
    """``{test id: pytest node id}`` of the fast run (collected against cebra itself)."""
    (tests / "conftest.py").write_text(CONFTEST.format(swap=False))
    listing = subprocess.run(
        [sys.executable, "-m", "pytest", "test_sklearn.py", "--runfast", "-m", "not slow", "--collect-only", "-q",
         "-p", "no:cacheprovider"],
        cwd=tests, capture_output=True, text=True, check=False,
    ).stdout
    return {line.split("::", 1)[1]: line for line in listing.splitlines() if "test_sklearn.py::" in line}


def private_name(test: str) -> str | None:
    return next((name for pattern, name in PRIVATE.items() if fnmatch.fnmatchcase(test, pattern)), None)


def summary(outcomes: dict[str, str]) -> str:
    states = ("passed", "failed", "error", "skipped")
    counts = {state: sum(1 for value in outcomes.values() if value == state) for state in states}
    return ", ".join(f"{count} {state}" for state, count in counts.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None, help="where the sdist goes (default: a temporary folder)")
    parser.add_argument("--only-ours", action="store_true", help="skip the run against cebra itself")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cebra-tests-"))
    workdir.mkdir(parents=True, exist_ok=True)
    tests = fetch_tests(workdir)
    everything = collect(tests)
    if not everything:
        raise SystemExit("collected no tests from test_sklearn.py: is cebra installed?")
    left_out = {test: private_name(test) for test in everything if private_name(test)}
    theirs = {} if args.only_ours else run(tests, False, workdir / "cebra.xml", [], args.pytest_args)
    ours = run(tests, True, workdir / "ours.xml", [everything[test] for test in left_out], args.pytest_args)
    print(f"\ncebra {VERSION} tests/test_sklearn.py --runfast -m 'not slow': {len(everything)} tests")
    if theirs:
        print(f"  cebra.CEBRA:            {summary(theirs)}")
    print(f"  contrastive_seq.CEBRA:  {summary(ours)}  (of {len(everything) - len(left_out)} run)")
    public = [test for test in everything if test not in left_out and (not theirs or theirs.get(test) == "passed")]
    passing = sum(1 for test in public if ours.get(test) == "passed")
    print(f"  public-API tests that pass against cebra: {passing} / {len(public)} pass against contrastive_seq.CEBRA")
    for test in everything:
        if test not in left_out and ours.get(test) not in ("passed", "skipped"):
            print(f"  NOT PASSING: {test} ({ours.get(test)}; cebra: {theirs.get(test, 'not run')})")
    print(f"\nleft out ({len(left_out)}), each with the private name it reaches for:")
    for test, name in left_out.items():
        print(f"  {test}: {name}")


if __name__ == "__main__":
    main()
