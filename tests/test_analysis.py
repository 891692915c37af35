"""Analysis invariants: similarity, coarse-graining, circuits, PCA, figures."""

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from hmm_lang.analysis.circuits import attention_patterns, circuits, head_weights, ov_matrix
from hmm_lang.analysis.embeddings import (
    coarse_grain,
    cosine_similarity_matrix,
    equal_blocks,
    frequency_bands,
    order_by_clustering,
    order_by_groups,
)
from hmm_lang.analysis.residual import collect_residuals, pca
from hmm_lang.config import RunConfig
from hmm_lang.errors import HmmLangError
from hmm_lang.pretokenize import TokenStream
from hmm_lang.transformer import HookedTransformerModel


@pytest.fixture(scope="module")
def tiny_model():
    cfg = RunConfig()
    cfg.model.d_vocab, cfg.model.n_ctx, cfg.model.n_layers = 64, 16, 2
    cfg.model.d_model, cfg.model.n_heads, cfg.model.d_head, cfg.model.d_mlp = 24, 3, 8, 48
    return HookedTransformerModel(cfg).eval()


class FakeTokenizer:
    def __len__(self):
        return 64

    def decode(self, ids):
        return "".join(f"t{i}" for i in ids)

    def convert_tokens_to_ids(self, t):
        return 0


def test_similarity_diagonal_is_one_and_symmetric():
    v = torch.randn(50, 7)
    v[3] = 0  # a zero vector must not give NaN
    s = cosine_similarity_matrix(v)
    keep = torch.ones(50, dtype=bool)
    keep[3] = False
    torch.testing.assert_close(torch.diagonal(s)[keep], torch.ones(49))
    torch.testing.assert_close(s, s.T)
    assert s.abs().max() <= 1 + 1e-6 and not torch.isnan(s).any()


def test_coarse_graining_recovers_block_values_without_the_diagonal():
    values = np.array([[0.9, -0.2, 0.1], [-0.2, 0.5, 0.3], [0.1, 0.3, -0.7]])
    groups = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    m = values[groups][:, groups].copy()
    np.fill_diagonal(m, 1.0)  # like a similarity matrix: must be left out
    np.testing.assert_allclose(coarse_grain(m, groups), values, atol=1e-12)
    assert np.isnan(coarse_grain(np.ones((3, 3)), np.array([0, 1, 1]))[0, 0])  # singleton block
    np.testing.assert_array_equal(equal_blocks(10, 4), [0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    bands = frequency_bands(np.array([5, 100, 1, 50]), 2)
    np.testing.assert_array_equal(bands, [1, 0, 1, 0])
    np.testing.assert_array_equal(order_by_groups(np.array([1, 0, 1, 0])), [1, 3, 0, 2])
    with pytest.raises(HmmLangError):
        equal_blocks(3, 5)


def test_clustering_order_is_a_permutation():
    v = torch.cat([torch.randn(10, 4) + 5, torch.randn(10, 4) - 5])
    order = order_by_clustering(v)
    assert sorted(order) == list(range(20))
    first = set(order[:10])
    assert first in (set(range(10)), set(range(10, 20)))  # the two clusters stay together


def test_circuits_equal_manual_products(tiny_model):
    toks = np.array([3, 7, 11, 40])
    m = tiny_model.model
    c = circuits(tiny_model, 1, 2, toks)
    w_e, w_u = m.W_E.detach(), m.W_U.detach()
    attn = m.blocks[1].attn
    w_q, w_k, w_v, w_o = (getattr(attn, n)[2].detach() for n in ("W_Q", "W_K", "W_V", "W_O"))
    e = w_e[toks]
    torch.testing.assert_close(c["QK"], e @ w_q @ w_k.T @ e.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c["OV"], e @ w_v @ w_o @ w_u[:, toks], rtol=1e-5, atol=1e-5)
    assert ov_matrix(w_v, w_o).shape == (24, 24)
    assert set(head_weights(tiny_model, 0, 0)) == {"W_Q", "W_K", "W_V", "W_O"}
    with pytest.raises(HmmLangError, match="head 9 out of range"):
        head_weights(tiny_model, 0, 9)
    pats = attention_patterns(tiny_model, torch.tensor([1, 2, 3, 4, 5]))
    assert pats.shape == (2, 3, 5, 5)
    torch.testing.assert_close(pats.sum(-1), torch.ones(2, 3, 5))
    assert torch.triu(pats, diagonal=1).abs().max() == 0  # causal


def test_pca_matches_numpy_svd():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    r = pca(x)
    assert np.all(np.diff(r.explained_variance) <= 1e-12)
    assert r.explained_variance_ratio.sum() <= 1 + 1e-9
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    np.testing.assert_allclose(r.explained_variance, s**2 / (len(x) - 1), rtol=1e-8)
    _, _, vt = np.linalg.svd(x - x.mean(0))
    np.testing.assert_allclose(np.abs(r.components[:2]), np.abs(vt[:2]), atol=1e-8)


def test_collected_moments_equal_the_full_activations(tiny_model):
    rng = np.random.default_rng(1)
    stories = [rng.integers(1, 64, size=n).astype(np.uint16) for n in (5, 20, 9)]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in stories])])
    stream = TokenStream(np.concatenate(stories), offsets, np.array([10, 40, 18]), 64, 1)
    col = collect_residuals(tiny_model, stream, bos_id=0, n_tokens=10_000, sample_size=10_000)
    assert col.n == 5 + 20 + 9
    hook = col.hooks[-1]
    acts = []
    for s in stories:  # <s> story, cut at n_ctx=16
        seq = np.concatenate([[0], s]).astype(np.int64)
        for a in range(0, len(seq) - 1, 16):
            _, cache = tiny_model.model.run_with_cache(torch.as_tensor(seq[a : a + 16])[None])
            acts.append(cache[hook][0].double().numpy()[: len(seq[a + 1 : a + 17])])
    acts = np.concatenate(acts)
    ref = pca(acts)
    np.testing.assert_allclose(col.pca(hook).explained_variance, ref.explained_variance, rtol=1e-6)
    assert len(col.sample[hook]) == col.n  # sample_size >= n keeps every point


