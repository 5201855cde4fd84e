"""Host driver for a board built by `nmforge build --board`: speaks the host-link protocol
(`nmforge.rtl.host_link`, documented there) over any byte stream.

The port is any object with `write(bytes)` and `read(n) -> bytes`, where `read` returns fewer than
`n` bytes when it times out (pyserial's `Serial` behaves so; `HostLink.open_serial` opens one). The
same class drives the simulated board (`nmforge.sim.tb_board`), whose bridge implements
`write`/`read` on the simulated UART pins.

The design's payload layouts come from its `manifest.json` (written next to the bitstream):
beats are packed with `nmforge.sim.payload` and GEMMs are tiled into beats by
`nmforge.sim.array_model.ArrayModel`, exactly as the array regression does.

    link = HostLink.open_serial("/dev/ttyUSB0", "out/nm24_int8_4x4/manifest.json")
    c = link.gemm(a, values, indices)       # values/indices: golden.nm.compress_nm(w, n, m)
    print(link.status())                    # {'overflow': False, 'meta_error': False, ...}

A config with [accelerator] builds the accelerator behind the link (protocol version 2):
`AcceleratorLink` drives it with `load` (a buffer image of `golden.accel`), `command` (an
`rtl.isa` command), `read` (a STORE's elements) and `gemm` (a whole GEMM that fits the buffers);
`open_link(port, manifest)` picks the driver from the manifest.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from ..golden import accel
from ..rtl import isa
from ..rtl.host_link import (ACCEL_PROTOCOL_VERSION, ACCEL_STATUS_LEN, INFO_LEN, NOT_DONE,
                             STATUS_BITS, STATUS_LEN, UNKNOWN_OPCODE, Op, ident_bytes, payload_bytes)
from ..sim.array_model import ArrayModel
from ..sim.kinds import Operands
from ..sim.payload import layout_width, pack, unpack

from .board import COMMAND_TIMEOUT_S, DEFAULT_BAUD


class LinkError(RuntimeError):
    """The device answered something unexpected, or not at all."""


class _Link:
    """The protocol primitives both links share (the port, commands, INFO, NOP, CLEAR)."""

    @classmethod
    def open_serial(cls, device, manifest, baud=DEFAULT_BAUD, timeout=1.0, **kwargs):
        """A link on a serial port (needs pyserial: `pip install pyserial`)."""
        import serial  # optional dependency, only for real hardware
        return cls(serial.Serial(device, baud, timeout=timeout), manifest, **kwargs)

    def _command(self, op, payload=b"", response_len=0):
        """Send one command; return (echoed header byte, response body)."""
        self.port.write(bytes([op]) + payload)
        self.stats["commands"] += 1
        self.stats["bytes_out"] += 1 + len(payload)
        header = self._read_exactly(1, op)[0]
        if header == UNKNOWN_OPCODE:
            raise LinkError(f"device does not know opcode 0x{op:02x}")
        if header & ~NOT_DONE != op:
            raise LinkError(f"response to opcode 0x{op:02x} starts with 0x{header:02x}: link out of step "
                            f"(call resync())")
        return header, self._read_exactly(response_len, op)

    def _read_exactly(self, n, op):
        data = b""
        while len(data) < n:
            chunk = self.port.read(n - len(data))
            if not chunk:
                raise LinkError(f"timeout: got {len(data)} of {n} expected bytes of the response to opcode "
                                f"0x{op:02x}")
            data += chunk
        self.stats["bytes_in"] += n
        return data

    def nop(self):
        self._command(Op.NOP)

    def resync(self):
        """Get back in step after a lost byte: wait out the device's command timeout, drop any
        input, and check that NOP answers."""
        self.sleep(2 * self.device_timeout_s)
        if hasattr(self.port, "reset_input_buffer"):
            self.port.reset_input_buffer()
        self.nop()

    def info(self) -> dict:
        """What the device says it is: protocol version, rows, cols, n, m, dense, the payload
        byte counts act_bytes / weight_bytes / result_bytes, and the first 8 hex digits of its
        config hash."""
        _, body = self._command(Op.INFO, response_len=INFO_LEN)
        info = dict(zip(("version", "rows", "cols", "n", "m"), body[:5]))
        info["dense"] = bool(body[5] & 1)
        for i, name in enumerate(("act_bytes", "weight_bytes", "result_bytes")):
            info[name] = int.from_bytes(body[6 + 2 * i:8 + 2 * i], "little")
        info["config_hash"] = body[12:16].hex()
        return info

    def _check_ident(self, want):
        _, body = self._command(Op.INFO, response_len=INFO_LEN)
        if body != want:
            raise LinkError(f"device reports design {body.hex()}, manifest {self.manifest['module']} "
                            f"is {want.hex()}: wrong bitstream or manifest")

    def clear(self):
        """Reset the device's logic (sticky flags, counters, pending work) and the link's flags."""
        self._command(Op.CLEAR)

    def _try_send_bits(self, op, bits, width, length):
        if not 0 <= bits < 1 << width:
            raise ValueError(f"beat 0x{bits:x} does not fit {width} bits")
        header, _ = self._command(op, bits.to_bytes(length, "little"))
        if header & NOT_DONE:
            self.stats["busy"] += 1
        return not header & NOT_DONE

    def _retry(self, attempt, beat, name):
        for _ in range(self.retries):
            if attempt(beat):
                return
        raise LinkError(f"the {name} holding register stayed full for {self.retries} tries: the array "
                        f"waits for the other stream's beat or for a result to be read (the "
                        f"accelerator: for a free unit, or for data of a LOAD)")


class HostLink(_Link):
    """Drives one generated array over the host link.

    `manifest` is the design's manifest (a dict or a path to manifest.json). `retries` bounds how
    often a busy ACT/WEIGHT is retried and how often RESULT is polled before giving up.
    `check_info` reads INFO first and raises `LinkError` unless the device is this design.
    `sleep(seconds)` waits (used by `resync`); a simulation bridge passes its own.
    """

    def __init__(self, port, manifest, *, retries=1000, check_info=True, sleep=time.sleep,
                 device_timeout_s=COMMAND_TIMEOUT_S):
        if isinstance(manifest, (str, os.PathLike)):
            with open(manifest) as f:
                manifest = json.load(f)
        self.port = port
        self.manifest = manifest
        self.model = ArrayModel(manifest)
        self.retries = retries
        self.sleep = sleep
        self.device_timeout_s = device_timeout_s
        self.act_len = payload_bytes(layout_width(self.model.act_layout))
        self.weight_len = payload_bytes(layout_width(self.model.weight_layout))
        self.result_len = payload_bytes(layout_width(self.model.result_layout))
        self.stats = {"commands": 0, "bytes_out": 0, "bytes_in": 0, "busy": 0, "polls": 0}
        if check_info:
            self.check_info()

    # --- the array's commands ---------------------------------------------------------------

    def check_info(self):
        """Raise LinkError unless the device reports this manifest's design."""
        model = self.model
        want = ident_bytes(self.manifest["parameters"], self.manifest["config_hash"],
                           *(layout_width(x) for x in (model.act_layout, model.weight_layout,
                                                        model.result_layout)))
        self._check_ident(want)

    def status(self) -> dict:
        """{overflow, meta_error, result_valid, act_full, weight_full, link_error: bool,
        bad_groups: int}."""
        _, body = self._command(Op.STATUS, response_len=STATUS_LEN)
        flags = body[0]
        status = {name: bool(flags >> bit & 1) for bit, name in enumerate(STATUS_BITS)}
        status["bad_groups"] = int.from_bytes(body[1:], "little")
        return status

    def try_send_act(self, beat) -> bool:
        """Offer one act beat (a packed int, or a value of the act layout); False if busy."""
        return self._try_send(Op.ACT, self.model.act_layout, self.act_len, beat)

    def try_send_weight(self, beat) -> bool:
        return self._try_send(Op.WEIGHT, self.model.weight_layout, self.weight_len, beat)

    def _try_send(self, op, layout, length, beat):
        bits = beat if isinstance(beat, int) else pack(layout, beat)
        return self._try_send_bits(op, bits, layout_width(layout), length)

    def send_act(self, beat):
        """Send one act beat, retrying while the act holding register is busy."""
        self._retry(self.try_send_act, beat, "act")

    def send_weight(self, beat):
        self._retry(self.try_send_weight, beat, "weight")

    def try_read_result_bits(self) -> int | None:
        """The next result beat as its packed bits, or None when none is ready."""
        header, body = self._command(Op.RESULT, response_len=self.result_len)
        if header & NOT_DONE:
            return None
        return int.from_bytes(body, "little")

    def try_read_result(self):
        bits = self.try_read_result_bits()
        return None if bits is None else np.array(unpack(self.model.result_layout, bits), dtype=np.int64)

    def read_result(self):
        """The next result tile (rows x cols int64 array), polling until one is ready."""
        for _ in range(self.retries):
            tile = self.try_read_result()
            if tile is not None:
                return tile
            self.stats["polls"] += 1
        raise LinkError(f"no result after {self.retries} polls: did the tile's last beat go in?")

    # --- GEMM ---------------------------------------------------------------------------------

    def gemm(self, a, values, indices):
        """C = A x W on the device, W given compressed (`golden.nm.compress_nm`): tiled onto the
        array like the array regression (row tiles outer, column tiles inner), one tile's beats
        then its result. Rows of A and columns of W that do not fill a tile are zero-padded (and
        cropped from C). Returns C (int64); check `status()` for overflow / meta_error.
        (PE kinds without per-beat side values; see sim.kinds.Operands.)"""
        model = self.model
        a, values = np.asarray(a, dtype=np.int64), np.asarray(values, dtype=np.int64)
        indices = np.asarray(indices, dtype=np.int64) if indices is not None else None
        rows, k = a.shape
        cols = values.shape[1]
        if k % model.m:
            raise ValueError(f"K = {k} is not a multiple of M = {model.m}")
        if values.shape[0] != k // model.m * model.n:
            raise ValueError(f"values has {values.shape[0]} rows, expected {k // model.m * model.n} for K = {k}")
        if indices is None:
            if not model.dense:
                raise ValueError("indices are required for a sparse design")
            indices = np.zeros_like(values)  # a dense design sends no indices
        pad_rows, pad_cols = -rows % model.rows, -cols % model.cols
        a = np.pad(a, ((0, pad_rows), (0, 0)))
        values = np.pad(values, ((0, 0), (0, pad_cols)))
        filler = np.tile(np.arange(model.n)[:, None], (k // model.m, pad_cols))  # valid indices
        indices = np.concatenate([indices, filler.reshape(-1, pad_cols)], axis=1) if pad_cols else indices

        beats = list(model.beats(Operands(a, values, indices)))
        groups = k // model.m
        c = np.zeros((rows + pad_rows, cols + pad_cols), dtype=np.int64)
        for t, ((i, j), _) in enumerate(model.tiles(c)):
            for act_beat, weight_beat in beats[t * groups:(t + 1) * groups]:
                self.send_act(act_beat)
                self.send_weight(weight_beat)
            c[i:i + model.rows, j:j + model.cols] = self.read_result()
        return c[:rows, :cols]


class AcceleratorLink(_Link):
    """Drives a generated accelerator over its host link (protocol version 2, documented in
    `nmforge.rtl.host_link`): commands (`rtl.isa`) and data words through the UART, with the
    memory images of `golden.accel`.

    `manifest` is the accelerator's manifest (its `accelerator.shape`); `retries`, `check_info`,
    `sleep` and `device_timeout_s` as for `HostLink`.

        link = AcceleratorLink.open_serial("/dev/ttyUSB0", "out/accel/manifest.json")
        c = link.gemm(a, values, indices)          # raw accumulators, any size that fits the buffers
        link.load(Buffer.ACT, 0, words); link.command(isa.gemm(...)); y = link.read(0, count)
    """

    def __init__(self, port, manifest, *, retries=1000, check_info=True, sleep=time.sleep,
                 device_timeout_s=COMMAND_TIMEOUT_S):
        if isinstance(manifest, (str, os.PathLike)):
            with open(manifest) as f:
                manifest = json.load(f)
        if "accelerator" not in manifest:
            raise ValueError(f"manifest of {manifest.get('module')!r} has no accelerator section: "
                             f"use HostLink for a bare array")
        self.port, self.manifest = port, manifest
        self.shape = isa.AcceleratorShape(**manifest["accelerator"]["shape"])
        self.retries, self.sleep, self.device_timeout_s = retries, sleep, device_timeout_s
        width = self.shape.stream_width
        self.widths = (isa.COMMAND_BITS, width, width + 1)   # command, data in, data out + tlast
        self.command_len, self.data_len, self.read_len = (payload_bytes(w) for w in self.widths)
        self.stats = {"commands": 0, "bytes_out": 0, "bytes_in": 0, "busy": 0, "polls": 0}
        if check_info:
            self.check_info()

    def check_info(self):
        """Raise LinkError unless the device reports this manifest's accelerator."""
        self._check_ident(ident_bytes(self.manifest["parameters"], self.manifest["config_hash"],
                                      *self.widths, version=ACCEL_PROTOCOL_VERSION))

    def status(self) -> dict:
        """{overflow, meta_error, read_valid, command_full, data_full, link_error, busy,
        cmd_error: bool; error_code: rtl.isa.Error; bad_groups, cycles, array_beats: int}."""
        _, body = self._command(Op.STATUS, response_len=STATUS_LEN + ACCEL_STATUS_LEN)
        names = ("overflow", "meta_error", "read_valid", "command_full", "data_full", "link_error")
        status = {name: bool(body[0] >> bit & 1) for bit, name in enumerate(names)}
        status["bad_groups"] = int.from_bytes(body[1:STATUS_LEN], "little")
        extra = body[STATUS_LEN:]
        status |= {"busy": bool(extra[0] & 1), "cmd_error": bool(extra[0] >> 1 & 1),
                   "error_code": isa.Error(extra[0] >> 4),
                   "cycles": int.from_bytes(extra[1:7], "little"),
                   "array_beats": int.from_bytes(extra[7:13], "little")}
        return status

    # --- commands and data --------------------------------------------------------------------

    def command(self, command):
        """Send one command (an `rtl.isa` command dict, or a raw 128-bit word), retrying while
        the controller has not taken the previous one. The accelerator checks it (`status()`
        then says cmd_error / error_code if it refused it)."""
        bits = isa.encode(command)
        self._retry(lambda b: self._try_send_bits(Op.ACT, b, self.widths[0], self.command_len),
                    bits, "command")

    def send_data(self, words):
        """Send data-in stream words (ints of stream_width bits), in order."""
        for word in words:
            self._retry(lambda w: self._try_send_bits(Op.WEIGHT, int(w), self.widths[1], self.data_len),
                        word, "data")

    def load(self, buffer, addr, words, wait=False):
        """LOAD `words` (buffer words, e.g. `golden.accel.act_image`) into `buffer` at `addr`:
        the command, then its data-in stream (`golden.accel.stream_words`)."""
        self._checked(isa.load(buffer, addr, len(words), wait))
        self.send_data(accel.stream_words(words, self.shape.word_bits(buffer), self.shape.stream_width))

    def read_stream(self):
        """Data-out words up to and including the one with tlast (polling while none is ready)."""
        words, polls = [], 0
        while True:
            header, body = self._command(Op.RESULT, response_len=self.read_len)
            if header & NOT_DONE:
                polls += 1
                self.stats["polls"] += 1
                if polls > self.retries:
                    raise LinkError(f"no data-out word after {self.retries} polls "
                                    f"(status {self.status()})")
                continue
            bits = int.from_bytes(body, "little")
            words.append(bits & ((1 << self.shape.stream_width) - 1))
            if bits >> self.shape.stream_width & 1:
                return words

    def read(self, addr, count, wide=False):
        """STORE `count` OUT elements from `addr` (act_width bits each, or acc_width with `wide`)
        and return them (int64, sign-extended) once every unit has finished (the STORE waits)."""
        self._checked(isa.store(addr, count, wide, wait=True))
        words = self.read_stream()
        expected = self.shape.store_stream_words(count, wide)
        if len(words) != expected:
            raise LinkError(f"STORE of {count} elements gave {len(words)} data-out words, expected {expected}")
        return accel.unpack_store(words, count, self.shape.store_element_bits(wide), self.shape.stream_width)

    def _checked(self, command):
        """Send `command` after checking it as the controller will (ValueError naming the error
        code instead of a refused command)."""
        error = isa.check(isa.decode(isa.encode(command)), self.shape)
        if error != isa.Error.NONE:
            raise ValueError(f"command {isa.decode(isa.encode(command))} would be refused: {error.name}")
        self.command(command)

    def gemm(self, a, values, indices, params=None, relu=False):
        """C = A x W on the accelerator for any (m, k, n) whose images fit the buffers: A, W
        (compressed, `golden.nm.compress_nm`) and PARAM (`params` = (bias, mult, shift) per output
        column; without them a zero bias) are loaded at address 0, one GEMM runs (tiled on the
        array by the controller) and its results are read back: raw accumulators (int64,
        acc_width bits) without `params`, else the requantized activations (act_width bits, ReLU
        with `relu`).
        Raises LinkError if the accelerator refused a command."""
        a = np.asarray(a, dtype=np.int64)
        values = np.asarray(values, dtype=np.int64)
        mdim, k = a.shape
        ndim = values.shape[1]
        shape = self.shape
        if indices is None:
            indices = np.tile(np.arange(shape.n)[:, None], (values.shape[0] // shape.n, ndim))
        raw = params is None
        if raw:  # raw outputs are acc + bias (rtl.isa): a zero bias leaves the accumulators
            params = (np.zeros(ndim, dtype=np.int64), np.ones(ndim, dtype=np.int64),
                      np.zeros(ndim, dtype=np.int64))
        self.load(isa.Buffer.ACT, 0, accel.act_image(a, shape))
        self.load(isa.Buffer.WEIGHT, 0, accel.weight_image(values, np.asarray(indices), shape))
        self.load(isa.Buffer.PARAM, 0, accel.param_image(*params))
        self._checked(isa.gemm(0, 0, 0, 0, mdim, k, ndim, relu=relu, raw=raw, wait=True))
        out = self.read(0, mdim * ndim, wide=raw).reshape(mdim, ndim)
        status = self.status()
        if status["cmd_error"]:
            raise LinkError(f"the accelerator refused a command: {status['error_code'].name}")
        return out


def open_link(port, manifest, **kwargs):
    """The link for a design's manifest: `AcceleratorLink` when it has an accelerator section,
    else `HostLink`."""
    if isinstance(manifest, (str, os.PathLike)):
        with open(manifest) as f:
            manifest = json.load(f)
    return (AcceleratorLink if "accelerator" in manifest else HostLink)(port, manifest, **kwargs)
