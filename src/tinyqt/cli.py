"""The tinyqt command line: `tinyqt --version`, `tinyqt info MODEL [--json]`.

Each subcommand is a small function registered in _COMMANDS; errors from
tinyqt print one line to stderr and exit with status 2.
"""
import argparse
import json
import os
import sys

import numpy as np

from . import __version__
from .errors import TinyQTError


def load_model_file(path):
    """A Model from a tiny-training .json or an int8 .tflite file."""
    if not os.path.exists(path):
        raise TinyQTError(f"{path}: no such file")
    if path.endswith(".json"):
        from .tiny_training import load_tiny_training
        return load_tiny_training(path)
    if path.endswith(".tflite"):
        from .tflite_io import load_tflite
        return load_tflite(path)
    raise TinyQTError(f"{path}: unknown model format (expected .json from tiny-training or .tflite)")


def cmd_info(args):
    from .summary import format_table, summarize
    summary = summarize(load_model_file(args.model_file))
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_table(summary))
    return 0


def _add_info(sub):
    p = sub.add_parser("info", help="print every layer with shapes, MACs, parameter and activation bytes")
    p.add_argument("model_file", metavar="MODEL_FILE", help="tiny-training .json (+ .npz beside it) or int8 .tflite")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_info)


def _model_from_args(args):
    """--model NAME (zoo architecture at --resolution/--classes, random
    initialization unless --weights gives a json export) or --model-file FILE
    (.json tiny-training export or .tflite)."""
    if getattr(args, "model_file", None):
        return load_model_file(args.model_file)
    if not getattr(args, "model", None):
        raise TinyQTError("give --model NAME or --model-file FILE")
    from . import zoo
    return zoo.build(args.model, resolution=args.resolution, num_classes=args.classes or 1000,
                     weights=getattr(args, "weights", None))


def cmd_plan(args):
    from .compiler import BudgetExceededError, compile
    model = _model_from_args(args)
    try:
        plan = compile(model, args.scheme, sram=args.sram, flash=args.flash, num_classes=args.classes,
                       speed_sram=args.speed_sram)
        fits = True
    except BudgetExceededError as e:
        plan, fits = e.plan, False
    report = plan.to_json()
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['model']} / {report['scheme']}: peak SRAM {report['peak_sram_bytes']:,} B, "
              f"Flash {report['flash_bytes']:,} B, {report['trainable_params']:,} trainable parameters, "
              f"{report['steps']} steps, {'fits' if fits else 'does NOT fit'} "
              f"(SRAM budget {report['sram_budget']}, Flash budget {report['flash_budget']})")
        print("live at the peak:")
        for t in report["live_at_peak"]:
            print(f"  {t['bytes']:>9,}  {t['kind']:<10} {t['name']}")
    return 0 if fits else 1


def _add_model_args(p):
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="zoo architecture: mcunet-5fps, mbv2-w0.35, proxyless-w0.3")
    g.add_argument("--model-file", help="tiny-training .json or int8 .tflite")
    p.add_argument("--weights", help="with --model: a tiny-training .json export of that architecture "
                   "(e.g. the ImageNet weights); default: random initialization")
    p.add_argument("--resolution", type=int, default=128, help="input resolution of a zoo model")
    p.add_argument("--classes", type=int, default=None, help="classes of the trained head")


def _add_speed_sram(p):
    p.add_argument("--speed-sram", default="0", metavar="BYTES",
                   help="SRAM the plan's peak may grow by to run faster kernels (planar depthwise rings, "
                   "wider backward tiles and fp32 saved inputs where the plan has no room for them), "
                   "e.g. 64KB; default 0")


def _add_plan(sub):
    p = sub.add_parser("plan", help="compile a training step and report its memory plan")
    _add_model_args(p)
    p.add_argument("--scheme", required=True, help="bias-only:K, last:K, full, paper:NNkb or a scheme .json")
    p.add_argument("--sram", default="256KB", help="SRAM budget (default 256KB)")
    p.add_argument("--flash", default="1MB", help="Flash budget (default 1MB)")
    _add_speed_sram(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_plan)


