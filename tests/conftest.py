"""Fixtures shared by the book's tests."""
from pathlib import Path

import pytest

from isa_lib import runner

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project_book(tmp_path_factory) -> Path:
    """The project's book built once per session, strictly (any Sphinx warning fails), from the committed
    executed chapters into a temporary folder; returns its ``_build/html`` folder."""
    missing = [c.name for c in runner.chapters(ROOT) if not c.output(ROOT).exists()]
    assert not missing, f"chapters never executed (run `isa-vae run NAME`): {missing}"
    out = tmp_path_factory.mktemp("book")
    index = runner.build_book(ROOT, output_dir=out, quiet=True, strict=True)
    assert index.exists()
    return index.parent


#: Tests in files this conftest does not own that take minutes on a loaded 2-core machine (they start Ray,
#: SIGKILL whole sweeps, or compile kernels with torch.compile), by module and name prefix, chosen from the
#: durations of a whole run at load 11-15 (sweep kills 317 and 311 s, Ray sweep 206 s, compiled KL 185 s,
#: SIGKILL and resume 105 s); the chapters run by nbval (notebooks/*.py) are slow too. `pytest tests -m "not slow"` leaves them out (README, Tests).
SLOW = {
    "test_sweep_kill.py": ("",),
    "test_experiments.py": ("test_ray_sweep", "test_sigkill_mid_sweep_then_resume"),
    "test_aggregate_posterior.py": ("test_decomposed_kl_is_the_same_estimate_with_every_kernel[compiled",
                                    "test_training_with_a_fast_kernel_follows_the_dense_one[compiled"),
    "test_ledger.py": ("test_a_lost_ray_task",),
}


def pytest_collection_modifyitems(config, items):
    """Mark the slow tests that cannot carry the decorator themselves (see SLOW) and every notebook item."""
    for item in items:
        path = Path(str(item.fspath))
        prefixes = SLOW.get(path.name, ())
        if path.suffix == ".py" and path.parent.name == "notebooks" or any(
                item.name.startswith(p) for p in prefixes):
            item.add_marker(pytest.mark.slow)
