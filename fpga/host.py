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
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from ..rtl.host_link import (INFO_LEN, NOT_DONE, STATUS_BITS, STATUS_LEN, UNKNOWN_OPCODE, Op,
                             ident_bytes, payload_bytes)
from ..sim.array_model import ArrayModel
from ..sim.kinds import Operands
from ..sim.payload import layout_width, pack, unpack

from .board import COMMAND_TIMEOUT_S, DEFAULT_BAUD


class LinkError(RuntimeError):
    """The device answered something unexpected, or not at all."""


class HostLink:
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

    @classmethod
    def open_serial(cls, device, manifest, baud=DEFAULT_BAUD, timeout=1.0, **kwargs):
        """A HostLink on a serial port (needs pyserial: `pip install pyserial`)."""
        import serial  # optional dependency, only for real hardware
        return cls(serial.Serial(device, baud, timeout=timeout), manifest, **kwargs)

    # --- protocol primitives ----------------------------------------------------------------

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

    def check_info(self):
        """Raise LinkError unless the device reports this manifest's design."""
        model = self.model
        want = ident_bytes(self.manifest["parameters"], self.manifest["config_hash"],
                           *(layout_width(x) for x in (model.act_layout, model.weight_layout,
                                                        model.result_layout)))
        _, body = self._command(Op.INFO, response_len=INFO_LEN)
        if body != want:
            raise LinkError(f"device reports design {body.hex()}, manifest {self.manifest['module']} "
                            f"is {want.hex()}: wrong bitstream or manifest")

    def status(self) -> dict:
        """{overflow, meta_error, result_valid, act_full, weight_full, link_error: bool,
        bad_groups: int}."""
        _, body = self._command(Op.STATUS, response_len=STATUS_LEN)
        flags = body[0]
        status = {name: bool(flags >> bit & 1) for bit, name in enumerate(STATUS_BITS)}
        status["bad_groups"] = int.from_bytes(body[1:], "little")
        return status

    def clear(self):
        """Reset the array (sticky flags, bad-group count, pending tiles) and the link's flags."""
        self._command(Op.CLEAR)

    def try_send_act(self, beat) -> bool:
        """Offer one act beat (a packed int, or a value of the act layout); False if busy."""
        return self._try_send(Op.ACT, self.model.act_layout, self.act_len, beat)

    def try_send_weight(self, beat) -> bool:
        return self._try_send(Op.WEIGHT, self.model.weight_layout, self.weight_len, beat)

    def _try_send(self, op, layout, length, beat):
        bits = beat if isinstance(beat, int) else pack(layout, beat)
        if not 0 <= bits < 1 << layout_width(layout):
            raise ValueError(f"beat 0x{bits:x} does not fit {layout_width(layout)} bits")
        header, _ = self._command(op, bits.to_bytes(length, "little"))
        if header & NOT_DONE:
            self.stats["busy"] += 1
        return not header & NOT_DONE

    def send_act(self, beat):
        """Send one act beat, retrying while the act holding register is busy."""
        self._retry(self.try_send_act, beat, "act")

    def send_weight(self, beat):
        self._retry(self.try_send_weight, beat, "weight")

    def _retry(self, attempt, beat, name):
        for _ in range(self.retries):
            if attempt(beat):
                return
        raise LinkError(f"the {name} holding register stayed full for {self.retries} tries: the array "
                        f"waits for the other stream's beat or for a result to be read")

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
