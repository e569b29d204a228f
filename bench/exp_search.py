"""The sparse-update search end to end (paper Sec. 2.2, issue 6's goal):
contribution analysis on a held-out split of Fashion-MNIST training images
(cached in bench/results/contrib_MODEL.json, so a rerun only searches), then
the evolutionary search under 100 KB of update memory as the paper counts it
(tinyqt.search.update_memory_bytes) and the 256 KB plan peak, timed; then the
searched scheme and the paper's published ~100 KB scheme are both
fine-tuned on the same transfer data (bench/exp_common.py) and compared.
Writes bench/results/search_MODEL.json and the searched scheme's .json.

    python bench/exp_search.py [--model mbv2-w0.35] [--workers 1]
"""
import argparse
import json
import os
import sys
import time

import tinyqt
from exp_common import (NUM_CLASSES, RESULTS, SHARED, load_model, save, train_int8, transfer_data,
                        tuned)
from tinyqt.compiler import body_convs
from tinyqt.data import load_dataset, to_model_input
from tinyqt.search import (analyze_contributions, contributions, evolutionary_search, scheme_to_json,
                           update_memory_bytes)

PAPER_100KB = {"mbv2-w0.35": "paper:99kb", "proxyless-w0.3": "paper:98kb", "mcunet-5fps": "paper:99kb"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mbv2-w0.35")
    ap.add_argument("--layers", type=int, default=18, help="analyze the weights of the last N convs")
    ap.add_argument("--ratios", type=float, nargs="+", default=[1.0, 0.25])
    ap.add_argument("--bias-ks", type=int, nargs="+", default=list(range(3, 37, 3)))
    ap.add_argument("--analysis-train", type=int, default=600)
    ap.add_argument("--analysis-val", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--budget", default=100 * 1024, type=int, help="update memory bytes (paper count)")
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.001, 0.003, 0.01])
    args = ap.parse_args(argv)
    model = load_model(args.model)
    n = len(body_convs(model))
    # the analysis uses its own images: the tail of the training set, disjoint from exp_common's subset
    ds = load_dataset("fashion-mnist")
    m = args.analysis_train + args.analysis_val
    xa = to_model_input(ds.x_train[-m:], model.input)
    ya = ds.y_train[-m:]
    split = (xa[:args.analysis_train], ya[:args.analysis_train], xa[args.analysis_train:], ya[args.analysis_train:])
    jobs = [("head",)] + [("bias", k) for k in args.bias_ks if k <= n]
    jobs += [("weight", i, r) for i in range(n - args.layers, n) for r in args.ratios]
    cache = os.path.join(RESULTS, f"contrib_{args.model}.json")
    os.makedirs(RESULTS, exist_ok=True)
    t0 = time.time()
    res = analyze_contributions(os.path.join(SHARED, args.model + ".json"), split, jobs, cache,
                                num_classes=NUM_CLASSES, workers=args.workers)
    analysis_s = time.time() - t0
    bias, weight = contributions(res, jobs)
    t0 = time.time()
    scheme, gain, plan = evolutionary_search(model, bias, weight, sram="256KB", num_classes=NUM_CLASSES,
                                             update_budget=args.budget, population=32, generations=40)
    search_s = time.time() - t0
    scheme_path = os.path.join(RESULTS, f"searched_{args.model}.json")
    with open(scheme_path, "w") as f:
        json.dump(scheme_to_json(scheme, plan), f, indent=1)
    print(f"searched in {search_s:.0f} s (analysis {analysis_s:.0f} s, cached when 0): {scheme.bias_k} biases, "
          f"{scheme.weights}, update memory {update_memory_bytes(model, scheme) / 1024:.1f} KB, "
          f"peak {plan.peak_sram_bytes / 1024:.1f} KB", flush=True)
    data = transfer_data(model, 1000, 300, 1000)
    out = {"model": args.model, "analysis_seconds": round(analysis_s, 1), "search_seconds": round(search_s, 1),
           "jobs": len(jobs), "budget_bytes": args.budget, "results": []}
    paper = PAPER_100KB[args.model]
    for name, spec in (("searched", scheme_path), (paper, paper)):
        rec = tuned(lambda lr, s=spec: train_int8(model, s, data[0], data[1], lr=lr), args.lrs, data, label=name)
        p = tinyqt.compile(model, spec, num_classes=NUM_CLASSES)
        rec.update(scheme=name, update_memory_bytes=update_memory_bytes(model, spec),
                   peak_sram_bytes=p.peak_sram_bytes)
        out["results"].append(rec)
        print(f"==> {name}: test {rec['test_accuracy']:.3f}, update memory "
              f"{rec['update_memory_bytes'] / 1024:.1f} KB, peak {p.peak_sram_bytes / 1024:.1f} KB", flush=True)
    out["searched_scheme"] = scheme_to_json(scheme, plan)
    out["searched_minus_paper_points"] = round(100 * (out["results"][0]["test_accuracy"] -
                                                      out["results"][1]["test_accuracy"]), 2)
    save(f"search_{args.model}", out)
    print(json.dumps({k: v for k, v in out.items() if k != "results"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
