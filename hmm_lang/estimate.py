"""Cost model of ``hmm-lang run --dry-run``: tokens, peak memory and seconds of each piece of
work, computed from sizes alone (nothing is run).

Where each constant comes from:

* Bytes per token (``BYTES_PER_TOKEN``): measured on the validation split (1,028 stories) of
  ``../shared/data/tinystories_dev.txt`` with the repository's tokenizers (trained on its training
  split); bytes count one per story for ``</s>``, tokens include ``</s>``. V=4096 gives 3.966, as
  ``docs/results/hmm256_lvd_metrics.json`` (846,425 bytes / 213,444 tokens). V=260 is bytes
  only (no merges). ``SYNTHETIC_*``: the same for the embedded generator (tokenizers trained
  on 20,000 of its stories, measured on their 10% validation split; 525 bytes per story).
* TinyStories sizes (``TINYSTORIES_*``): the documented sizes of ``roneneldan/TinyStories``
  (2,119,719 train and 21,990 validation stories, ~1.9 GB of training text); approximate.
* Distinct n-grams (``NGRAM_ANCHORS``): counted on the training split of the dev text (1.8-2.3M
  tokens) at each V, and on its first half, which gives the exponent b of Heaps' law (distinct
  ~ tokens^b); extrapolated from the nearest measured V and capped by min(V^n, tokens), the
  upper bound. Orders above 5 use the upper bound.
* CPU rates, measured on the project's 2-core machine (more cores: faster): ``CPU`` 5e10
  effective FLOP/s: dense EM at K=256, V=4096 runs at ~190k tokens/s x (4 K^2 + 2 K) FLOPs
  (README, Benchmarks; 8.7 s per iteration in docs/results), and the cpu_small transformer
  trained 11.47M tokens in 2,438 s (docs/results/ladder_4096.csv) x (6 N + 6 L n_ctx d); the
  float32 matmul peak there is 132.5 GFLOP/s (docs/results/blocked.md). ``EM_TOKEN_S``: dense
  K=16 (80 s for ~105 iterations of 1.74M tokens) is bound by per-token work, not FLOPs.
  ``BLOCK_FLOPS`` and ``BLOCK_TOKEN_S``: cloned and blocked steps gather (n x n) blocks:
  3.6-5.7e8 FLOP/s at n = 32..512 (docs/results/blocked.md), 4.2 s per iteration at n = 8.
  ``NGRAM_TOKEN_S``: the KN 5-gram fitted and scored in 1.14 s on 1.83M tokens (ladder).
  ``TOKENIZER_BPS``, ``PRETOKENIZE_BPS``: BPE training (1.9-2.5 MB/s) and ``encode_batch``
  (1.4 MB/s) timed on the dev text on that machine under load.
* GPU rate, an ASSUMPTION (no GPU was measured in this repository): ``GPU`` 2e14 FLOP/s for
  transformer training under bf16 autocast, about 20% of the ~989 TFLOP/s dense BF16 peak of one
  H100/H200-class GPU (small models reach a low share of peak).
* EM iterations (``EM_ITERS``, ``BLOCK_EM_ITERS``): typical counts of converged fits in
  docs/results (dense 80-177, cloned 5-34, blocked 19-103); the fit's cap bounds them.
* ``BASE_RAM``, ``TOKENIZER_RAM``: a Python process with torch imported (assumed), and BPE
  training (0.26 GB peak RSS measured on the dev text; its word table grows with distinct words,
  not with text).
* Bytes per token or per story of the code's own arrays (``LANE_*``, ``HMM_*``, ``NGRAM_*``),
  read from the code: lanes in ``hmm/batching.py``, the start's bigram counts in
  ``hmm/init.py``, ``hmm/cloned_init.py`` and ``hmm/clusters.py``, chunked counting in
  ``ngram_counts.py``; the per-story overhead of Python objects is approximate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hmm_lang.memory import GiB, dense_fit_bytes, transformer_step_bytes

BYTES_PER_TOKEN = {260: 1.0, 1024: 3.138, 2048: 3.654, 4096: 3.966}
SYNTHETIC_BYTES_PER_TOKEN = {260: 1.0, 1024: 3.468, 2048: 3.847, 4096: 4.027}
SYNTHETIC_BYTES_PER_STORY = 525
TINYSTORIES_TRAIN_STORIES = 2_119_719
TINYSTORIES_VALID_STORIES = 21_990
TINYSTORIES_TRAIN_BYTES = 1_900_000_000
# V -> (training tokens, {order: (distinct n-grams, Heaps exponent)})
NGRAM_ANCHORS = {
    1024: (
        2_319_966,
        {2: (76_454, 0.35), 3: (415_319, 0.59), 4: (932_930, 0.74), 5: (1_396_907, 0.83)},
    ),
    2048: (
        1_991_451,
        {2: (119_417, 0.46), 3: (503_657, 0.66), 4: (990_542, 0.79), 5: (1_364_896, 0.87)},
    ),
    4096: (
        1_834_013,
        {2: (148_588, 0.51), 3: (537_190, 0.70), 4: (978_194, 0.82), 5: (1_298_511, 0.89)},
    ),
}
EM_TOKEN_S = 4e-7
# GPU EM is bound by kernel launches: a 512-step lane loop of ~10 launches (~5 us each) per step
# over a 2^18-token batch is ~1e-7 s per token (an assumption until measured on a GPU)
GPU_EM_TOKEN_S = 1e-7
BLOCK_FLOPS = 4e8
BLOCK_TOKEN_S = 2e-6
NGRAM_TOKEN_S = 1.2e-7  # per token and per order
TOKENIZER_BPS = 2.0e6
PRETOKENIZE_BPS = 1.4e6
EM_ITERS = 120
BLOCK_EM_ITERS = 30
BASE_RAM = 0.5 * GiB
TOKENIZER_RAM = 0.5 * GiB
LANES, LANE_LEN = 1536, 512  # as hmm.fit (LANES, HMMFitConfig.lane_len)
LANE_BYTES_PER_TOKEN = 18  # a packed batch: tokens and story index (int64), two bool masks
LANE_CACHE_TOKENS = 1 << 23  # as hmm.batching.pack_lanes: larger data builds batches on read
HMM_STORY_BYTES = 160  # per story: its memory-map view, its place in the lane plan, dev mask
HMM_INIT_BYTES_PER_TOKEN = 32  # the start's bigram counts: int64 previous, next, key, sorted
NGRAM_CHUNK_TOKENS = 1 << 24  # as KneserNeyModel.fit_stream
NGRAM_CHUNK_BYTES_PER_TOKEN = 64  # one chunk's int64 tokens, positions, keys, np.unique's copy
NGRAM_MERGE_BLOCK = 1 << 20  # keys read from each sorted run per merge round


@dataclass(frozen=True)
class Device:
    """Where work runs and its effective rate of dense math (FLOP/s)."""

    name: str
    flops: float
    assumed: bool


CPU = Device("cpu", 5.0e10, assumed=False)
GPU = Device("gpu", 2.0e14, assumed=True)


def bytes_per_token(vocab_size: int, synthetic: bool = False) -> float:
    """UTF-8 bytes per token at ``vocab_size``: the measured table, linear in log2 V between
    its points and extrapolated from its last segment beyond them."""
    table = SYNTHETIC_BYTES_PER_TOKEN if synthetic else BYTES_PER_TOKEN
    vs = sorted(table)
    x = math.log2(max(vocab_size, vs[0]))
    i = max(1, min(len(vs) - 1, next((j for j, v in enumerate(vs) if v >= vocab_size), len(vs))))
    x0, x1 = math.log2(vs[i - 1]), math.log2(vs[i])
    y0, y1 = table[vs[i - 1]], table[vs[i]]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def n_tokens(n_bytes: float, n_stories: float, vocab_size: int, synthetic: bool = False) -> int:
    """Tokens of ``n_stories`` stories of ``n_bytes`` UTF-8 bytes, one ``</s>`` each."""
    return int(round((n_bytes + n_stories) / bytes_per_token(vocab_size, synthetic)))


def distinct_ngrams(order: int, vocab_size: int, tokens: int) -> int:
    """Distinct n-grams among ``tokens`` positions (Heaps' law from the measured anchor, capped
    by the upper bound min(V^n, tokens))."""
    bound = min(vocab_size**order, tokens)
    near = min(NGRAM_ANCHORS, key=lambda v: abs(math.log2(v / max(vocab_size, 1))))
    n0, table = NGRAM_ANCHORS[near]
    if order not in table:
        return int(bound)
    distinct, b = table[order]
    return int(min(bound, distinct * (tokens / n0) ** b))


def ngram_model_bytes(order: int, vocab_size: int, tokens: int) -> float:
    """A Kneser-Ney model of ``order``: every level's keys and counts (8 + 8 bytes per distinct
    j-gram) and context statistics (3 x 8 bytes per context); ``fit_stream`` keeps them in
    memory-mapped files (page cache and disk, not the process's heap)."""
    levels = sum(
        16.0 * distinct_ngrams(j, vocab_size, tokens)
        + 24.0 * distinct_ngrams(j - 1, vocab_size, tokens)
        for j in range(2, order + 1)
    )
    return levels + 16.0 * vocab_size


def ngram_count_bytes(tokens: int) -> float:
    """Peak heap of counting in chunks (``fit_stream``): one chunk's keys, or the merge's
    blocks of every sorted run (keys and counts, concatenated and made unique), not the corpus."""
    chunk = min(tokens, NGRAM_CHUNK_TOKENS)
    runs = math.ceil(tokens / NGRAM_CHUNK_TOKENS)
    merge = 3 * 16.0 * NGRAM_MERGE_BLOCK * runs if runs > 1 else 0.0
    return max(NGRAM_CHUNK_BYTES_PER_TOKEN * chunk, merge)


def ngram_seconds(order: int, tokens: int) -> float:
    return NGRAM_TOKEN_S * order * tokens


def stream_bytes(tokens: int) -> int:
    """A pretokenized stream: uint16 tokens, memory-mapped from disk (page cache, not heap)."""
    return 2 * tokens


def em_batch_tokens(states: int, tokens: int) -> int:
    """Tokens per E-step batch, as ``hmm.fit.batch_tokens_for`` (at most the data)."""
    return int(min(max(LANE_LEN, min(LANES * LANE_LEN, (1 << 28) // states)), max(tokens, 1)))


def _hmm_data_bytes(tokens: int, batch_tokens: int, vocab_size: int) -> tuple[float, float]:
    """(the start's transient bytes, the lanes EM keeps), besides per-story overhead."""
    init = HMM_INIT_BYTES_PER_TOKEN * tokens + 16.0 * vocab_size * vocab_size
    lanes = LANE_BYTES_PER_TOKEN * (tokens if tokens <= LANE_CACHE_TOKENS else batch_tokens)
    return init, lanes


def dense_hmm_bytes(states: int, vocab_size: int, tokens: int, stories: int) -> float:
    """A dense fit's peak: the start (bigram counts of every token), then EM's parameters,
    statistics and one batch's beliefs (:func:`dense_fit_bytes`) and its lanes (all of them
    for small data, one batch at a time beyond :data:`LANE_CACHE_TOKENS`)."""
    bt = em_batch_tokens(states, tokens)
    init, lanes = _hmm_data_bytes(tokens, bt, vocab_size)
    em = dense_fit_bytes(states, vocab_size, bt) + lanes
    return HMM_STORY_BYTES * stories + max(init, em)


def dense_em_flops(states: int) -> float:
    """FLOPs per token of one forward-backward pass with expected counts."""
    return 4.0 * states * states + 2.0 * states


def dense_em_seconds(states: int, tokens: int, iterations: int, device: Device = CPU) -> float:
    """EM time: a per-token overhead (CPU: measured; GPU: ``GPU_EM_TOKEN_S``, launch-bound,
    assumed) plus the forward-backward FLOPs at the device's rate."""
    overhead = EM_TOKEN_S if device is CPU else GPU_EM_TOKEN_S
    return iterations * tokens * (overhead + dense_em_flops(states) / device.flops)


def block_hmm_bytes(block: int, n_blocks: int, vocab_size: int, tokens: int, stories: int) -> float:
    """A cloned or blocked fit's peak, as :func:`dense_hmm_bytes` with EM's (B, n, n) blocks as
    float32 parameters, float64 statistics and a float32 candidate, and one batch's messages."""
    bt = em_batch_tokens(block * block, tokens)
    init, lanes = _hmm_data_bytes(tokens, bt, vocab_size)
    em = 16.0 * n_blocks * block * block + 8.0 * bt * block + lanes
    return HMM_STORY_BYTES * stories + max(init, em)


def block_em_seconds(block: int, tokens: int, iterations: int) -> float:
    return iterations * tokens * (BLOCK_TOKEN_S + dense_em_flops(block) / BLOCK_FLOPS)


def transformer_parameters(
    n_layers: int, d_model: int, n_heads: int, d_head: int, d_mlp: int, n_ctx: int, d_vocab: int
) -> int:
    """Parameters of the TransformerLens-native model (W_E, W_pos, blocks with biases and two
    LayerNorms, final LayerNorm, W_U without bias): 1,874,688 for cpu_small at V=4096."""
    attn = 4 * d_model * n_heads * d_head + 3 * n_heads * d_head + d_model
    mlp = 2 * d_model * d_mlp + d_mlp + d_model
    block = attn + mlp + 4 * d_model
    return d_vocab * d_model + n_ctx * d_model + n_layers * block + 2 * d_model + d_model * d_vocab


def transformer_flops_per_token(params: int, n_layers: int, n_ctx: int, d_model: int) -> float:
    """Training FLOPs per token, as nanoGPT counts: 6 N plus attention 6 L n_ctx d."""
    return 6.0 * params + 6.0 * n_layers * n_ctx * d_model


def transformer_train_bytes(params: int, step_bytes: float) -> float:
    """Weights, gradients and AdamW's two moments (float32), plus one step's activations."""
    return 16.0 * params + step_bytes


def transformer_step(model, batch_tokens: int, d_vocab: int, fused: bool = False) -> float:
    """:func:`transformer_step_bytes` for a ``ModelConfig``-like ``model`` (``fused``: on a GPU,
    whose fused attention stores no patterns, as train.py's memory check assumes)."""
    m = model
    return transformer_step_bytes(
        batch_tokens, m.n_ctx, m.d_model, m.d_mlp, m.n_layers, m.n_heads, d_vocab,
        patterns=not fused,
    )  # fmt: skip


def seconds(flops: float, device: Device) -> float:
    return flops / device.flops
