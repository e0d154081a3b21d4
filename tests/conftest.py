"""Shared fixtures. The real-dump corpus (../shared/corpus, or $VMCOREKIT_CORPUS) is optional:
tests marked `corpus` skip when it is absent. Its ELF dumps ship zstd-compressed; each is
decompressed once into a cache folder ($VMCOREKIT_CACHE, default the system temp dir)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
CASES = ["qmp-kaslr", "qmp-nokaslr", "kdump-kaslr"]


def corpus_root() -> Path | None:
    p = Path(os.environ.get("VMCOREKIT_CORPUS", REPO.parent / "shared" / "corpus"))
    return p if (p / "README.md").exists() or any(p.glob("*/vmcoreinfo.txt")) else None


def cache_dir() -> Path:
    d = Path(os.environ.get("VMCOREKIT_CACHE", Path(tempfile.gettempdir()) / "vmcorekit-test-cache"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def decompressed_elf(case_dir: Path) -> Path:
    """The case's uncompressed ELF dump, made once and kept in the cache."""
    src = case_dir / "vmcore.elf.zst"
    dst = cache_dir() / f"{case_dir.name}.elf"
    stamp = f"{src.stat().st_size}-{int(src.stat().st_mtime)}"
    mark = dst.with_suffix(".ok")
    if dst.exists() and mark.exists() and mark.read_text() == stamp:
        return dst
    import zstandard

    tmp = dst.with_suffix(".part")
    with open(src, "rb") as fi, open(tmp, "wb") as fo:
        zstandard.ZstdDecompressor(max_window_size=1 << 31).copy_stream(fi, fo, write_size=1 << 22)
    os.replace(tmp, dst)
    mark.write_text(stamp)
    return dst


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if corpus_root() is None:
        skip = pytest.mark.skip(reason="corpus not found (set VMCOREKIT_CORPUS)")
        for item in items:
            if "corpus" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    root = corpus_root()
    if root is None:
        pytest.skip("corpus not found (set VMCOREKIT_CORPUS)")
    return root


@pytest.fixture(scope="session", params=CASES)
def corpus_case(request: pytest.FixtureRequest, corpus_dir: Path) -> Path:
    """The folder of one corpus case (vmcoreinfo.txt, vmcore.c-d31.kdump, expected/)."""
    d = corpus_dir / request.param
    if not d.exists():
        pytest.skip(f"corpus case {request.param} absent")
    return d


@pytest.fixture(scope="session")
def corpus_elf(corpus_case: Path) -> Path:
    """The decompressed ELF dump of the current corpus case."""
    return decompressed_elf(corpus_case)


@pytest.fixture(scope="session")
def sample_dump() -> Path:
    """The small real dump shipped in the repo (samples/)."""
    found = sorted(p for p in SAMPLES.glob("*") if p.suffix in (".kdump", ".elf", ".zst") or "kdump" in p.name)
    if not found:
        pytest.skip("no sample dump in samples/")
    return found[0]


# Hypothesis: CI runs are derandomized (a failure reproduces on the next run and on a
# developer's machine); `--hypothesis-profile=hunt` searches without shrinking, for long
# bug hunts outside CI.
from hypothesis import HealthCheck, Phase, settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("hunt", deadline=None, print_blob=True,
                          phases=[Phase.explicit, Phase.generate, Phase.target])
if os.environ.get("CI"):
    settings.load_profile("ci")
