"""Per-layer summary of a Model: shapes, MACs, parameter and activation bytes."""

from .graph import Conv2D


def _op_detail(op):
    if isinstance(op, Conv2D):
        kh, kw = op.weight.shape[1], op.weight.shape[2]
        return f"{kh}x{kw}/s{op.stride[0]}" + (" dw" if op.depthwise else "")
    return ""


def summarize(model):
    """dict with 'layers' (one row per op: name, kind, detail, input/output
    shapes, macs, param_bytes, activation_bytes = output tensor bytes) and
    'totals' (macs, param_bytes, largest single-op in+out activation bytes,
    the naive lower bound of an inference arena)."""
    rows = []
    for op in model.ops:
        out = model.tensors[op.output]
        ins = [model.tensors[n] for n in op.inputs]
        rows.append({
            "name": op.name, "kind": op.kind, "detail": _op_detail(op),
            "input_shapes": [list(t.shape) for t in ins], "output_shape": list(out.shape),
            "macs": op.macs(model), "param_bytes": op.param_bytes(),
            "activation_bytes": out.nbytes,
            "in_out_bytes": out.nbytes + sum(t.nbytes for t in ins),
        })
    totals = {
        "ops": len(rows),
        "macs": sum(r["macs"] for r in rows),
        "param_bytes": sum(r["param_bytes"] for r in rows),
        "peak_in_out_activation_bytes": max((r["in_out_bytes"] for r in rows), default=0),
        "input_shape": list(model.input.shape), "output_shape": list(model.output.shape),
    }
    return {"model": model.name, "layers": rows, "totals": totals}


def _fmt_shape(shape):
    return "x".join(str(s) for s in shape[1:])


def format_table(summary):
    """Human-readable table of summarize()'s result."""
    head = f"{'#':>3}  {'layer':<24} {'kind':<15} {'detail':<10} {'input':>12} {'output':>12} {'MACs':>11} {'params B':>9} {'act B':>8}"
    lines = [f"model {summary['model']}", head, "-" * len(head)]
    for i, r in enumerate(summary["layers"]):
        lines.append(f"{i:>3}  {r['name'][:24]:<24} {r['kind']:<15} {r['detail']:<10} "
                     f"{_fmt_shape(r['input_shapes'][0]):>12} {_fmt_shape(r['output_shape']):>12} "
                     f"{r['macs']:>11,} {r['param_bytes']:>9,} {r['activation_bytes']:>8,}")
    t = summary["totals"]
    lines.append("-" * len(head))
    lines.append(f"total: {t['ops']} ops, {t['macs']:,} MACs, {t['param_bytes']:,} parameter bytes (int8 weights + int32 biases), "
                 f"largest op input+output {t['peak_in_out_activation_bytes']:,} bytes")
    return "\n".join(lines)
