"""Graph rewrites applied to an exported ONNX model before it is saved (``runtime/export.py``).

**PReLU as depth-wise 1x1 convolutions** (:func:`prelu_as_depthwise_conv`). ESPNetv2's camera
encoder has ~50 channel-wise PReLU activations (Mehta et al., CVPR 2019, after every EESP
branch). onnxruntime's CPU provider runs a PRelu node as a separate single-threaded element-wise
kernel in the plain NCHW layout, so each one also forces the surrounding convolutions' blocked
(NCHWc) tensors to be reordered out and back in. Profiled on the shipped graph
(``scripts/int8_camera_experiment.py``, 2 cores): PRelu 28 ms and the layout reorders 8 ms of the
camera encoder's 59 ms. Written as

    PRelu(x, s) = x + (1 - s) * Relu(-x)
                = Add(Conv_dw(Relu(Conv_dw(x, w = -1)), w = 1 - s), x)

with two depth-wise (``group`` = C) 1x1 convolutions, onnxruntime fuses the Relu and the Add
into its NCHWc convolutions: the activation stays in the blocked layout and runs on every
thread. Same run: network p50 75.1 -> 55.5 ms (loaded machine). The result is not bit-exact:
``x - (1 - s) x`` instead of ``s x`` differs by float32 rounding (~1e-7 relative to |x|), far
inside export's 1e-4 parity check, which compares the rewritten graph with PyTorch.

Only PRelu nodes whose slope is a constant (C, 1, 1) tensor (an initialiser, a Constant node,
or an Identity of either, as the exporter writes parameters of equal value) and whose input ONNX
shape inference gives as 4-D with C channels (one slope per channel of an NCHW input, as
``torch.nn.PReLU(C)`` exports) are rewritten; any other PRelu (a shared slope, an unknown shape)
is left as it is.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

__all__ = ["prelu_as_depthwise_conv"]


def prelu_as_depthwise_conv(model: Any) -> Dict[str, int]:
    """Rewrite, in place, the channel-wise PRelu nodes of ``model`` (an ``onnx.ModelProto``).

    Each rewritten node becomes Conv (depth-wise 1x1, weight -1) -> Relu -> Conv (depth-wise 1x1,
    weight 1 - slope) -> Add (+ the input), with two new initialisers of shape (C, 1, 1, 1)
    float32; node and tensor names derive from the PRelu node's name (or its output's). The
    graph's inputs, outputs and metadata are unchanged.

    Returns {"prelu": PRelu nodes found, "rewritten": nodes replaced}.
    Raises onnx.checker.ValidationError if the rewritten graph is not valid ONNX.
    """
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:       # constants the exporter wrote as nodes: Constant, Identity of one
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type == "Identity" and n.input[0] in consts:
            consts[n.output[0]] = consts[n.input[0]]
    inferred = onnx.shape_inference.infer_shapes(model).graph
    channels = {}          # tensor name -> channel count of a 4-D tensor whose C is known
    for vi in list(inferred.value_info) + list(inferred.input):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            channels[vi.name] = int(dims[1].dim_value)
    nodes, inits, found, done = [], [], 0, 0
    slopes = set()        # slope initialisers of rewritten nodes: dropped when no longer used
    for n in g.node:
        if n.op_type != "PRelu":
            nodes.append(n)
            continue
        found += 1
        x, slope_name = n.input[0], n.input[1]
        slope = consts.get(slope_name)
        if (slope is None or slope.ndim != 3 or slope.shape[1:] != (1, 1)
                or channels.get(x) != slope.shape[0]):
            nodes.append(n)
            continue
        done += 1
        slopes.add(slope_name)
        base = n.name or n.output[0]
        c = int(slope.shape[0])
        w_neg, w_scale = f"{base}/prelu_w_neg", f"{base}/prelu_w_scale"
        inits += [numpy_helper.from_array(np.full((c, 1, 1, 1), -1.0, np.float32), w_neg),
                  numpy_helper.from_array((1.0 - slope.astype(np.float32)).reshape(c, 1, 1, 1),
                                          w_scale)]
        nodes += [
            helper.make_node("Conv", [x, w_neg], [f"{base}/prelu_neg"], name=f"{base}/prelu_neg",
                             group=c, kernel_shape=[1, 1]),
            helper.make_node("Relu", [f"{base}/prelu_neg"], [f"{base}/prelu_relu"],
                             name=f"{base}/prelu_relu"),
            helper.make_node("Conv", [f"{base}/prelu_relu", w_scale], [f"{base}/prelu_scaled"],
                             name=f"{base}/prelu_scale", group=c, kernel_shape=[1, 1]),
            helper.make_node("Add", [f"{base}/prelu_scaled", x], [n.output[0]],
                             name=f"{base}/prelu_add"),
        ]
    if done:
        del g.node[:]
        g.node.extend(nodes)
        used = {i for node in nodes for i in node.input}
        keep = [i for i in g.initializer if i.name in used or i.name not in slopes]
        # (a slope reached through an Identity stays: the Identity still reads it)
        del g.initializer[:]
        g.initializer.extend(keep + inits)
        onnx.checker.check_model(model)
    return {"prelu": found, "rewritten": done}
