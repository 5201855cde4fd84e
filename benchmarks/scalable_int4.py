"""Precision-scalable PE (Bit Fusion style) on ECP5: resources, Fmax and MACs per cycle per
MULT18X18D in each mode, for the DSP-packed sub-words of rtl.mac_scalable.ScalableMac and for the
alternative kept here for comparison, `LutSubwordMac` (the MULT18X18D for INT8 / INT16 only,
shift-add LUT multipliers for the INT4 / INT2 sub-products).

Every design is a 2:4 sparse PE (rtl.pe.SparsePE, the shell of every PE kind) around one MAC unit
with N = 2 lanes, synthesized for ECP5-85F out of context (nmforge.fpga.synthesize); the INT8 PE
kind `int` is the reference. Throughput is measured, not assumed: the ScalableMac configurations
are simulated (cocotb on Verilator, sim/tb_mac_scalable.py, the exhaustive test: 65,536 back to
back beats per mode, every result checked against golden) and the beats per cycle counted; the
MULT18X18D count comes from the synthesized netlist. MACs/cycle/DSP in a mode =
lanes * MACs per lane per beat (1 INT8, 2 INT4, 4 INT2, 1/4 INT16) * beats per cycle / DSPs;
dense-equivalent figures multiply by M/N = 2 (the PE skips the pruned half of each group).

    python benchmarks/scalable_int4.py [--clock-mhz 120] [--lanes 2]

Prints a table and writes benchmarks/results/scalable_int4.json. Exits non-zero if a scalable
design misses 2 INT4 MACs per cycle per MULT18X18D.
"""
import argparse
import json
import pathlib
import sys
import tempfile

from amaranth import Mux, Signal, signed
from amaranth.back import verilog
from amaranth.lib import data

from nmforge.fpga import synthesize
from nmforge.rtl.decoder import NMDecoder
from nmforge.rtl.mac_int import IntMac
from nmforge.rtl.mac_scalable import OPERAND_WIDTH, ScalableMac, _select
from nmforge.rtl.pipeline import delay
from nmforge.rtl.pe import SparsePE
from nmforge.sim.tb_mac_scalable import build_bench, run_bench

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
N, ACC = 2, 32
MACS_PER_LANE = {"int8": 1, "int4": 2, "int2": 4, "int16": 0.25}


def _mul_shift_add(a, b):
    """Signed a * b without a `*` (so synthesis keeps it in LUTs rather than a DSP block)."""
    total = 0
    for i in range(len(b)):
        term = Mux(b[i], a << i, 0)
        total = total - term if i == len(b) - 1 else total + term
    return total


class LutSubwordMac(ScalableMac):
    """ScalableMac with LUT multipliers for the sub-words: the MULT18X18D computes only the INT8 /
    INT16 products (9-bit operands, an INT16 high byte shifted up 8 inside its operand); two
    signed 4x4 and four signed 2x2 shift-add multipliers per lane, summed in LUTs, give the INT4
    / INT2 dot product. Same ports, modes, latency and throughput as ScalableMac."""

    def _products(self, m, i, a, w, a9, w9, sel):
        op_a = Signal(signed(OPERAND_WIDTH), name=f"op_a{i}", reset_less=True)
        op_b = Signal(signed(OPERAND_WIDTH), name=f"op_b{i}", reset_less=True)
        m.d.sync += [op_a.eq(_select(m, f"op_a{i}", [(~sel["a_high"], a9), (sel["a_high"], a9 << 8)])),
                     op_b.eq(_select(m, f"op_b{i}", [(~sel["w_high"], w9), (sel["w_high"], w9 << 8)]))]
        product = Signal(signed(32 if self.int16 else 18), name=f"product{i}", reset_less=True)
        m.d.sync += product.eq(op_a * op_b)
        full = delay(m, product, 1, f"retimed{i}_", reset_less=True)
        p4 = Signal(data.ArrayLayout(signed(8), 2), name=f"p4_{i}", reset_less=True)
        p2 = Signal(data.ArrayLayout(signed(4), 4), name=f"p2_{i}", reset_less=True)
        m.d.sync += [p4[f].eq(_mul_shift_add(a[4 * f:4 * f + 4].as_signed(), w[4 * f:4 * f + 4]))
                     for f in range(2)]
        m.d.sync += [p2[f].eq(_mul_shift_add(a[2 * f:2 * f + 2].as_signed(), w[2 * f:2 * f + 2]))
                     for f in range(4)]
        is4 = delay(m, sel["int4"], 1, f"is4_{i}_", reset_less=True)
        is2 = delay(m, sel["int2"], 1, f"is2_{i}_", reset_less=True)
        sub = Signal(signed(9), name=f"sub{i}", reset_less=True)  # 0 when OFF
        m.d.sync += sub.eq(Mux(is4, p4[0] + p4[1], Mux(is2, (p2[0] + p2[1]) + (p2[2] + p2[3]), 0)))
        return full, delay(m, sub, 1, f"sub_retimed{i}_", reset_less=True), None


DESIGNS = {  # name: (MAC class, keyword arguments); the INT8 reference is IntMac
    "scalable_dsp": (ScalableMac, dict(int16=True)),
    "scalable_dsp_no16": (ScalableMac, dict(int16=False)),
    "lut_subword": (LutSubwordMac, dict(int16=True)),
    "lut_subword_no16": (LutSubwordMac, dict(int16=False)),
    "int8_reference": (IntMac, None),
}