def cmd_train(args):
    import time

    from .compiler import compile
    from .data import load_dataset, to_model_input
    from .trainer import Trainer
    model = _model_from_args(args)
    ds = load_dataset(args.data)
    classes = args.classes or ds.num_classes
    plan = compile(model, args.scheme, sram=args.sram, flash=args.flash, num_classes=classes,
                   momentum=args.momentum, rounding=args.rounding, accumulate=args.accumulate > 1)
    rng = np.random.default_rng(args.seed)
    train_idx = rng.permutation(len(ds.y_train))[:args.train_limit or None]
    test_idx = np.arange(len(ds.y_test))[:args.test_limit or None]
    x_train = to_model_input(ds.x_train[train_idx], model.input)
    y_train = ds.y_train[train_idx]
    trainer = Trainer(plan, model, lr=args.lr, head_lr=args.head_lr, rounding=args.rounding, momentum=args.momentum,
                      qas=not args.no_qas, seed=args.seed, progress=not args.json, accumulate=args.accumulate)
    t0 = time.perf_counter()
    trainer.fit(x_train, y_train, epochs=args.epochs)
    seconds = time.perf_counter() - t0
    x_test = to_model_input(ds.x_test[test_idx], model.input)
    n_eval = min(len(y_train), args.test_limit or len(y_train))
    report = {
        "model": model.name, "scheme": plan.scheme_name, "data": args.data,
        "test_accuracy": trainer.evaluate(x_test, ds.y_test[test_idx]),
        "train_accuracy": trainer.evaluate(x_train[:n_eval], y_train[:n_eval]),
        "steps": trainer.runtime.steps_done, "seconds": round(seconds, 2),
        "peak_sram_bytes": plan.peak_sram_bytes, "final_epoch_loss": trainer.history[-1],
    }
    if args.checkpoint:
        trainer.save_checkpoint(args.checkpoint)
    if args.json:
        print(json.dumps(report))
    else:
        print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items()))
    return 0


def _add_train(sub):
    p = sub.add_parser("train", help="fine-tune on the host with the device's arithmetic (batch 1)")
    _add_model_args(p)
    p.add_argument("--data", required=True, help="fashion-mnist, a folder of IDX files, or an .npz "
                   "with x_train, y_train, x_test, y_test")
    p.add_argument("--scheme", required=True, help="bias-only:K, last:K, full, paper:NNkb or a scheme .json")
    p.add_argument("--epochs", type=int, default=1)
    _add_optimizer_args(p)
    p.add_argument("--no-qas", action="store_true", help="the no-QAS baseline (raw integer gradients)")
    p.add_argument("--accumulate", type=int, default=1, metavar="N",
                   help="apply the mean gradient of every N images (fp32 sums in the arena; host only)")
    p.add_argument("--train-limit", type=int, default=0, help="train on a random subset of this size")
    p.add_argument("--test-limit", type=int, default=0, help="evaluate on the first N test images")
    p.add_argument("--sram", default="256KB")
    p.add_argument("--flash", default="1MB")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="write the trained tensors to this .npz")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_train)


def _add_optimizer_args(p):
    """--lr, --head-lr, --momentum, --rounding: tinyqt.optim.SGD's options
    (the plan is compiled with room for the state they need)."""
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--head-lr", type=float, default=None, help="learning rate of the fp32 head (default: --lr)")
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--rounding", default="nearest", choices=["nearest", "stochastic", "master"],
                   help="sub-LSB weight updates: round to nearest, stochastic, or an fp32 master copy")


def _optimizer(args):
    from .optim import SGD
    return SGD(args.lr, head_lr=args.head_lr, rounding=args.rounding, momentum=args.momentum)


