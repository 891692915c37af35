"""EM speed and memory of hmm_lang's dense HMM against hmmlearn and pomegranate.

    python benchmarks/bench_hmm.py [--states 64 256 1024] [--vocab 1024] [--skip-pomegranate]
    python benchmarks/bench_hmm.py --small-data ../shared/data/tinystories_dev.txt \
        --tokenizer tokenizers/HF_custom_tokenizer_4096 [--small-stories 400] [--small-states 256] \
        [--large-reference]
    python benchmarks/bench_hmm.py --lane-sweep
    python benchmarks/bench_hmm.py --blocked [--blocked-states 4096 16384 65536]

Same synthetic data (sampled from a random HMM), same initial parameters, no smoothing. Each
engine runs in its own subprocess so that peak RSS is its own. Reported per engine and K:
seconds per EM iteration, tokens/s, peak RSS (MB), and for hmm_lang the fraction of this
machine's measured float32 matmul FLOP/s it reaches (6 K^2 flops per token per iteration).
The log-likelihood trajectories of hmm_lang and hmmlearn from the same start, on the same
data, are compared iteration by iteration (nats per token).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from machine import matmul_flops

SEQ_LEN = 100
# tokens per engine and K: enough for stable timings, small enough for the slow engines
TOKENS = {
    "hmm_lang": {64: 1_000_000, 256: 400_000, 1024: 60_000},
    "hmmlearn": {64: 100_000, 256: 20_000, 1024: 2_000},
    "pomegranate": {64: 20_000, 256: 5_000, 1024: 1_000},
}


def make_data(k: int, v: int, n_tokens: int, seed: int = 0):
    from hmm_lang.hmm import random_hmm, sample

    truth = random_hmm(32, v, seed=seed + 100, concentration=0.1)
    seqs, _ = sample(truth, max(1, n_tokens // SEQ_LEN), SEQ_LEN, seed=seed)
    init = random_hmm(k, v, seed=seed, dtype=torch.float64)
    return seqs, init


def run_hmm_lang(seqs, init, iters, sizing: str = "fit"):
    from hmm_lang.hmm import fit_em, pack_lanes
    from hmm_lang.hmm.fit import HMMFitConfig, batch_tokens_for, lane_len_for

    longest = max(len(s) for s in seqs)
    ragged = sizing == "fit"
    if sizing == "fit":  # the lanes and batch fit-hmm uses by default for this data and K
        cfg = HMMFitConfig(states=init.n_states)
        lane = lane_len_for(cfg, seqs, ragged=True)
    elif sizing == "even":  # lanes as long as the longest sequence (the previous sizing)
        cfg = HMMFitConfig(states=init.n_states)
        lane = lane_len_for(cfg, seqs)
    else:  # fixed lanes of 512 steps (raised to the longest sequence), as before any sizing
        cfg = HMMFitConfig(states=init.n_states, lane_len=512)
        lane = max(512, longest)
    if sizing == "fit" and longest <= SEQ_LEN:
        cfg, lane = HMMFitConfig(states=init.n_states, lane_len=SEQ_LEN), SEQ_LEN
    batches = pack_lanes(
        seqs,
        batch_tokens=batch_tokens_for(cfg, init.n_states, longest),
        lane_len=lane,
        ragged=ragged,
    )
    t0 = time.perf_counter()
    res = fit_em(
        init.to(dtype=torch.float32),
        batches,
        max_iter=iters,
        tol=-1.0,
        smoothing=0.0,
        progress=False,
    )
    secs = [r.seconds for r in res.monitor.history]
    return secs, [r.log_likelihood for r in res.monitor.history], time.perf_counter() - t0


def run_hmmlearn(seqs, init, iters):
    from hmmlearn.hmm import CategoricalHMM

    k, v = init.n_states, init.vocab_size
    m = CategoricalHMM(
        n_components=k,
        n_features=v,
        n_iter=iters,
        tol=-np.inf,
        implementation="scaling",
        init_params="",
        params="ste",
    )
    m.startprob_, m.transmat_, m.emissionprob_ = (t.numpy() for t in init.tensors())
    x = np.concatenate(seqs).reshape(-1, 1)
    t0 = time.perf_counter()
    m.fit(x, [len(s) for s in seqs])
    total = time.perf_counter() - t0
    return [total / iters] * iters, list(m.monitor_.history), total


def run_pomegranate(seqs, init, iters):
    from pomegranate.distributions import Categorical
    from pomegranate.hmm import DenseHMM

    dists = [Categorical(init.emit[i : i + 1].float()) for i in range(init.n_states)]
    m = DenseHMM(
        dists,
        edges=init.trans.float(),
        starts=init.start.float(),
        max_iter=iters,
        tol=1e-12,
        verbose=False,
    )
    x = torch.from_numpy(np.stack(seqs)).unsqueeze(-1)
    t0 = time.perf_counter()
    m.fit(x)
    total = time.perf_counter() - t0
    return [total / iters] * iters, [], total


ENGINES = {"hmm_lang": run_hmm_lang, "hmmlearn": run_hmmlearn, "pomegranate": run_pomegranate}


def worker(engine: str, k: int, v: int, n_tokens: int, iters: int) -> None:
    seqs, init = make_data(k, v, n_tokens)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    secs, history, total = ENGINES[engine](seqs, init, iters)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = sum(len(s) for s in seqs)
    steady = float(np.median(secs[1:] if len(secs) > 1 else secs))
    json.dump(
        {
            "engine": engine,
            "K": k,
            "tokens": n,
            "sec_per_iter": steady,
            "tokens_per_s": n / steady,
            "peak_rss_mb": peak / 1024,
            "peak_over_data_mb": (peak - base) / 1024,
            "history_per_token": [h / n for h in history],
        },
        sys.stdout,
    )


def spawn(engine, k, v, n_tokens, iters):
    out = subprocess.run(
        [sys.executable, __file__, "--worker", engine, str(k), str(v), str(n_tokens), str(iters)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return {"engine": engine, "K": k, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout)


def small_real(args) -> None:
    """EM seconds per iteration on a few hundred real stories: hmm_lang (fit-hmm's lane sizing
    and the earlier fixed one) against hmmlearn, same start, same tokens."""
    from hmm_lang.corpus import load_corpus
    from hmm_lang.hmm import random_hmm
    from hmm_lang.pretokenize import pretokenize

    corpus = load_corpus(args.small_data)
    stream = pretokenize(corpus.train, args.tokenizer).head(args.small_stories)
    seqs = [s.astype(np.int64) for s in stream.stories()]
    k, v = args.small_states, stream.vocab_size
    init = random_hmm(k, v, seed=0, dtype=torch.float64)
    n = stream.n_tokens
    print(f"{len(seqs)} real stories, {n:,} tokens, V={v}, K={k}, {args.iters} EM iterations")
    rows = {}
    for name, fn in (
        ("hmm_lang", lambda: run_hmm_lang(seqs, init, args.iters, "fit")),
        ("hmm_lang (even lanes)", lambda: run_hmm_lang(seqs, init, args.iters, "even")),
        ("hmm_lang (512-step lanes)", lambda: run_hmm_lang(seqs, init, args.iters, "fixed")),
        ("hmmlearn", lambda: run_hmmlearn(seqs, init, args.iters)),
    ):
        secs, _, _ = fn()
        rows[name] = float(np.median(secs[1:] if len(secs) > 1 else secs))
    for name, sec in rows.items():
        print(
            f"{name:>26} {sec:8.3f} s/iter {n / sec:>10,.0f} tok/s "
            f"{rows['hmmlearn'] / sec:6.1f} x hmmlearn"
        )
    if args.large_reference:  # the large-data rate, same process: every training story
        big = [s.astype(np.int64) for s in pretokenize(corpus.train, args.tokenizer).stories()]
        secs, _, _ = run_hmm_lang(big, init, 3, "fit")
        n_big = sum(len(s) for s in big)
        rate = n_big / float(np.median(secs[1:]))
        print(f"large data: {len(big)} stories, {n_big:,} tokens, {rate:,.0f} tok/s")
        for name in ("hmm_lang", "hmm_lang (even lanes)"):
            print(f"{name:>26} reaches {n / rows[name] / rate:.0%} of the large-data rate")


def lane_sweep(args) -> None:
    """E-step microseconds per token against the lanes a step computes: N random sequences of
    878 tokens (the longest of the 400-story case) at K=256, V=4096, float32. Small data runs
    its late steps with few lanes, where each step's (N x K) x (K x K) product is slow."""
    from hmm_lang.hmm import pack_lanes, random_hmm
    from hmm_lang.hmm.inference import expected_counts

    hmm = random_hmm(args.small_states, 4096, seed=0, dtype=torch.float32)
    rng = np.random.default_rng(0)
    print(f"{'lanes':>6} {'us/step':>8} {'us/token':>9}")
    for n in (1, 16, 64, 128, 256, 400, 1024):
        batch = pack_lanes([rng.integers(0, 4096, size=878) for _ in range(n)], 1 << 22, 878)[0]
        secs = []
        for _ in range(3):
            t0 = time.perf_counter()
            expected_counts(hmm, batch)
            secs.append(time.perf_counter() - t0)
        step = float(np.median(secs)) / 878 * 1e6
        print(f"{n:>6} {step:>8.0f} {step / n:>9.2f}")


