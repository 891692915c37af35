"""Cost of every stage against corpus size: seconds and peak RSS, measured and extrapolated.

    python benchmarks/bench_scale.py [--sizes 0.25 1 4 16] [--dev ../shared/data/tinystories_dev.txt]
        [--out docs/results/scale]

Corpora of growing size (in millions of tokens at V=4096): stories of the embedded generator,
and the first stories of the dev text (up to all of it). Each stage runs in a fresh process,
so its peak RSS (``ru_maxrss`` from ``wait4``) is its own; an import-only process gives the
baseline. Stages: BPE training on a sample of at most ``--tok-sample`` stories (recorded in the
tokenizer's metadata), pretokenizing (memory-mapped cache), KN 2..5 fitted chunk by chunk and
scored, the in-memory KN5 (the anchor of the memory bound), one dense EM iteration (K=256), one
cloned EM iteration (4 clones per token), and transformer training tokens/s (cpu_small,
windows read from the memory map). Costs are fitted as ``a * tokens^b`` on the measured sizes
(log-log least squares) and extrapolated to the full TinyStories (~470M tokens at V=4096).
Writes ``<out>.json``, ``<out>.md`` and ``<out>.html`` (log-log figure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FULL_TOKENS = 470e6  # TinyStories train at V=4096 (2.1M stories, ~1.9 GB of text)
STAGES = ("import", "tokenizer", "pretokenize", "kn", "kn5_in_memory", "em_dense", "em_cloned",
          "train")  # fmt: skip


class AnonPeak:
    """Peak anonymous resident memory (RssAnon) of this process, sampled every 10 ms: unlike
    ru_maxrss it leaves out file-backed pages (memory-mapped streams and n-gram arrays), which
    the kernel can drop at any time."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._read())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._read()) / 2**20


def _stage(name: str, corpus: Path, tok: Path, held: Path, args) -> dict:
    """Run in the child process: one stage on one corpus; returns its numbers."""
    import torch

    from hmm_lang.sources import TextFileSource

    torch.set_num_threads(os.cpu_count() or 1)
    out: dict = {}
    t0 = time.perf_counter()
    if name == "import":
        pass
    elif name == "tokenizer":
        from hmm_lang.tokenizer import train_tokenizer

        train_tokenizer(TextFileSource(corpus), 4096, tok, sample_stories=args.tok_sample)
        out["bytes"] = corpus.stat().st_size
        meta = json.loads((tok / "custom_tokenizer_4096" / "hmm_lang.json").read_text())
        out["sample_stories"] = meta["n_stories"]
    else:
        from hmm_lang.pretokenize import pretokenize

        hdir = tok / "HF_custom_tokenizer_4096"
        stream = pretokenize(TextFileSource(corpus), hdir)
        if name == "pretokenize":
            out["tokens"] = stream.n_tokens
        else:
            t0 = time.perf_counter()  # the cache read is not part of the stage
            valid = pretokenize(TextFileSource(held), hdir)
            out.update(_model_stage(name, stream, valid, args))
    out["seconds"] = time.perf_counter() - t0
    return out


