"""The packed forward of BERT-family cross-encoders: no padding in any dense layer.

A batch's pairs are concatenated into one ``[tokens, hidden]`` matrix, so the dense layers (over
90% of the FLOPs) see only real tokens, with Q, K and V in one matmul. Attention alone pads the
batch's pairs to its longest (they arrive sorted by length, so that is little), and the last layer
computes only the first token of each pair, the one the classifier reads. Numerically this is the
model's own forward pass: the same weights, operations and order per token.

In bfloat16 on a CPU, each dense layer runs as one oneDNN call on a weight packed once at load, with
its bias, activation (GELU) or residual sum fused in (:class:`_Dense`). That halves the time of the
dense layers: torch's ``addmm`` there adds the bias in a separate pass and writes its result twice, and
GELU and the residual sum each read and write the whole activation again. Layer norms and attention's
softmax compute their statistics in float32 whatever the dtype (torch's CPU kernels accumulate
bfloat16 in float32), and the head (pooler and classifier, a few small layers on one token per pair)
runs in float32, so that scores keep float32's resolution: a bfloat16 logit near 5 moves in steps of
1/32, and documents the model tells apart would tie. On the SciFact-trained MiniLM-L6 (BM25 top-10 of
the 300 test queries), this took bfloat16's Kendall tau against float32 from 0.976 to 0.994.

Imported only once torch is known to be installed (by the encoder engine, at model load).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["PackedEncoder"]

# Activations oneDNN fuses into a dense layer, by the config's ``hidden_act``: (attribute, algorithm).
_FUSED_ACTIVATIONS = {
    "gelu": ("gelu", "none"),
    "gelu_pytorch_tanh": ("gelu", "tanh"),
    "gelu_new": ("gelu", "tanh"),
    "relu": ("relu", ""),
}

# Architectures whose encoder layers share BERT's module layout, and whether the classifier reads the
# pooler's output ("pooler") or the first token's hidden state through its own head ("head").
_PACKED_ARCHITECTURES = {
    "BertForSequenceClassification": "pooler",
    "RobertaForSequenceClassification": "head",
    "XLMRobertaForSequenceClassification": "head",
    "CamembertForSequenceClassification": "head",
    "ElectraForSequenceClassification": "head",
}

# Modules of one encoder layer that the packed forward reads, as attribute paths.
_LAYER_PARTS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "attention.output.LayerNorm",
    "intermediate.dense",
    "intermediate.intermediate_act_fn",
    "output.dense",
    "output.LayerNorm",
)


def _onednn_usable(weight: torch.Tensor) -> bool:
    """Whether oneDNN's fused linear runs here for ``weight``'s device and dtype (CPU, float32 or bfloat16)."""
    if weight.device.type != "cpu" or weight.dtype not in (torch.float32, torch.bfloat16):
        return False
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    try:  # private ops: used only where they exist and agree with addmm
        probe = torch.ones((2, weight.shape[1]), dtype=weight.dtype)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight[:2].detach(), None)
        fused = torch.ops.mkldnn._linear_pointwise(probe, packed, None, "none", [], "")
        return bool(torch.allclose(fused.float(), probe.float() @ weight[:2].float().t(), rtol=1e-2, atol=1e-2))
    except (AttributeError, RuntimeError):
        return False


class _Dense:
    """One dense layer of the packed forward, with its bias and an optional activation or residual sum.

    Where oneDNN serves the weight's dtype on a CPU (:func:`_onednn_usable`), the weight is packed
    once into oneDNN's layout and each call is one kernel, with the bias and the activation (those in
    ``_FUSED_ACTIVATIONS``) or the residual sum fused; elsewhere it is ``addmm`` followed by them.

    Args:
        weight: ``[out, in]``, as a ``torch.nn.Linear`` holds it.
        bias: ``[out]``.
        fused: Use oneDNN's fused linear.
        act_fn: The model's activation module to apply after the layer, or None.
        activation: The activation's name in the model's config (``hidden_act``), which says whether
            oneDNN can fuse it.
    """

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor, *, fused: bool, act_fn: Any = None, activation: Any = None
    ) -> None:
        self.weight = weight.detach()
        self.bias = bias.detach()
        self.act_fn = act_fn
        self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, None) if fused else None
        self.fused_act = None
        if fused and act_fn is not None and isinstance(activation, str):
            self.fused_act = _FUSED_ACTIVATIONS.get(activation)

    def __call__(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``act(x @ weight.T + bias)``, or ``x @ weight.T + bias + residual`` when ``residual`` is given."""
        packed = self.packed
        if packed is None:
            out = torch.addmm(self.bias, x, self.weight.t())
            if residual is not None:
                return out.add_(residual)
        elif residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, packed, self.bias, "add")
        elif self.fused_act is not None:
            attr, algorithm = self.fused_act
            return torch.ops.mkldnn._linear_pointwise(x, packed, self.bias, attr, [], algorithm)
        else:
            out = torch.ops.mkldnn._linear_pointwise(x, packed, self.bias, "none", [], "")
        return out if self.act_fn is None else self.act_fn(out)


