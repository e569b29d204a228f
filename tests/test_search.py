"""Sparse-update search: cached parallel contribution analysis and the
evolutionary search under the compiled plan's real peak."""
import json

import numpy as np
import pytest

import tinyqt
from tinyqt.compiler import compile
from tinyqt.schemes import parse_scheme
from tinyqt.search import (analyze_contributions, contribution_jobs, contributions, evolutionary_search,
                           split_holdout)

from conftest import shared_model_json


@pytest.fixture(scope="module")
def mcunet():
    return tinyqt.load_tiny_training(shared_model_json("mcunet-5fps"))


def test_search_respects_the_real_memory_plan(mcunet):
    rng = np.random.default_rng(0)
    n = 42
    bias_gain = {k: 0.02 * np.log1p(k) for k in range(1, n + 1)}
    weight_gain = {(i, r): float(rng.uniform(0, 0.03)) * r ** 0.5 * (i / n) for i in range(15, n) for r in (1, .5, .25, .125)}
    scheme, gain, plan = evolutionary_search(mcunet, bias_gain, weight_gain, sram="200KB", num_classes=10,
                                             population=16, generations=12, seed=1)
    assert plan.peak_sram_bytes <= 200 * 1024
    assert compile(mcunet, scheme, num_classes=10).peak_sram_bytes == plan.peak_sram_bytes
    # better than the best bias-only scheme that fits, and than the paper's 49kb scheme when it fits
    best_bias = max(g for k, g in bias_gain.items()
                    if compile(mcunet, f"bias-only:{k}", num_classes=10).peak_sram_bytes <= 200 * 1024)
    assert gain >= best_bias
    paper = parse_scheme("paper:49kb", "mcunet-5fps", n)
    if compile(mcunet, paper, num_classes=10).peak_sram_bytes <= 200 * 1024:
        paper_gain = bias_gain[paper.bias_k] + sum(weight_gain.get((i, r), 0) for i, r in paper.weights.items())
        assert gain >= paper_gain


def test_searched_scheme_is_usable_as_a_scheme_file(mcunet, tmp_path):
    from tinyqt.search import scheme_to_json
    scheme, _, plan = evolutionary_search(mcunet, {k: 0.01 * k for k in range(1, 43)},
                                          {(30, 0.5): 0.2, (39, 0.25): 0.1}, sram="256KB", num_classes=10,
                                          population=8, generations=4, seed=2)
    path = tmp_path / "searched.json"
    path.write_text(json.dumps(scheme_to_json(scheme, plan)))
    again = parse_scheme(str(path), "mcunet-5fps", 42)
    assert again.bias_k == scheme.bias_k and again.weights == scheme.weights
    assert compile(mcunet, again, num_classes=10).peak_sram_bytes == plan.peak_sram_bytes


def test_contribution_analysis_runs_in_parallel_and_resumes(tmp_path):
    path = shared_model_json("mbv2-w0.35")
    model = tinyqt.load_tiny_training(path)
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (10, 128, 128, 3), dtype=np.int8)
    y = rng.integers(0, 3, 10)
    data = split_holdout(x, y, fraction=0.3)
    jobs = contribution_jobs(51, layers=[48], max_bias_k=2, ratios=(1.0, 0.125))
    cache = tmp_path / "contrib.json"
    res = analyze_contributions(path, data, jobs, str(cache), num_classes=3, workers=2, progress=False)
    assert len(res) == len(jobs) and all(0 <= a <= 1 for a in res.values())
    assert len(json.loads(cache.read_text())) == len(jobs)
    # resumes from the cache: nothing left to run, so no executor is even needed
    again = analyze_contributions(path, data, jobs, str(cache), num_classes=3, executor="unused")
    assert again == res
    bias, weight = contributions(res, jobs)
    assert set(bias) == {1, 2} and set(weight) == {(48, 1.0), (48, 0.125)}
    del model


def test_search_cli_writes_a_usable_scheme(tmp_path, capsys):
    from tinyqt.cli import main
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 16)
    images = (rng.integers(0, 80, (16, 16, 16)) + 100 * labels[:, None, None]).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x_train=images, y_train=labels, x_test=images[:4], y_test=labels[:4])
    out = tmp_path / "s.json"
    assert main(["search", "--model-file", shared_model_json("mbv2-w0.35"), "--data", str(tmp_path / "d.npz"),
                 "--layers", "1", "--max-bias-k", "2", "--limit", "16", "--sram", "256KB", "--workers", "2",
                 "--cache", str(tmp_path / "c.json"), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["peak_sram_bytes"] <= 256 * 1024
    assert main(["plan", "--model-file", shared_model_json("mbv2-w0.35"), "--scheme", str(out), "--classes", "2",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["peak_sram_bytes"] == report["peak_sram_bytes"]


def test_update_memory_counts_the_papers_small_budgets():
    # the paper names its mbv2-w0.35 schemes by this count: 49 KB and 73 KB
    from tinyqt.search import update_memory_bytes
    mbv2 = tinyqt.load_tiny_training(shared_model_json("mbv2-w0.35"))
    assert round(update_memory_bytes(mbv2, "paper:49kb") / 1024) == 49
    assert round(update_memory_bytes(mbv2, "paper:73kb") / 1024) == 73
    assert update_memory_bytes(mbv2, "bias-only:2") == 4 * (112 + 336)


def test_search_respects_an_update_budget(mcunet):
    from tinyqt.search import update_memory_bytes
    n = 42
    bias_gain = {k: 0.001 * k for k in range(1, n + 1)}
    weight_gain = {(i, r): 0.05 * r for i in range(20, n) for r in (1, .5, .25, .125)}
    scheme, _, plan = evolutionary_search(mcunet, bias_gain, weight_gain, sram="256KB", num_classes=10,
                                          population=16, generations=10, seed=4, update_budget=60 * 1024)
    assert update_memory_bytes(mcunet, scheme) <= 60 * 1024 < update_memory_bytes(mcunet, "paper:148kb")
    assert scheme.weights  # the budget leaves room for some weights