def cmd_firmware(args):
    from .codegen import run_firmware
    from .compiler import compile
    model = _model_from_args(args)
    plan = compile(model, args.scheme, sram=args.sram, flash=args.flash, num_classes=args.classes or 10,
                   momentum=args.momentum, rounding=args.rounding, speed_sram=args.speed_sram)
    report = run_firmware(plan, model, _optimizer(args), args.target, steps=args.steps,
                          out_dir=args.out, profile=args.profile)
    report.update(model=model.name, scheme=plan.scheme_name)
    if args.json:
        print(json.dumps(report))
    else:
        prof = report.pop("per_step_instructions", None)
        print(", ".join(f"{k} {v}" for k, v in report.items()))
        if prof:
            total = sum(prof.values())
            print("instructions per plan step (largest first):")
            for name, n in sorted(prof.items(), key=lambda kv: -kv[1])[:args.top]:
                print(f"  {n:>12,}  {100 * n / total:5.1f}%  {name}")
    return 0 if report["bitexact"] else 1


def _add_firmware(sub):
    p = sub.add_parser("firmware", help="build the training firmware, run it in QEMU, compare with the host")
    _add_model_args(p)
    p.add_argument("--scheme", required=True)
    p.add_argument("--target", required=True, help="cortex-m4, cortex-m7 or cortex-m55 (QEMU boards)")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--run", choices=["qemu"], default="qemu", help="where to run (QEMU)")
    _add_optimizer_args(p)
    p.add_argument("--sram", default="256KB")
    p.add_argument("--flash", default="1MB")
    _add_speed_sram(p)
    p.add_argument("--out", help="keep the generated sources and the ELF here")
    p.add_argument("--profile", action="store_true", help="per plan step instruction counts (slow layers first)")
    p.add_argument("--top", type=int, default=25, help="with --profile: how many steps to list")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_firmware)


def cmd_codegen(args):
    from .compiler import compile
    from .firmware_project import write_project
    model = _model_from_args(args)
    plan = compile(model, args.scheme, sram=args.sram, flash=args.flash, num_classes=args.classes or 10,
                   momentum=args.momentum, rounding=args.rounding, speed_sram=args.speed_sram)
    out = write_project(plan, model, _optimizer(args), args.out, target=args.target)
    print(f"wrote {out}: arena {plan.peak_sram_bytes:,} B; build with `make -C {out}` "
          f"(TARGET={args.target}), run in QEMU with `make -C {out} run`")
    return 0


def _add_codegen(sub):
    p = sub.add_parser("codegen", help="write a self-contained firmware folder for a training plan")
    _add_model_args(p)
    p.add_argument("--scheme", required=True)
    p.add_argument("--target", default="cortex-m4",
                   help="cortex-m4, cortex-m7, cortex-m55, cortex-m0plus or stm32f746 (the Makefile's default)")
    p.add_argument("--out", required=True, help="folder to write")
    _add_optimizer_args(p)
    p.add_argument("--sram", default="256KB")
    p.add_argument("--flash", default="1MB")
    _add_speed_sram(p)
    p.set_defaults(func=cmd_codegen)


