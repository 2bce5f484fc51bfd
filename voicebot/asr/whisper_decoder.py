"""Whisper's decoder over a preallocated KV cache, its steps replayed as CUDA graphs.

transformers' decoder grows its cache by concatenation and rebuilds masks on every step: on
an H100 a batched greedy step of Whisper base spent about 10 ms in Python and kernel launches
for well under 1 ms of GPU work, and cuDNN attention compiled a new graph for every new
(batch, length) shape (docs/benchmarks.md). Here the shapes are fixed per batch-size bucket
(the cache spans all 448 positions and a mask hides the future), so each bucket's step is
captured once as a CUDA graph and then replayed: one launch per token.

The weights are transformers' own modules (nothing copied but the fused q/k/v matrix), and
the arithmetic is the same as ``WhisperDecoder``'s; on CPU the same code runs eagerly.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class _Cache:
    """Keys and values of every layer: ``[layers, batch, heads, positions, head_dim]``."""

    self_k: torch.Tensor
    self_v: torch.Tensor
    cross_k: torch.Tensor
    cross_v: torch.Tensor


@dataclass
class _Graph:
    """One bucket's captured step with the static tensors it reads and writes."""

    graph: torch.cuda.CUDAGraph
    tokens: torch.Tensor  # [bucket, 1]
    position: torch.Tensor  # [1]
    cache: _Cache
    logits: torch.Tensor  # [bucket, 1, vocab]


class StaticDecoder:
    """Greedy-decoding steps for ``WhisperForConditionalGeneration``; one batch at a time
    (the caller serializes: a bucket's static buffers hold one batch)."""

    def __init__(self, model, *, cuda_graphs: bool, max_batch: int) -> None:
        decoder = model.model.decoder
        config = model.config
        self.heads = config.decoder_attention_heads
        self.max_len = config.max_target_positions
        self._decoder = decoder
        self._embed = decoder.embed_tokens.weight
        self._qkv = []
        for layer in decoder.layers:
            attn = layer.self_attn
            weight = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
            no_bias = torch.zeros_like(attn.q_proj.bias)  # transformers' k has no bias
            bias = torch.cat([attn.q_proj.bias, no_bias, attn.v_proj.bias])
            self._qkv.append((weight, bias))
        self._graphs: dict[int, _Graph] = {}
        self._buckets = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) if b < max_batch]
        self._buckets.append(max_batch)
        self._use_graphs = cuda_graphs

    def capture_all(self, sample: torch.Tensor) -> None:
        """Capture every bucket's graph now (start-up), given one encoder output row."""
        for bucket in self._buckets:
            self._graph(bucket, sample)

    def prefill(self, encoded: torch.Tensor, prompt: list[int]) -> tuple[_Cache, torch.Tensor]:
        """Cross-attention keys/values and the prompt's logits ``[batch, len(prompt), vocab]``.

        The returned cache belongs to this batch until the next ``prefill``.
        """
        batch = encoded.shape[0]
        cache = (
            self._graph(self._bucket(batch), encoded[:1]).cache
            if self._use_graphs
            else self._new_cache(batch, encoded)
        )
        for i, layer in enumerate(self._decoder.layers):
            attn = layer.encoder_attn
            cache.cross_k[i, :batch] = self._split_heads(attn.k_proj(encoded))
            cache.cross_v[i, :batch] = self._split_heads(attn.v_proj(encoded))
        tokens = torch.tensor(prompt, device=encoded.device).expand(cache.self_k.shape[1], -1)
        positions = torch.arange(len(prompt), device=encoded.device)
        return cache, self._forward(tokens, positions, cache)[:batch]

    def step(self, cache: _Cache, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """Logits ``[batch, vocab]`` for one new token per row at ``position``."""
        batch = tokens.shape[0]
        if not self._use_graphs:
            positions = torch.tensor([position], device=tokens.device)
            return self._forward(tokens[:, None], positions, cache)[:, -1]
        graph = self._graphs[cache.self_k.shape[1]]
        graph.tokens[:batch, 0] = tokens
        graph.position.fill_(position)
        graph.graph.replay()
        return graph.logits[:batch, -1].clone()

    def _bucket(self, batch: int) -> int:
        return next(b for b in self._buckets if b >= batch)

    def _new_cache(self, batch: int, encoded: torch.Tensor) -> _Cache:
        layers, frames = len(self._decoder.layers), encoded.shape[1]
        head_dim = encoded.shape[2] // self.heads
        shape = (layers, batch, self.heads, self.max_len, head_dim)
        cross = (layers, batch, self.heads, frames, head_dim)
        new = dict(device=encoded.device, dtype=encoded.dtype)
        return _Cache(
            torch.zeros(shape, **new),
            torch.zeros(shape, **new),
            torch.zeros(cross, **new),
            torch.zeros(cross, **new),
        )

    def _graph(self, bucket: int, sample: torch.Tensor) -> _Graph:
        """The bucket's captured step, capturing it on first use (warm-up runs first, as CUDA
        graphs require, on a side stream)."""
        if bucket in self._graphs:
            return self._graphs[bucket]
        device = sample.device
        cache = self._new_cache(bucket, sample.expand(bucket, -1, -1))
        tokens = torch.zeros((bucket, 1), dtype=torch.long, device=device)
        position = torch.zeros(1, dtype=torch.long, device=device)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._forward(tokens, position, cache)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = self._forward(tokens, position, cache)
        self._graphs[bucket] = _Graph(graph, tokens, position, cache, logits)
        return self._graphs[bucket]

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, length, dim]`` -> ``[batch, heads, length, head_dim]``."""
        batch, length, dim = x.shape
        return x.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def _forward(self, tokens: torch.Tensor, positions: torch.Tensor, cache: _Cache):
        """The decoder on ``tokens`` at ``positions``, writing their keys/values into ``cache``.

        Attention spans the whole cache with a mask (key j visible from position p if j <= p),
        so every shape is fixed and the step can be captured.
        """
        decoder = self._decoder
        batch, length = tokens.shape
        x = F.embedding(tokens, self._embed) + decoder.embed_positions.weight[positions]
        visible = torch.arange(self.max_len, device=tokens.device) <= positions[:, None]
        for i, layer in enumerate(decoder.layers):
            q, k, v = F.linear(layer.self_attn_layer_norm(x), *self._qkv[i]).chunk(3, dim=-1)
            cache.self_k[i].index_copy_(2, positions, self._split_heads(k))
            cache.self_v[i].index_copy_(2, positions, self._split_heads(v))
            attended = F.scaled_dot_product_attention(
                self._split_heads(q), cache.self_k[i], cache.self_v[i], attn_mask=visible
            )
            x = x + layer.self_attn.out_proj(attended.transpose(1, 2).reshape(batch, length, -1))
            q = self._split_heads(layer.encoder_attn.q_proj(layer.encoder_attn_layer_norm(x)))
            attended = F.scaled_dot_product_attention(q, cache.cross_k[i], cache.cross_v[i])
            x = x + layer.encoder_attn.out_proj(attended.transpose(1, 2).reshape(batch, length, -1))
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        return F.linear(decoder.layer_norm(x), self._embed)
