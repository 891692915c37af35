import numpy as np
import plotly.graph_objects as go

from hmm_lang.plots.token_stats import rank_frequency_figure
from hmm_lang.pretokenize import pretokenize
from hmm_lang.stats import collect_token_stats, save_token_stats, zipf_exponent
from hmm_lang.tokenizer import hf_dir, load_tokenizer


def test_stream_layout_and_decoding(tokenizers_dir, corpus):
    stream = pretokenize(corpus.valid, hf_dir(tokenizers_dir, 2048))
    tok = load_tokenizer(hf_dir(tokenizers_dir, 2048))
    stories = list(corpus.valid.iter_stories())
    assert stream.tokens.dtype == np.uint16 and stream.n_stories == len(stories)
    assert stream.offsets[0] == 0 and stream.offsets[-1] == stream.n_tokens
    eos = tok.convert_tokens_to_ids("</s>")
    for i in (0, 7, len(stories) - 1):
        ids = stream.story(i)
        assert ids[-1] == eos and eos not in ids[:-1]
        assert tok.decode(ids[:-1].tolist()) == stories[i]
    assert stream.n_bytes == sum(len(s.encode()) for s in stories) + len(stories)


def test_cache_is_reused(tokenizers_dir, corpus):
    a = pretokenize(corpus.valid, hf_dir(tokenizers_dir, 1024))
    folder = hf_dir(tokenizers_dir, 1024) / "pretokenized"
    before = {p: p.stat().st_mtime_ns for p in folder.glob("*/tokens.u16")}
    assert before
    b = pretokenize(corpus.valid, hf_dir(tokenizers_dir, 1024))
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*/tokens.u16")} == before
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.offsets, b.offsets)
    # read back memory-mapped and read-only: the stream is never loaded whole
    assert isinstance(b.tokens, np.memmap) and not b.tokens.flags.writeable


def test_zipf_exponent_of_exact_power_law():
    r = np.arange(1, 2001)
    assert abs(zipf_exponent(1e6 * r**-1.3) - 1.3) < 1e-9


def test_stats_exclude_special_tokens_and_figure(tokenizers_dir, corpus, tmp_path):
    stats = collect_token_stats(corpus.valid, tokenizers_dir, (1024, 4096))
    for v, s in stats.items():
        assert s.counts[:4].sum() == 0  # <s> </s> <pad> <unk>
        stream = pretokenize(corpus.valid, hf_dir(tokenizers_dir, v))
        assert s.n_tokens == stream.n_tokens - stream.n_stories  # every </s> left out
        assert np.all(np.diff(s.sorted_counts) <= 0)
        assert 0.5 < s.zipf_exponent < 3
    assert stats[1024].bytes_per_token < stats[4096].bytes_per_token
    fig = rank_frequency_figure(stats)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    assert fig.layout.yaxis.type == "log"
    for trace, v in zip(fig.data, (1024, 4096), strict=True):
        assert f"V={v}" in trace.name
        assert max(trace.x) <= 4096 + 1e-9  # ranks rescaled by 4096/V
        for field in ("rank", "id", "token", "frequency"):
            assert field in trace.hovertemplate
    written = save_token_stats(stats, tmp_path, fig)
    assert {p.name for p in written} >= {"token_stats.csv", "rank_frequency.html"}
    assert all(p.exists() for p in written)
    assert "vocab_size,n_tokens" in (tmp_path / "token_stats.csv").read_text()
