"""Stepwise (online) EM as a start for batch EM, on the ladder's V=4096 split (issue 10, point 3).

Runs EPOCHS passes of stepwise EM (Liang & Klein 2009; minibatches of MB stories, step size
(k + 2)^-ALPHA) from the split start, then batch EM to dev convergence (tol 1e-4, patience 3),
and prints the dev nats/token after every pass, to compare with the ladder's batch-only fit of
the same K, seed and split (its curve is in ladder_4096_em_curves.csv). From the repo root:

    python docs/results/online_warm_start.py K EPOCHS MB ALPHA MAX_BATCH_ITERS
"""

import logging
import math
import sys
import time

from hmm_lang.corpus import load_corpus
from hmm_lang.hmm.batching import pack_lanes
from hmm_lang.hmm.em import fit_em
from hmm_lang.hmm.fit import HMMFitConfig, batch_tokens_for, lane_len_for, split_fit_dev
from hmm_lang.hmm.inference import log_likelihood
from hmm_lang.hmm.init import initial_hmm
from hmm_lang.hmm.online import fit_online, minibatches
from hmm_lang.pretokenize import pretokenize
from hmm_lang.tokenizer import hf_dir

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
K, EPOCHS, MB, ALPHA, BATCH_ITERS = (
    int(sys.argv[1]),
    int(sys.argv[2]),
    int(sys.argv[3]),
    float(sys.argv[4]),
    int(sys.argv[5]),
)
corpus = load_corpus("../shared/data/tinystories_dev.txt")
train = pretokenize(corpus.train, hf_dir("tokenizers", 4096))
cfg = HMMFitConfig(states=K)
fit, dev, dev_bytes = split_fit_dev(train, None, cfg)
lane = lane_len_for(cfg, fit)
bt = batch_tokens_for(cfg, K, lane)
dev_b = pack_lanes(dev, bt, lane)
ntok, dtok = sum(map(len, fit)), sum(map(len, dev))
per_epoch = math.ceil(len(fit) / MB)
hmm = initial_hmm("split", fit, K, 4096, seed=0)
t0 = time.perf_counter()
ll, _ = log_likelihood(hmm, dev_b)
print(f"start dev {-ll / dtok:.4f}", flush=True)


def cb(k, m):
    if (k + 1) % per_epoch == 0:
        ll, _ = log_likelihood(m, dev_b)
        print(
            f"online epoch {(k + 1) // per_epoch} dev {-ll / dtok:.4f} t={time.perf_counter() - t0:.0f}s",
            flush=True,
        )


if EPOCHS:
    hmm, _ = fit_online(
        hmm,
        minibatches(fit, MB, 0, EPOCHS),
        ntok,
        alpha=ALPHA,
        smoothing=1e-3,
        batch_tokens=bt,
        callback=cb,
    )
if BATCH_ITERS:
    train_b = pack_lanes(fit, bt, lane)
    res = fit_em(hmm, train_b, dev_b, max_iter=BATCH_ITERS, tol=1e-4, patience=3, progress=False)
    for r in res.monitor.history:
        print(f"batch it {r.iteration} dev {r.dev_nats_per_token:.4f}", flush=True)
    print(f"stop {res.stop_reason} best {res.best_iteration} t={time.perf_counter() - t0:.0f}s")