def test_figures_have_traces_and_labels(tiny_model):
    from hmm_lang.plots.run_figures import (
        circuit_figures,
        patterns_figure,
        pca_figures,
        similarity_figure,
    )

    tok = FakeTokenizer()
    counts = np.arange(64)[::-1].copy()
    fig = similarity_figure(tiny_model, tok, "embed", "frequency", 8, counts)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    assert fig.data[0].zmin == -1 and fig.data[0].zmax == 1
    assert fig.data[1].z.shape == (8, 8) and "t0" in fig.data[0].x[0]
    assert "cos" in fig.data[0].hovertemplate
    # a subset is the most frequent tokens, and the title says so
    sub = similarity_figure(tiny_model, tok, "embed", "id", 4, counts, max_tokens=16)
    assert "16 most frequent" in sub.layout.title.text
    assert sorted(int(t.split(":")[0]) for t in sub.data[0].x) == list(range(16))
    groups = np.arange(64) % 5
    fig = similarity_figure(tiny_model, tok, "unembed", "groups", counts=counts, groups=groups)
    assert fig.data[1].z.shape == (5, 5)
    figs = circuit_figures(tiny_model, tok, counts, 0, 1, top_n=10)
    assert figs["qk_L0H1"].layout.xaxis.title.text == "key"
    assert figs["ov_L0H1"].layout.yaxis.title.text == "attended token"
    assert len(figs["weights_L0H1"].data) == 4
    assert len(patterns_figure(tiny_model, tok, np.arange(1, 12)).data) == 6
    rng = np.random.default_rng(0)
    stories = [rng.integers(1, 64, size=30).astype(np.uint16) for _ in range(4)]
    stream = TokenStream(np.concatenate(stories), np.arange(5) * 30, np.full(4, 60), 64, 1)
    pf = pca_figures(tiny_model, tok, stream, counts, n_tokens=100)
    assert pf["pca_explained_variance"].layout.xaxis.title.text == "principal components"
    assert isinstance(pf["pca3d_position"].data[0], go.Scatter3d)
    assert pf["pca2d_log10_frequency"].layout.xaxis.title.text == "PC1"


