"""The tinyqt command line: `tinyqt --version`, `tinyqt info MODEL [--json]`.

Each subcommand is a small function registered in _COMMANDS; errors from
tinyqt print one line to stderr and exit with status 2.
"""
import argparse
import json
import os
import sys

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


_COMMANDS = [_add_info]


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
