"""The forward kernels under QEMU on Cortex-M4, M7 and M55, DSP and portable
paths, reproduce the host's bytes exactly; the Cortex-M0+ build links."""
import numpy as np
import pytest

from tinyqt import kernels, mcu, quant
from tinyqt.mcu.harness import KernelCall, conv_case, emit_source, parse_results

QEMU_TARGETS = ["cortex-m4", "cortex-m7", "cortex-m55"]


def _conv_cases(rng):
    cases = []
    shapes = [  # (h, w, c_in, c_out, k, stride, depthwise, mult, padding)
        (7, 5, 3, 16, 3, 2, False, 1, "same"), (9, 9, 13, 7, 5, 1, False, 1, "valid"),
        (6, 11, 4, 5, 7, 2, False, 1, "same"), (5, 5, 16, 96, 1, 1, False, 1, "valid"),
        (5, 3, 96, 16, 1, 1, False, 1, "valid"), (8, 8, 33, 70, 1, 2, False, 1, "valid"),
        (4, 4, 1, 1, 1, 1, False, 1, "valid"), (7, 7, 17, 23, 3, 1, False, 1, (0, 1, 2, 1)),
        (9, 7, 24, 24, 3, 1, True, 1, "same"), (10, 10, 48, 48, 3, 2, True, 1, "same"),
        (7, 9, 13, 13, 5, 1, True, 1, "same"), (11, 6, 5, 10, 7, 2, True, 2, "same"),
        (5, 5, 70, 70, 3, 1, True, 1, (1, 0, 1, 2)), (3, 3, 1, 2, 3, 1, True, 2, "valid"),
    ]
    for h, w, c_in, c_out, k, s, dw, mult, pad in shapes:
        x = rng.integers(-128, 128, (1, h, w, c_in), dtype=np.int8)
        c_out = c_in * mult if dw else c_out
        wt = rng.integers(-127, 128, (1, k, k, c_out) if dw else (c_out, k, k, c_in), dtype=np.int8)
        bias = rng.integers(-20000, 20000, c_out).astype(np.int32)
        m, sh = quant.conv_multipliers(0.05, rng.uniform(0.001, 0.01, c_out), 0.2)
        if pad == "same":
            tot_h, tot_w = max((-(-h // s) - 1) * s + k - h, 0), max((-(-w // s) - 1) * s + k - w, 0)
            padding = (tot_h // 2, tot_w // 2, tot_h - tot_h // 2, tot_w - tot_w // 2)
        elif pad == "valid":
            padding = (0, 0, 0, 0)
        else:
            padding = pad
        args = dict(stride=(s, s), padding=padding, input_offset=int(rng.integers(-127, 129)),
                    output_offset=int(rng.integers(-128, 128)), act_min=-128 + int(rng.integers(0, 20)),
                    act_max=127 - int(rng.integers(0, 20)), depthwise=dw)
        y = kernels.conv2d(x, wt, bias, m, sh, **args)
        cases.append(conv_case(x, wt, bias, m, sh, expected=y, **args))
    return cases


def _other_cases(rng):
    cases = []
    x = rng.integers(-128, 128, (2, 37), dtype=np.int8)
    w = rng.integers(-127, 128, (10, 37), dtype=np.int8)
    b = rng.integers(-3000, 3000, 10).astype(np.int32)
    m, sh = quant.conv_multipliers(0.05, rng.uniform(0.001, 0.01, 10), 0.1)
    y = kernels.fully_connected(x, w, b, m, sh, input_offset=7, output_offset=-3)
    cases.append(KernelCall("fc", (1, 1, 0, 0, 1, 1, 7, -3, -128, 127),
                            {"input": x, "weights": w, "bias": b, "multiplier": m, "shift": sh},
                            ints={"batches": 2, "in_features": 37, "out_features": 10}, out_size=y.size, expected=y))
    x = rng.integers(-128, 128, (1, 9, 7, 5), dtype=np.int8)
    y = kernels.avgpool2d(x, (3, 3), stride=(2, 2), padding=(1, 1, 1, 1), act_min=-100, act_max=100)
    cases.append(KernelCall("avgpool", (2, 2, 1, 1, 1, 1, 0, 0, -100, 100), {"input": x},
                            dims={"input": x.shape, "output": y.shape}, ints={"filter_h": 3, "filter_w": 3},
                            out_size=y.size, expected=y))
    x = rng.integers(-128, 128, (1, 8, 8, 24), dtype=np.int8)
    p = quant.mean_params(0.1, -3, 0.07, 5)
    y = kernels.mean_hw(x, p)
    cases.append(KernelCall("mean", p, {"input": x}, dims={"input": x.shape}, out_size=y.size, expected=y))
    a = rng.integers(-128, 128, 333, dtype=np.int8)
    c = rng.integers(-128, 128, 333, dtype=np.int8)
    p = quant.add_params(0.05, 3, 0.08, -7, 0.1, 11, -128, 127)
    y = kernels.add(a, c, p)
    cases.append(KernelCall("add", p, {"input1": a, "input2": c}, out_size=333, expected=y))
    x = rng.integers(-128, 128, (3, 10), dtype=np.int8)
    p = quant.softmax_params(0.2, 1.0)
    y = kernels.softmax(x, p)
    cases.append(KernelCall("softmax", p, {"input": x}, ints={"rows": 3, "depth": 10}, out_size=30, expected=y))
    return cases


@pytest.fixture(scope="module")
def firmware_source(tmp_path_factory):
    rng = np.random.default_rng(2024)
    cases = _conv_cases(rng) + _other_cases(rng)
    path = tmp_path_factory.mktemp("fw") / "kernel_vectors.c"
    path.write_text(emit_source(cases))
    return str(path), len(cases)


@pytest.mark.mcu
@pytest.mark.parametrize("portable", [False, True], ids=["simd", "portable"])
@pytest.mark.parametrize("target", QEMU_TARGETS)
def test_kernels_bit_exact_in_qemu(target, portable, firmware_source, qemu, tmp_path):
    src, n = firmware_source
    elf = mcu.build(target, [src], str(tmp_path), portable=portable, opt="-O2")
    result = mcu.run_qemu(target, elf, timeout=600)
    per_case = parse_results(result.stdout, n)
    failed = [i for i, (ok, _) in enumerate(per_case) if not ok]
    assert not failed and result.exit_code == 0, f"cases {failed} differ from the host:\n{result.stdout[-3000:]}"


@pytest.mark.mcu
def test_cortex_m0plus_build_links(firmware_source, cross_compiler, tmp_path):
    src, _ = firmware_source
    elf = mcu.build("cortex-m0plus", [src], str(tmp_path), opt="-Os")
    assert elf.endswith(".elf")


def test_unknown_target_is_named():
    from tinyqt.errors import TinyQTError
    with pytest.raises(TinyQTError, match="unknown target 'cortex-m3'"):
        mcu.get_target("cortex-m3")
