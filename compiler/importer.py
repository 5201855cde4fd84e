"""Import: an ExportedProgram (core ATen) -> the compiler IR (`ir.Graph`), one handler per op.

Every value is either a *constant* (a parameter or buffer as a float64 ndarray, folded through
permute/transpose/view, so `addmm(b, x, permute(W))` sees W^T) or an IR tensor (a node name).
An op without a handler, or a supported op used in a way the accelerator flow cannot run (a
GEMM whose weight is not a constant, a grouped or dilated convolution, ...), is a CompileError
naming the op, the module it came from and the supported ops.
"""
from __future__ import annotations

import operator

import numpy as np

from .errors import CompileError
from .ir import Graph, Node

HANDLERS = {}


def handles(*targets):
    """Register the decorated function as the handler of the ATen ops named in `targets`."""
    def register(function):
        for target in targets:
            HANDLERS[target] = function
        return function
    return register


def supported_ops() -> list[str]:
    return sorted(HANDLERS)


class _Const:
    """A folded constant tensor."""
    def __init__(self, value):
        self.value = np.asarray(value, dtype=np.float64)


class _Importer:
    def __init__(self, program):
        self.program = program
        self.nodes: list[Node] = []
        self.values = {}           # fx node name -> _Const or IR node name
        self.fx_node = None

    # -- helpers used by handlers -------------------------------------------------------------
    def fail(self, problem):
        raise CompileError(f"{_op_name(self.fx_node)}{_origin(self.fx_node)}: {problem}")

    def value(self, arg):
        """The _Const or IR node name of an fx argument (plain Python values pass through)."""
        if hasattr(arg, "name") and hasattr(arg, "op"):
            return self.values[arg.name]
        return arg

    def tensor(self, arg):
        """The IR node name of a tensor argument; a constant here is not supported."""
        value = self.value(arg)
        if not isinstance(value, str):
            self.fail("expects a computed tensor here, got a constant")
        return value

    def const(self, arg):
        value = self.value(arg)
        if not isinstance(value, _Const):
            self.fail("expects a parameter (constant) here, got a computed tensor")
        return value.value

    def shape_of(self, name):
        return next(n.shape for n in self.nodes if n.name == name)

    def emit(self, op, inputs, shape, name=None, **attrs):
        """Append a node (named after the fx node unless `name` is given); return its name."""
        name = name or self.fx_node.name
        taken = {n.name for n in self.nodes}
        base, i = name, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        self.nodes.append(Node(name, op, tuple(inputs), tuple(int(s) for s in shape), attrs))
        return name

    # -- the walk ---------------------------------------------------------------------------------
    def run(self) -> Graph:
        graph = self.program.graph
        unsupported = [n for n in graph.nodes
                       if n.op == "call_function" and _op_name(n) not in HANDLERS]
        if unsupported:
            self.fx_node = unsupported[0]
            raise CompileError(f"unsupported op {_op_name(unsupported[0])}{_origin(unsupported[0])}; "
                               f"supported: {', '.join(supported_ops())}")
        constants = self._constants()
        output = None
        for fx_node in graph.nodes:
            self.fx_node = fx_node
            if fx_node.op == "placeholder":
                if fx_node.name in constants:
                    self.values[fx_node.name] = _Const(constants[fx_node.name])
                else:
                    if any(n.op == "input" for n in self.nodes):
                        self.fail("a model takes one input tensor")
                    self.values[fx_node.name] = self.emit("input", (), fx_node.meta["val"].shape)
            elif fx_node.op == "call_function":
                self.values[fx_node.name] = HANDLERS[_op_name(fx_node)](self, *fx_node.args,
                                                                         **fx_node.kwargs)
            elif fx_node.op == "output":
                outs = fx_node.args[0]
                if len(outs) != 1 or not isinstance(self.value(outs[0]), str):
                    self.fail("a model returns one computed tensor")
                output = self.value(outs[0])
        return Graph(self.nodes, output)

    def _constants(self):
        """Placeholder name -> ndarray for parameters, buffers and lifted constants."""
        sig = self.program.graph_signature
        state = dict(self.program.state_dict)
        state.update(self.program.constants)
        out = {}
        for spec in sig.input_specs:
            if spec.target is not None and spec.target in state:
                out[spec.arg.name] = state[spec.target].detach().double().numpy()
        return out


def _op_name(fx_node) -> str:
    target = fx_node.target
    if target is operator.getitem:
        return "getitem"
    return str(target)


def _module_path(fx_node):
    """The path of the innermost nn.Module a node came from (e.g. "fc1"), or None."""
    stack = (fx_node.meta or {}).get("nn_module_stack") or {}
    return list(stack.values())[-1][0] or None if stack else None


def _origin(fx_node) -> str:
    """' (from <module path>: <class>)' for the innermost module a node came from, or ''."""
    stack = (fx_node.meta or {}).get("nn_module_stack") or {}
    if not stack:
        return ""
    path, cls = list(stack.values())[-1]
    cls = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
    return f" (from {path or 'the model'}: {cls.rsplit('.', 1)[-1]})"


