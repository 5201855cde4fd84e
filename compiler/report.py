"""Per-layer figures of a program: where each op runs, array beats and utilization per GEMM
(cycles come from golden.cycle_model or the simulation: compiler.command).

A GEMM of (m, k, n) on an R x C array whose beats cover S elements of K (S = M; on a run-time
design the span of the layer's pattern, rtl.isa.AcceleratorShape.span) takes
ceil(m/R) * ceil(n/C) * k_pad/S array beats (golden.accel counts the same); its dense-equivalent
MACs are m * k * n (k before padding), so array utilization = m*k*n / (beats * R*C*S) and
dense-equivalent MACs per beat = m*k*n / beats.
"""
from __future__ import annotations


def _ceil(a, b):
    return -(-a // b)


def layer_report(program, inputs) -> dict:
    """Per-layer rows for `inputs` inputs run in batches of program.batch."""
    shape, batch = program.shape, program.batch
    passes = _ceil(inputs, batch)
    layers = []
    capacity = 0            # dense-equivalent MACs the beats could have done
    for layer in program.spec["layers"]:
        m, k, n = layer["m"], layer["k"], layer["n"]
        span = shape.span(layer.get("pattern_id", 0))
        beats = _ceil(m, shape.rows) * _ceil(n, shape.cols) * layer["k_pad"] // span
        macs = m * k * n
        peak = shape.rows * shape.cols * span
        capacity += beats * passes * peak
        layers.append({"name": layer["name"], "where": "array", "m": m, "k": k, "n": n,
                       "pattern": layer["pattern"], "format": layer["format"],
                       "array_beats": beats * passes, "dense_macs": macs * passes,
                       "utilization": macs / (beats * peak), "macs_per_beat": macs / beats})
    host = [{"name": h["name"], "op": h["op"], "where": "host"} for h in program.spec["host_ops"]]
    total_beats = sum(layer["array_beats"] for layer in layers)
    total_macs = sum(layer["dense_macs"] for layer in layers)
    return {"design": program.spec["design"]["name"], "inputs": inputs, "batch": batch,
            "layers": layers, "host_ops": host, "array_beats": total_beats,
            "dense_macs": total_macs, "utilization": total_macs / capacity,
            "macs_per_beat": total_macs / total_beats}


def format_table(report) -> str:
    lines = [f"{report['design']}: {report['inputs']} inputs in batches of {report['batch']}",
             f"{'layer':<14}{'where':<7}{'m x k x n':<18}{'pattern':<9}{'array beats':>12}"
             f"{'util':>8}{'MACs/beat':>11}{'GEMM cycles':>13}"]
    for layer in report["layers"]:
        mkn = f"{layer['m']}x{layer['k']}x{layer['n']}"
        lines.append(f"{layer['name']:<14}{'array':<7}{mkn:<18}{layer['pattern']:<9}{layer['array_beats']:>12}"
                     f"{layer['utilization']:>8.1%}{layer['macs_per_beat']:>11.1f}"
                     f"{layer.get('cycles_model', ''):>13}")
    for host in report["host_ops"]:
        lines.append(f"{host['name']:<14}{'host':<7}{host['op']}")
    lines.append(f"{'total':<48}{report['array_beats']:>12}{report['utilization']:>8.1%}"
                 f"{report['macs_per_beat']:>11.1f}")
    if "cycle_model" in report:
        busy = report["cycle_model"]["busy"]
        lines.append("cycle model: " + f"{report['cycle_model']['cycles']} cycles; busy: weights "
                     f"{busy.get('weights', 0)}, loads {busy.get('load', 0)}, GEMMs (compute + "
                     f"output stage) {sum(layer.get('cycles_model', 0) for layer in report['layers'])}"
                     f", stores {busy.get('store', 0)}")
    if "cycles" in report:
        source = "simulated" if "sim" in report else "predicted"
        lines.append(f"{source}: {report['cycles']} cycles from the first command to idle "
                     f"(weight loads included), {report['cycles_per_input']:.1f} per input, "
                     f"{report['macs_per_cycle']:.1f} dense-equivalent MACs/cycle")
    if "accuracy" in report:
        lines.append(f"accuracy {report['accuracy']:.2%}")
    return "\n".join(lines)