def _model_stage(name: str, stream, valid, args) -> dict:
    import torch

    if name == "kn":
        from hmm_lang.ngram import KneserNeyModel

        bpb = {}
        for order in (2, 3, 4, 5):
            m = KneserNeyModel(order, stream.vocab_size, stream.eos_id)
            m.fit_stream(stream, chunk_tokens=args.kn_chunk)
            bpb[order] = -m.stream_log_prob(valid) / np.log(2) / valid.n_bytes
        return {"bpb": bpb}
    if name == "kn5_in_memory":
        from hmm_lang.ngram import KneserNeyModel

        m = KneserNeyModel(5, stream.vocab_size, stream.eos_id).fit(stream.stories())
        return {"bpb": -m.token_log_probs(valid.stories()).sum() / np.log(2) / valid.n_bytes}
    if name in ("em_dense", "em_cloned"):
        from hmm_lang.hmm.batching import pack_lanes

        seqs = stream.stories()
        batches = pack_lanes(seqs, 1 << 16, 512)
        if name == "em_dense":
            from hmm_lang.hmm.em import e_step, m_step
            from hmm_lang.hmm.init import initial_hmm

            hmm = initial_hmm("random", seqs, 256, stream.vocab_size, seed=0)
            t0 = time.perf_counter()
            stats = e_step(hmm, batches)
            m_step(stats, 1e-3)
        else:
            from hmm_lang.hmm.cloned_init import init_cloned_hmm

            model = init_cloned_hmm(seqs, stream.vocab_size, 4, eos_id=stream.eos_id)
            t0 = time.perf_counter()
            stats = None
            for b in batches:
                s = model.expected_counts(b)
                stats = s if stats is None else stats.add_(s)
            model.m_step(stats, 1e-3)
        return {"em_seconds": time.perf_counter() - t0}
    if name == "train":
        from hmm_lang.config import load_config
        from hmm_lang.transformer.data import BosStream, WindowSampler
        from hmm_lang.transformer.model import HookedTransformerModel
        from hmm_lang.transformer.train import _Loss, _optimizer

        cfg = load_config(ROOT / "configs" / "cpu_small.yaml")
        cfg.model.d_vocab = stream.vocab_size
        m, tc = cfg.model, cfg.train
        sampler = WindowSampler(BosStream(stream, 0), m.n_ctx, tc.batch_tokens // m.n_ctx, 0)
        model = HookedTransformerModel(cfg)
        loss_fn, opt = _Loss(model), _optimizer(model, tc)
        for i in range(args.train_steps + 1):
            if i == 1:
                t0 = time.perf_counter()  # the first step warms up allocators
            x, y = sampler.next()
            loss = loss_fn(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
        return {"tokens_per_s": args.train_steps * tc.batch_tokens / (time.perf_counter() - t0)}
    raise ValueError(name)


def _run_child(name: str, corpus: Path, tok: Path, held: Path, args) -> dict:
    """The stage in a fresh process; adds its peak RSS (MB) from wait4."""
    cmd = [sys.executable, __file__, "--child", name, "--corpus", str(corpus), "--tok", str(tok),
           "--held", str(held), "--tok-sample", str(args.tok_sample),
           "--train-steps", str(args.train_steps), "--kn-chunk", str(args.kn_chunk)]  # fmt: skip
    with tempfile.TemporaryFile() as f:
        p = subprocess.Popen(cmd, stdout=f, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
        f.seek(0)
        text = f.read().decode()
    if status != 0:
        raise RuntimeError(f"stage {name} failed ({status}): {text[-500:]}")
    out = json.loads(text.strip().splitlines()[-1])
    out["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    return out


def _write_corpus(path: Path, stories) -> tuple[int, int]:
    n = size = 0
    with open(path, "w", encoding="utf-8") as f:
        for s in stories:
            f.write(s.strip() + "\n<|endoftext|>\n")
            n += 1
            size += len(s.encode())
    return n, size


def _fit_power(x: list[float], y: list[float]) -> tuple[float, float]:
    """``y = a x^b`` by least squares in log-log space: (a, b)."""
    b, log_a = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(log_a)), float(b)


def _cost(row: dict, stage: str) -> float:
    r = row[stage]
    return r.get("em_seconds", r["seconds"])


def main() -> None:
    import itertools

    from hmm_lang.synthetic import generate_stories

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1, 4, 16],
                    help="corpus sizes in millions of tokens (approximate)")  # fmt: skip
    ap.add_argument("--dev", default=str(ROOT.parent / "shared/data/tinystories_dev.txt"))
    ap.add_argument("--out", default=str(ROOT / "docs/results/scale"))
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--tok-sample", type=int, default=20_000, help="stories the BPE is trained on")
    ap.add_argument("--train-steps", type=int, default=8)
    ap.add_argument("--kn-chunk", type=int, default=1 << 22, help="tokens per KN counting chunk")
    ap.add_argument("--from-json", nargs="+", help="only redraw the report from saved rows")
    ap.add_argument("--png", action="store_true", help="also export the figure as PNG")
    ap.add_argument("--child")
    ap.add_argument("--corpus")
    ap.add_argument("--tok")
    ap.add_argument("--held")
    args = ap.parse_args()
    if args.child:
        peak = AnonPeak()
        out = _stage(args.child, Path(args.corpus), Path(args.tok), Path(args.held), args)
        out["peak_anon_mb"] = peak.stop()
        print(json.dumps(out))
        return
    if args.from_json:
        rows = [r for p in args.from_json for r in json.loads(Path(p).read_text())]
        args.stages = [s for s in STAGES if any(s in r for r in rows)]
        _report(rows, args)
        return
    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    rows = []
    sources = {"synthetic": None}
    if Path(args.dev).exists():
        sources["dev text"] = Path(args.dev)
    # tokens per story, measured once per source on its first 2000 stories
    for src, path in sources.items():
        held = work / f"{src}_held.txt"
        if path is None:
            stories = lambda n: generate_stories(n, seed=0)  # noqa: E731
            _write_corpus(held, generate_stories(500, seed=99))
            tok_per_story = 128.0  # refined after the first size
        else:
            from hmm_lang.sources import TextFileSource

            all_dev = [s for b in TextFileSource(path).iter_batches() for s in b]
            stories = lambda n, d=all_dev: itertools.islice(d[500:], n)  # noqa: E731
            _write_corpus(held, all_dev[:500])
            tok_per_story = 230.0
        # one tokenizer per source, trained on a fixed sample: every size is encoded alike
        sample, tok = work / f"{src}_sample.txt", work / f"tok_{src}"
        _write_corpus(sample, stories(args.tok_sample))
        tok_row = _run_child("tokenizer", sample, tok, held, args)
        print(f"{src} tokenizer: {json.dumps(tok_row)}", flush=True)
        for size in args.sizes:
            n = int(size * 1e6 / tok_per_story)
            if path is not None and n > len(all_dev) - 500:
                if rows and rows[-1]["source"] == src and rows[-1]["stories"] == len(all_dev) - 500:
                    break
                n = len(all_dev) - 500
            corpus = work / f"{src}_{size}.txt"
            n_stories, n_bytes = _write_corpus(corpus, stories(n))
            row = {"source": src, "stories": n_stories, "bytes": n_bytes, "tokenizer": tok_row}
            for stage in args.stages:
                if stage != "tokenizer":
                    row[stage] = _run_child(stage, corpus, tok, held, args)
                if stage == "pretokenize":
                    row["tokens"] = row[stage]["tokens"]
                    tok_per_story = row["tokens"] / n_stories
                print(f"{src} {size}M {stage}: {json.dumps(row[stage])}", flush=True)
            rows.append(row)
    _report(rows, args)


def _report(rows: list[dict], args) -> None:
    from hmm_lang.atomic import write_json, write_text
    from hmm_lang.plots.export import save_figure

    out = Path(args.out)
    write_json(out.with_suffix(".json"), rows)
    stages = [s for s in args.stages if s != "import"]
    lines = ["| source | tokens | " + " | ".join(f"{s} s / RSS / anon MB" for s in stages) + " |",
             "|---|---|" + "---|" * len(stages)]  # fmt: skip
    for r in rows:
        cells = [
            f"{_cost(r, s):.1f} / {r[s]['peak_rss_mb']:.0f} / "
            + (f"{r[s]['peak_anon_mb']:.0f}" if "peak_anon_mb" in r[s] else "-")
            for s in stages
        ]
        lines.append(f"| {r['source']} | {r.get('tokens', 0):,} | " + " | ".join(cells) + " |")
    # growth between the two largest synthetic sizes (small sizes are dominated by fixed
    # costs), and the full corpus extrapolated at that exponent from the largest one
    lines += ["", "| stage | time ~ tokens^b | memory ~ tokens^b | full TinyStories (470M tokens): "
              "time, memory (extrapolated) |", "|---|---|---|---|"]  # fmt: skip
    pts = [r for r in rows if r["source"] == "synthetic" and "tokens" in r][-2:]
    for s in stages if len(pts) == 2 else []:
        x = [r["tokens"] for r in pts]
        t = [_cost(r, s) for r in pts]
        m = [r[s].get("peak_anon_mb", r[s]["peak_rss_mb"]) for r in pts]
        tb, mb = (float(np.log(v[1] / v[0]) / np.log(x[1] / x[0])) for v in (t, m))
        grow = FULL_TOKENS / x[1]
        if s == "tokenizer":
            when = f"{t[1]:.0f} s (a fixed sample of {pts[1][s]['sample_stories']:,} stories)"
        elif s == "train":
            when = f"{pts[1][s]['tokens_per_s']:,.0f} tokens/s at any size"
        else:
            when = f"{t[1] * grow**tb / 3600:.2f} h"
        lines.append(f"| {s} | {tb:.2f} | {mb:.2f} | {when}, {m[1] * grow**mb / 1024:.1f} GB |")
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    save_figure(scale_figure(rows, stages), out.parent, out.name, png=args.png)


def scale_figure(rows: list[dict], stages: list[str]):
    """Log-log seconds (left) and peak memory (right) of each stage against tokens."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    fig = make_subplots(1, 2, subplot_titles=("seconds", "peak memory, MB (anonymous if measured)"))
    for i, s in enumerate(stages):
        colour = qualitative.D3[i % len(qualitative.D3)]
        for src, dash in (("synthetic", "solid"), ("dev text", "dot")):
            pts = sorted((r for r in rows if r["source"] == src and s in r and "tokens" in r),
                         key=lambda r: r["tokens"])  # fmt: skip
            if not pts:
                continue
            x = [r["tokens"] for r in pts]
            line = dict(color=colour, dash=dash)
            name = f"{s} ({src})"
            fig.add_trace(go.Scatter(x=x, y=[_cost(r, s) for r in pts], name=name, line=line,
                                     legendgroup=name, mode="lines+markers"), 1, 1)  # fmt: skip
            mem = [r[s].get("peak_anon_mb", r[s]["peak_rss_mb"]) for r in pts]
            fig.add_trace(go.Scatter(x=x, y=mem, name=name, line=line, legendgroup=name,
                                     mode="lines+markers", showlegend=False), 1, 2)  # fmt: skip
    fig.update_xaxes(type="log", title="training tokens (V=4096)")
    fig.update_yaxes(type="log")
    fig.update_layout(title="Cost of each stage against corpus size (2 CPU cores)", width=1200,
                      height=500)  # fmt: skip
    return fig


if __name__ == "__main__":
    main()