def import_program(program) -> Graph:
    """The IR graph of an ExportedProgram already decomposed to core ATen."""
    return _Importer(program).run()


# --- handlers ------------------------------------------------------------------------------------

def _gemm(im, x, weight, bias, name=None):
    """A GEMM node: x (rows, K) @ weight (K, N) [+ bias (N,)]."""
    shape = im.shape_of(x)
    if len(shape) != 2:
        im.fail(f"GEMM input must be 2-D (rows, K), got shape {shape}")
    if weight.ndim != 2 or weight.shape[0] != shape[1]:
        im.fail(f"weight shape {weight.shape} does not match input shape {shape}")
    if bias is not None:
        bias = np.broadcast_to(bias, (weight.shape[1],)).copy()
    name = name or _module_path(im.fx_node)
    return im.emit("gemm", (x,), (shape[0], weight.shape[1]), name, weight=weight, bias=bias,
                   relu=False)


@handles("aten.addmm.default")
def _addmm(im, bias, x, w, beta=1, alpha=1):
    if beta != 1 or alpha != 1:
        im.fail("only beta = alpha = 1")
    return _gemm(im, im.tensor(x), im.const(w), im.const(bias))


@handles("aten.mm.default")
def _mm(im, x, w):
    return _gemm(im, im.tensor(x), im.const(w), None)


@handles("aten.linear.default")
def _linear(im, x, w, bias=None):
    return _gemm(im, im.tensor(x), im.const(w).T, None if bias is None else im.const(bias))


@handles("aten.convolution.default")
def _convolution(im, x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    x = im.tensor(x)
    w = im.const(w)
    if transposed or groups != 1 or any(d != 1 for d in dilation) or w.ndim != 4:
        im.fail("only 2-D convolutions with groups=1, dilation=1, not transposed")
    b, c, h, wd = im.shape_of(x)
    oc, ic, kh, kw = w.shape
    oh = (h + 2 * padding[0] - kh) // stride[0] + 1
    ow = (wd + 2 * padding[1] - kw) // stride[1] + 1
    name = _module_path(im.fx_node) or im.fx_node.name
    cols = im.emit("im2col", (x,), (b * oh * ow, ic * kh * kw), f"{name}.im2col",
                   kernel=(kh, kw), stride=tuple(stride), padding=tuple(padding))
    rows = _gemm(im, cols, w.reshape(oc, -1).T, None if bias is None else im.const(bias),
                 name)
    return im.emit("to_nchw", (rows,), (b, oc, oh, ow), f"{name}.fold", spatial=(oh, ow))


@handles("aten.relu.default")
def _relu(im, x):
    x = im.tensor(x)
    return im.emit("relu", (x,), im.shape_of(x))


@handles("aten.add.Tensor")
def _add(im, x, y, alpha=1):
    x, y = im.tensor(x), im.tensor(y)
    if alpha != 1 or im.shape_of(x) != im.shape_of(y):
        im.fail("only the add of two tensors of the same shape (a residual add)")
    return im.emit("add", (x, y), im.shape_of(x))


@handles("aten.view.default", "aten.reshape.default", "aten._unsafe_view.default")
def _view(im, x, shape):
    value = im.value(x)
    if isinstance(value, _Const):
        return _Const(value.value.reshape(shape))
    shape = [int(s) for s in shape]
    return im.emit("reshape", (value,), shape, target_shape=(-1, *shape[1:]))


@handles("aten.permute.default")
def _permute(im, x, dims):
    return _Const(np.transpose(im.const(x), dims))


@handles("aten.t.default")
def _t(im, x):
    return _Const(im.const(x).T)


@handles("aten.clone.default", "aten.alias.default", "aten.detach.default")
def _identity(im, x, **_):
    return im.value(x)


@handles("aten.max_pool2d_with_indices.default")
def _max_pool(im, x, kernel, stride=(), padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    return _pool(im, "maxpool", x, kernel, stride, padding, dilation, ceil_mode)


@handles("aten.avg_pool2d.default")
def _avg_pool(im, x, kernel, stride=(), padding=(0, 0), ceil_mode=False, count_include_pad=True,
              divisor_override=None):
    if divisor_override is not None:
        im.fail("divisor_override is not supported")
    return _pool(im, "avgpool", x, kernel, stride, padding, (1, 1), ceil_mode)


def _pool(im, op, x, kernel, stride, padding, dilation, ceil_mode):
    x = im.tensor(x)
    kernel = tuple(kernel) * (2 if len(kernel) == 1 else 1)
    stride = tuple(stride or kernel) * (2 if len(stride or kernel) == 1 else 1)
    if ceil_mode or any(p != 0 for p in padding) or any(d != 1 for d in dilation):
        im.fail("only pooling without padding, dilation or ceil_mode")
    b, c, h, w = im.shape_of(x)
    oh, ow = (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1
    return im.emit(op, (x,), (b, c, oh, ow), kernel=kernel, stride=stride)


@handles("getitem")
def _getitem(im, x, index):
    if index != 0:
        im.fail("only the values of max_pool2d_with_indices are supported, not its indices")
    return im.value(x)