def test_save_figure_writes_html_and_never_fails_on_png(tmp_path):
    from hmm_lang.plots.export import save_figure

    paths = save_figure(go.Figure(go.Scatter(x=[1], y=[2])), tmp_path, "f")
    assert paths[0].name == "f.html" and "<html>" in paths[0].read_text()[:100]


def test_attention_figure_keeps_repeated_tokens_apart_and_stays_causal():
    from hmm_lang.plots.circuits import attention_patterns_figure

    n = 12
    labels = ["the", " cat", " the", " cat"] * 3  # repeated tokens
    causal = torch.tril(torch.rand(n, n))
    causal = causal / causal.sum(1, keepdim=True)
    fig = attention_patterns_figure(causal[None, None], labels)
    tr = fig.data[0]
    assert len(set(tr.x)) == n and len(set(tr.y)) == n  # one column and row per position
    z = np.asarray(tr.z)
    cols = np.asarray(tr.x)[None, :]
    rows = np.asarray(tr.y)[:, None]
    assert np.all(z[cols > rows] == 0)  # above the diagonal on its own axes: nothing


def test_head_weight_panels_have_their_own_colour_scales():
    from hmm_lang.plots.circuits import head_weights_figure

    w = {
        "W_Q": torch.randn(8, 4),
        "W_K": 10 * torch.randn(8, 4),
        "W_V": 0.1 * torch.randn(8, 4),
        "W_O": torch.randn(4, 8),
    }
    fig = head_weights_figure(w, "head")
    zmax = [t.zmax for t in fig.data]
    assert len(set(zmax)) == 4
    assert all(t.showscale is not False for t in fig.data)
    xs = [t.colorbar.x for t in fig.data]
    assert len(set(xs)) == 4  # four colour bars, each beside its panel


def test_coarse_grained_colours_are_not_saturated_by_tiny_block_means():
    from hmm_lang.plots.embeddings import coarse_grained_figure

    rng = np.random.default_rng(0)
    sim = np.clip(rng.normal(0, 0.2, size=(40, 40)), -1, 1)
    np.fill_diagonal(sim, 1.0)
    blocks = np.array([[0.004, -0.003], [-0.003, 0.002]])
    fig = coarse_grained_figure(sim, [str(i) for i in range(40)], blocks)
    panel = fig.data[1]
    assert panel.zmax > 0.1  # tiny means sit near the middle of the scale, not at its ends
    assert abs(blocks).max() / panel.zmax < 0.1


def test_png_export_works_headless(tmp_path):
    """With the `lab` extra (kaleido) and a Chrome/Chromium, figures are saved as PNG too."""
    pytest.importorskip("kaleido")
    import plotly.graph_objects as go

    import hmm_lang.plots.export as export

    export._png_ok = None
    paths = export.save_figure(go.Figure(go.Scatter(y=[1, 3, 2])), tmp_path, "f")
    if export._png_ok is False:
        pytest.skip("kaleido found no Chrome/Chromium")
    png = tmp_path / "f.png"
    assert png in paths and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_v4096_similarity_heatmap_stays_small_and_fast(tmp_path):
    """At V=4096 the full panel is drawn mean-pooled (a few hundred bins per side): the HTML
    stays well under 10 MB (it was ~100 MB)."""
    import time

    from hmm_lang.plots.embeddings import MAX_SIDE, coarse_grained_figure

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4096, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    t0 = time.perf_counter()
    fig = coarse_grained_figure(sim, [f"tok{i}" for i in range(4096)], np.zeros((8, 8)))
    path = tmp_path / "f.html"
    fig.write_html(str(path), include_plotlyjs="cdn")
    per = -(-4096 // MAX_SIDE)
    side = -(-4096 // per)
    assert 256 <= side <= MAX_SIDE and np.asarray(fig.data[0].z).shape == (side, side)
    assert f"mean over {per} x {per}" in fig.layout.annotations[0].text
    assert path.stat().st_size < 10 * 2**20
    assert time.perf_counter() - t0 < 30  # building and writing; not a timing test