def _float32(module: Any) -> Any:
    """``module`` itself when it is in float32, else a float32 copy of it."""
    if all(parameter.dtype == torch.float32 for parameter in module.parameters()):
        return module
    return copy.deepcopy(module).float()


class PackedEncoder:
    """Runs a BERT-family sequence-classification model on packed tokens.

    Build one with :meth:`build`, which refuses architectures whose layers it does not know.

    Args:
        model: A loaded ``*ForSequenceClassification`` model of an architecture :meth:`build` accepts.
    """

    def __init__(self, model: Any) -> None:
        base = model.base_model
        self.model = model
        self.embeddings = base.embeddings
        # RoBERTa-style models number positions from padding_idx + 1.
        padding_idx = getattr(self.embeddings, "padding_idx", None)
        self.position_offset = padding_idx + 1 if isinstance(padding_idx, int) else 0
        self.project = getattr(base, "embeddings_project", None)
        pooler = getattr(base, "pooler", None) if _PACKED_ARCHITECTURES[type(model).__name__] == "pooler" else None
        # The head (pooler and classifier: small layers on one token per pair) runs in float32.
        self.pooler = None if pooler is None else _float32(pooler)
        self.classifier = _float32(model.classifier)
        first = base.encoder.layer[0].attention.self
        width = int(model.config.hidden_size)
        # float32 keeps addmm: it is the dtype of exact parity with the model's own forward (fused
        # kernels sum in another order: 1.6e-5 from sentence-transformers on 512-token pairs), and
        # fusing gained little there; bfloat16 is where the fused layers pay (about 2.5x).
        fused = first.query.weight.dtype == torch.bfloat16 and _onednn_usable(first.query.weight)
        activation = getattr(model.config, "hidden_act", None)
        last = len(base.encoder.layer) - 1
        self.layers: list[tuple[Any, ...]] = []
        for depth, layer in enumerate(base.encoder.layer):
            attention = layer.attention.self
            qkv_weight = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight]).detach()
            qkv_bias = torch.cat([attention.query.bias, attention.key.bias, attention.value.bias]).detach()
            if depth < last:
                projections: tuple[_Dense, ...] = (_Dense(qkv_weight, qkv_bias, fused=fused),)
            else:  # the last layer: keys and values of every token, the query of first tokens only
                projections = (
                    _Dense(qkv_weight[width:], qkv_bias[width:], fused=fused),
                    _Dense(qkv_weight[:width], qkv_bias[:width], fused=fused),
                )
            out, up, down = layer.attention.output.dense, layer.intermediate.dense, layer.output.dense
            self.layers.append(
                (
                    projections,
                    _Dense(out.weight, out.bias, fused=fused),
                    layer.attention.output.LayerNorm,
                    _Dense(
                        up.weight,
                        up.bias,
                        fused=fused,
                        act_fn=layer.intermediate.intermediate_act_fn,
                        activation=activation,
                    ),
                    _Dense(down.weight, down.bias, fused=fused),
                    layer.output.LayerNorm,
                )
            )
        self.fused = fused
        self.heads = int(first.num_attention_heads)
        self.head_size = int(first.attention_head_size)
        self.scaling = float(getattr(first, "scaling", self.head_size**-0.5))
        self.hidden = int(model.config.hidden_size)

    @staticmethod
    def build(model: Any) -> PackedEncoder | None:
        """The packed runner for ``model``, or None when its architecture needs the model's own forward."""
        config = model.config
        if type(model).__name__ not in _PACKED_ARCHITECTURES:
            return None
        if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
            return None
        if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
            return None
        try:
            layer = model.base_model.encoder.layer[0]
            for path in _LAYER_PARTS:
                obj = layer
                for part in path.split("."):
                    obj = getattr(obj, part)
            return PackedEncoder(model)
        except (AttributeError, IndexError, TypeError):
            return None

    def logits(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None, lengths: list[int]) -> torch.Tensor:
        """Logits ``[pairs, labels]`` for pairs whose tokens are concatenated in ``input_ids`` ``[tokens]``.

        Args:
            input_ids: The batch's token ids, pair after pair, on the model's device.
            token_type_ids: Their token types, likewise, or None for models without them.
            lengths: Tokens of each pair, in the order they are concatenated.
        """
        functional = torch.nn.functional
        device = input_ids.device
        count, longest = len(lengths), max(lengths)
        # Index tensors are built on the CPU in a few vectorised ops, then moved once.
        sizes = torch.tensor(lengths)
        starts = torch.cumsum(sizes, 0) - sizes
        offsets = torch.repeat_interleave(starts, sizes)
        positions = torch.arange(int(sizes.sum())) - offsets
        hidden = self.embeddings(
            input_ids=input_ids[None],
            token_type_ids=None if token_type_ids is None else token_type_ids[None],
            position_ids=(positions + self.position_offset).to(device)[None],
        )[0]
        if self.project is not None:
            hidden = self.project(hidden)

        uniform = all(n == longest for n in lengths)
        rows = key_mask = None
        if not uniform:
            # Row of each real token in the [count * longest] padded layout that attention uses.
            rows = (positions + torch.repeat_interleave(torch.arange(count) * longest, sizes)).to(device)
            key_mask = (torch.arange(longest)[None, :] < sizes[:, None]).to(device)[:, None, None, :]
        heads, head_size, width = self.heads, self.head_size, self.hidden
        first_rows = starts.to(device)
        last = len(self.layers) - 1
        for depth, (projections, out, norm1, up, down, norm2) in enumerate(self.layers):
            if depth < last:
                qkv = projections[0](hidden)
                residual = hidden
            else:
                # The classifier reads only each pair's first token, so the last layer computes keys and
                # values for every token but queries, attention output and feed-forward for first tokens only.
                qkv = projections[0](hidden)
                residual = hidden.index_select(0, first_rows)
                query = projections[1](residual)
            parts = qkv.shape[1] // width
            if rows is None:
                qkv = qkv.view(count, longest, parts, heads, head_size)
            else:
                padded = qkv.new_zeros((count * longest, parts * width))
                padded.index_copy_(0, rows, qkv)
                qkv = padded.view(count, longest, parts, heads, head_size)
            qkv = qkv.permute(2, 0, 3, 1, 4)
            if depth < last:
                context = functional.scaled_dot_product_attention(
                    qkv[0], qkv[1], qkv[2], attn_mask=key_mask, scale=self.scaling
                )
                context = context.transpose(1, 2).reshape(count * longest, width)
                if rows is not None:
                    context = context.index_select(0, rows)
            else:
                queries = query.view(count, 1, heads, head_size).transpose(1, 2)
                context = functional.scaled_dot_product_attention(
                    queries, qkv[0], qkv[1], attn_mask=key_mask, scale=self.scaling
                )
                context = context.reshape(count, width)
            attended = out(context, residual)
            hidden = functional.layer_norm(attended, (width,), norm1.weight, norm1.bias, norm1.eps)
            output = down(up(hidden), hidden)
            hidden = functional.layer_norm(output, (width,), norm2.weight, norm2.bias, norm2.eps)
        # After the last layer, ``hidden`` holds one row per pair: its first token.
        first_tokens = hidden.float()[:, None, :]
        if self.pooler is not None:
            return self.classifier(self.pooler(first_tokens))
        return self.classifier(first_tokens)