def cmd_search(args):
    from .compiler import body_convs
    from .data import load_dataset, to_model_input
    from .search import (analyze_contributions, contribution_jobs, contributions, evolutionary_search,
                         scheme_to_json, split_holdout, update_memory_bytes)
    from .compiler.plan import parse_bytes
    if not args.model_file or not args.model_file.endswith(".json"):
        raise TinyQTError("search needs --model-file with a tiny-training .json (the workers reload it)")
    model = load_model_file(args.model_file)
    ds = load_dataset(args.data)
    classes = args.classes or ds.num_classes
    idx = np.random.default_rng(args.seed).permutation(len(ds.y_train))[:args.limit or None]
    data = split_holdout(to_model_input(ds.x_train[idx], model.input), ds.y_train[idx], seed=args.seed)
    n = len(body_convs(model))
    layers = range(max(0, n - args.layers), n)
    jobs = contribution_jobs(n, layers=layers, max_bias_k=min(n, args.max_bias_k or n))
    cache = args.cache or os.path.splitext(os.path.basename(args.model_file))[0] + ".contributions.json"
    results = analyze_contributions(args.model_file, data, jobs, cache, lr=args.lr, epochs=args.epochs,
                                    seed=args.seed, num_classes=classes, workers=args.workers,
                                    executor=args.executor, progress=not args.json)
    bias, weight = contributions(results, jobs)
    budget = parse_bytes(args.update_budget) if args.update_budget else None
    scheme, gain, plan = evolutionary_search(model, bias, weight, sram=args.sram, flash=args.flash,
                                             num_classes=classes, seed=args.seed, update_budget=budget)
    report = dict(scheme_to_json(scheme, plan), predicted_gain=gain, contributions_cache=cache,
                  update_memory_bytes=update_memory_bytes(model, scheme))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(scheme_to_json(scheme, plan), f, indent=1)
    print(json.dumps(report) if args.json else
          f"{scheme.name}: bias_k {scheme.bias_k}, weights {scheme.weights}, peak SRAM {plan.peak_sram_bytes:,} B, "
          f"predicted gain {gain:+.4f} (use it with --scheme {args.out or 'FILE'})")
    return 0


def _add_search(sub):
    p = sub.add_parser("search", help="contribution analysis + evolutionary search of a sparse-update scheme")
    _add_model_args(p)
    p.add_argument("--data", required=True)
    p.add_argument("--sram", default="256KB")
    p.add_argument("--flash", default="1MB")
    p.add_argument("--update-budget", help="also bound the update's memory as the paper counts it "
                   "(trained weights + their saved inputs + trained biases), e.g. 100KB")
    p.add_argument("--layers", type=int, default=30, help="analyze the weights of the last N convs")
    p.add_argument("--max-bias-k", type=int, default=0, help="analyze bias-only up to the last K convs (default all)")
    p.add_argument("--limit", type=int, default=2000, help="images of the training set used (held-out split inside)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--executor", default="process", choices=["process", "ray"])
    p.add_argument("--cache", help="contribution cache (JSON; resumes an interrupted analysis)")
    p.add_argument("--out", help="write the scheme here (usable as --scheme FILE)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)


def cmd_demo(args):
    from .demo import run_demo
    log = (lambda *a: None) if args.json else print
    report = run_demo(out_dir=args.out, scheme=args.scheme, epochs=args.epochs, lr=args.lr, sram=args.sram,
                      train_limit=args.train_limit, qemu=args.qemu, qemu_target=args.target,
                      qemu_steps=args.qemu_steps, progress=not args.json, log=log)
    if args.json:
        print(json.dumps(report))
    ok = report["qemu"] is None or report["qemu"]["bitexact"]
    return 0 if ok else 1


def _add_demo(sub):
    from .demo import DEFAULT_SCHEME
    p = sub.add_parser("demo", help="the whole journey on embedded data: compile, train, plot, run in QEMU")
    p.add_argument("--out", default="tinyqt-demo", help="folder for the plot and the firmware (default tinyqt-demo)")
    p.add_argument("--scheme", default=DEFAULT_SCHEME, help=f"update scheme (default {DEFAULT_SCHEME})")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--sram", default="256KB")
    p.add_argument("--train-limit", type=int, default=0, help="train on the first N embedded images only")
    p.add_argument("--qemu", choices=["auto", "yes", "no"], default="auto",
                   help="run the same training steps as firmware in QEMU (auto: when the tools are there)")
    p.add_argument("--target", default="cortex-m4", help="QEMU target for the firmware run")
    p.add_argument("--qemu-steps", type=int, default=8, help="training steps run in QEMU")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_demo)


_COMMANDS = [_add_demo, _add_info, _add_plan, _add_train, _add_codegen, _add_firmware, _add_search]


def build_parser():
    parser = argparse.ArgumentParser(prog="tinyqt", description="On-device training for microcontrollers.")
    parser.add_argument("--version", action="version", version=f"tinyqt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except TinyQTError as e:
        print(f"tinyqt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
