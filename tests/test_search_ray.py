"""The contribution analysis on a local Ray cluster gives the same results as
on local processes (the jobs are seeded, so the oracle is exact equality)."""
import os
import sys

import numpy as np
import pytest

from tinyqt.search import analyze_contributions, contribution_jobs, split_holdout

from conftest import shared_model_json

ray = pytest.importorskip("ray", reason="Ray is the optional cluster extra (pip install 'tinyqt[cluster]')")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
    yield
    ray.shutdown()


def test_ray_executor_matches_local_processes(local_ray, tmp_path):
    path = shared_model_json("mbv2-w0.35")
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (8, 128, 128, 3), dtype=np.int8)
    y = rng.integers(0, 3, 8)
    data = split_holdout(x, y, fraction=0.25)
    jobs = contribution_jobs(51, layers=[48], max_bias_k=1, ratios=(0.5,))
    on_ray = analyze_contributions(path, data, jobs, str(tmp_path / "ray.json"), num_classes=3,
                                   executor="ray", progress=False)
    local = analyze_contributions(path, data, jobs, str(tmp_path / "local.json"), num_classes=3, workers=2,
                                  progress=False)
    assert on_ray == local and len(on_ray) == len(jobs)