def make_pe(design, lanes):
    cls, kwargs = design
    mac = IntMac(lanes, 8, 8, ACC) if cls is IntMac else cls(lanes, ACC, "wrap", **kwargs)
    act = mac.signature.members["a"].shape.elem_shape
    return SparsePE(mac, NMDecoder(lanes, 2 * lanes, act)), mac


def measure_beats_per_cycle(work, lanes, log):
    """Simulate every ScalableMac configuration (exhaustive test) and return beats per cycle."""
    configs = {name: {"class": cls, "mac": dict(n=lanes, acc_width=ACC, overflow="wrap", **kw),
                      "tests": ["exhaustive"]}
               for name, (cls, kw) in DESIGNS.items() if cls is not IntMac}
    vpath, mpath = build_bench(work / "sim", configs, module="scalable_bench_throughput")
    measured_file = work / "sim" / "measured.json"
    log("[sim] exhaustive INT8 / INT4 / INT2 beats on every configuration (cocotb + Verilator)")
    result = run_bench(vpath, mpath, work / "sim", tests=["exhaustive"], seed=1, log=log,
                       options={"result_json": measured_file})
    if not result.passed:
        sys.exit(f"simulation failed: see {result.log}")
    return json.loads(measured_file.read_text())


def synth(name, design, lanes, clock_mhz, work, log):
    pe, mac = make_pe(design, lanes)
    top = f"pe24_{name}"
    log(f"[{name}] synthesizing for ECP5 (out of context)")
    report = synthesize(verilog.convert(pe, name=top, emit_src=False), top, "ecp5", work / top,
                        clock_mhz=clock_mhz, log=log)
    res = report["resources"]
    return {
        "design": name, "pe": f"SparsePE {lanes}:{2 * lanes}", "lanes": lanes,
        "mac": type(mac).__name__,
        "int16": getattr(mac, "int16", False), "mac_latency": mac.latency, "pe_latency": pe.latency,
        "LUT4": res["LUT4_total"], "LUT4_logic": res["LUT4"], "CCU2C": res["CARRY"], "FF": res["FF"],
        "MULT18X18D": res["DSP"], "fmax_mhz": report["fmax_mhz"], "clock_mhz": clock_mhz,
    }


def add_throughput(row, beats_per_cycle):
    dsp = row["MULT18X18D"]
    modes = ["int8"] if beats_per_cycle is None else [m for m in MACS_PER_LANE if m != "int16" or row["int16"]]
    row["beats_per_cycle"] = {}
    row["macs_per_cycle"], row["macs_per_cycle_per_dsp"], row["dense_eq_macs_per_cycle"] = {}, {}, {}
    for mode in modes:
        # INT16 runs the INT8 datapath (4 pieces per MAC): its beat rate is INT8's
        bpc = 1.0 if beats_per_cycle is None else beats_per_cycle["int8" if mode == "int16" else mode]
        macs = row["lanes"] * MACS_PER_LANE[mode] * bpc
        row["beats_per_cycle"][mode] = bpc
        row["macs_per_cycle"][mode] = macs
        row["macs_per_cycle_per_dsp"][mode] = round(macs / dsp, 3) if dsp else None
        row["dense_eq_macs_per_cycle"][mode] = macs * 2  # an N:2N PE skips half of each group
    row["lut4_per_int4_mac_per_cycle"] = (round(row["LUT4"] / row["macs_per_cycle"]["int4"], 1)
                                          if "int4" in row["macs_per_cycle"] else None)
    return row


def table(rows):
    def per_dsp(r, mode):
        v = r["macs_per_cycle_per_dsp"].get(mode)
        return "-" if v is None else f"{v:g}"
    heads = ["design", "LUT4", "FF", "MULT18X18D", "Fmax MHz", "INT8/DSP", "INT4/DSP", "INT2/DSP",
             "INT16/DSP", "LUT4 per INT4 MAC/cyc"]
    body = [[r["design"], r["LUT4"], r["FF"], r["MULT18X18D"], f"{r['fmax_mhz']:.1f}",
             per_dsp(r, "int8"), per_dsp(r, "int4"), per_dsp(r, "int2"), per_dsp(r, "int16"),
             r["lut4_per_int4_mac_per_cycle"] or "-"] for r in rows]
    body = [[str(c) for c in row] for row in body]
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clock-mhz", type=float, default=120.0)
    parser.add_argument("--lanes", type=int, default=N, help="MAC lanes N of the N:2N PE")
    args = parser.parse_args()
    log = lambda line: print(line, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="nmforge-scalable-") as tmp:
        work = pathlib.Path(tmp)
        measured = measure_beats_per_cycle(work, args.lanes, log)
        rows = []
        for name, design in DESIGNS.items():
            row = synth(name, design, args.lanes, args.clock_mhz, work, log)
            bpc = measured[name]["beats_per_cycle"] if name in measured else None
            rows.append(add_throughput(row, bpc))
    figures = {
        "description": "ECP5-85F out of context; SparsePE 2:4 around one MAC unit; MACs/cycle per "
                       "MULT18X18D from simulated beats/cycle and synthesized DSP counts",
        "simulated": measured, "designs": rows,
    }
    print()
    print(table(rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scalable_int4.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'scalable_int4.json'}")
    short = [r["design"] for r in rows
             if "int4" in r["macs_per_cycle_per_dsp"] and r["macs_per_cycle_per_dsp"]["int4"] < 2]
    if short:
        sys.exit(f"INT4 below 2 MACs/cycle per MULT18X18D: {', '.join(short)}")


if __name__ == "__main__":
    main()