def blocked_speed(args) -> None:
    """Blocked forward-backward (one E-step) at M=128 clusters of n = K/128 states: tokens/s
    and the share of the measured matmul rate, counting 6 n^2 flops per token (forward and
    backward block products and the expected-count outer products). Random parameters on
    1,024 seen cluster pairs (8 successors per cluster), so memory stays under ~3 GB."""
    from hmm_lang.hmm.batching import pack_lanes
    from hmm_lang.hmm.blocked import BlockedHMM

    peak = matmul_flops()
    m, succ, v = 128, 8, 4096
    rng = np.random.default_rng(0)
    cluster = np.arange(v) % m
    nxt = np.stack([rng.choice(m, succ, replace=False) for _ in range(m)])  # (M, 8)
    pairs = np.unique(np.arange(m)[:, None] * m + nxt)
    print(f"float32 matmul: {peak / 1e9:.1f} GFLOP/s, torch threads {torch.get_num_threads()}")
    print(
        f"{'K':>6} {'n':>4} {'tokens':>7} {'s/E-step':>9} {'tok/s':>9} {'GFLOP/s':>8} {'% matmul':>8} {'RSS MB':>7}"
    )
    for k in args.blocked_states:
        n = k // m
        g = torch.Generator().manual_seed(0)
        model = BlockedHMM(
            torch.from_numpy(cluster),
            torch.from_numpy(pairs),
            torch.rand(len(pairs), n, n, generator=g),
            torch.full((m, n), 1.0 / k),
            torch.full((m, n, v // m), m / v),
            torch.full((m, m), 1.0 / m),
            torch.full((m,), 1.0 / m),
            0.01,
        )
        src = torch.from_numpy(pairs // m)
        rows = torch.zeros(m, n).index_add_(0, src, model.blocks.sum(2))
        model.blocks /= rows[src].unsqueeze(2)
        # token streams that follow the seen cluster pairs: 64 lanes, budget ~2e9 flops
        n_tok = int(min(65_536, max(2048, 2e9 / (6 * n * n))))
        seqs = []
        for _ in range(max(1, n_tok // 256)):
            c = [int(rng.integers(m))]
            for _ in range(255):
                c.append(int(nxt[c[-1], rng.integers(succ)]))
            seqs.append(np.array(c) + m * rng.integers(0, v // m, size=256))
        batches = pack_lanes(seqs, 64 * 256, 256)
        model.expected_counts(batches[0])  # warm-up
        t0 = time.perf_counter()
        for b in batches:
            model.expected_counts(b)
        sec = time.perf_counter() - t0
        tok = sum(b.n_tokens for b in batches)
        flops = 6 * n * n * tok / sec
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{k:>6} {n:>4} {tok:>7} {sec:>9.2f} {tok / sec:>9,.0f} {flops / 1e9:>8.2f} "
            f"{flops / peak:>8.1%} {rss:>7.0f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--skip-pomegranate", action="store_true")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--small-data", default=None, help="real stories for the small-data case")
    ap.add_argument("--tokenizer", default="tokenizers/HF_custom_tokenizer_4096")
    ap.add_argument("--small-stories", type=int, default=400)
    ap.add_argument(
        "--large-reference",
        action="store_true",
        help="with --small-data: also time every training story (the large-data rate)",
    )
    ap.add_argument("--small-states", type=int, default=256)
    ap.add_argument("--lane-sweep", action="store_true", help="E-step cost against lanes")
    ap.add_argument("--blocked", action="store_true", help="blocked forward-backward speed")
    ap.add_argument("--blocked-states", type=int, nargs="+", default=[4096, 16384, 65536])
    args = ap.parse_args()
    if args.blocked:
        return blocked_speed(args)
    if args.lane_sweep:
        return lane_sweep(args)
    if args.small_data:
        return small_real(args)
    if args.worker:
        e, k, v, n, it = args.worker
        return worker(e, int(k), int(v), int(n), int(it))
    peak = matmul_flops()
    print(f"float32 matmul: {peak / 1e9:.1f} GFLOP/s, torch threads {torch.get_num_threads()}")
    engines = [e for e in ENGINES if not (args.skip_pomegranate and e == "pomegranate")]
    print(
        f"{'K':>5} {'engine':>12} {'tokens':>9} {'s/iter':>8} {'tok/s':>10} {'RSS MB':>8} {'x hmmlearn':>10} {'% matmul':>8}"
    )
    for k in args.states:
        rows = {e: spawn(e, k, args.vocab, TOKENS[e][k], args.iters) for e in engines}
        for e, r in rows.items():
            if "error" in r:
                print(f"{k:>5} {e:>12} failed: {r['error']}")
                continue
            speedup = (
                r["tokens_per_s"] / rows["hmmlearn"]["tokens_per_s"]
                if "tokens_per_s" in rows["hmmlearn"]
                else float("nan")
            )
            frac = 6 * k * k * r["tokens_per_s"] / peak
            print(
                f"{k:>5} {e:>12} {r['tokens']:>9} {r['sec_per_iter']:>8.3f} {r['tokens_per_s']:>10,.0f} "
                f"{r['peak_rss_mb']:>8.0f} {speedup:>10.1f} {frac:>8.1%}"
            )
        # the same start on the same (hmmlearn-sized) data: trajectories must agree
        same = spawn("hmm_lang", k, args.vocab, TOKENS["hmmlearn"][k], args.iters)
        a, b = same["history_per_token"], rows["hmmlearn"].get("history_per_token", [])
        if a and b:
            diff = max(abs(x - y) for x, y in zip(a, b, strict=False))
            print(
                f"{k:>5} trajectory hmm_lang vs hmmlearn: max |diff| {diff:.2e} nats/token over {len(a)} iterations"
            )


if __name__ == "__main__":
    main()
