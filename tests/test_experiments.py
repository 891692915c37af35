"""The experiments in smoke mode: ladder, belief probing, HMM anatomy, probes."""

import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from hmm_lang.analysis.hmm_states import (
    entropy_bits,
    sample_predictive,
    state_usage,
    strongest_transitions,
    top_tokens,
)
from hmm_lang.analysis.probing import ridge_probe
from hmm_lang.cli import main
from hmm_lang.config import apply_overrides, load_config
from hmm_lang.experiments.beliefs import dominant_states, run_beliefs
from hmm_lang.experiments.ladder import LadderConfig, run_ladder
from hmm_lang.experiments.ladder_table import read_ladder_csv
from hmm_lang.experiments.paired import load_story_nats, paired_rows
from hmm_lang.hmm import random_hmm
from hmm_lang.plots.ladder import ladder_figure
from hmm_lang.runs import check_run_split
from hmm_lang.tokenizer import hf_dir
from hmm_lang.transformer.train import train
from tests.conftest import SMOKE_STORIES


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tokenizers_dir):
    cfg = apply_overrides(
        load_config("tiny"),
        # the ladder refuses a run trained on another split: same corpus as the fixture
        [f"data.tokenizer={hf_dir(tokenizers_dir, 1024)}", f"data.max_stories={SMOKE_STORIES}"],
    )
    return train(cfg, tmp_path_factory.mktemp("runs"), progress=False)


def test_ridge_probe_known_answers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    y = x @ rng.normal(size=(5, 3)) + 0.01 * rng.normal(size=(2000, 3))
    groups = np.arange(2000) // 20
    assert ridge_probe(x, y, groups).r2 > 0.99
    assert ridge_probe(x, rng.normal(size=(2000, 3)), groups).r2 < 0.05


def test_ladder_smoke(tmp_path, corpus, tokenizers_dir, tiny_run, capsys):
    cfg = LadderConfig(
        vocab_sizes=(1024,),
        ngram_orders=(1, 2, 3),
        hmm_states=(4,),
        max_iters=2,
        seeds=(0, 1),
        cloned_clones=(2,),
        max_train_stories=150,
        n_boot=200,
        transformer_runs=[str(tiny_run)],
    )
    run_dir, rows = run_ladder(corpus, tokenizers_dir, cfg, tmp_path)
    families = {r["family"] for r in rows}
    assert families == {"unigram", "n-gram", "dense HMM", "cloned HMM", "transformer"}
    assert all(math.isfinite(r["bits_per_byte"]) and r["n_parameters"] > 0 for r in rows)
    for r in rows:  # every number has an interval, and a paired difference to KN5... here KN3
        assert r["bpb_lo"] <= r["bits_per_byte"] <= r["bpb_hi"]
    hmm = next(r for r in rows if r["family"] == "dense HMM")
    assert hmm["n_seeds"] == 2 and len(hmm["stop_reason"]) == 2
    assert {p.name for p in run_dir.iterdir()} >= {
        "ladder.csv",
        "ladder.md",
        "ladder.html",
        "config.yaml",
        "story_nats_1024.npz",
    }
    # any two models compared on the same stories: each side's number and interval are the
    # table's (same resamples), and the difference is exactly theirs
    nats, story_bytes = load_story_nats(run_dir / "story_nats_1024.npz")
    assert set(nats) == {r["model"] for r in rows}
    tr = next(r for r in rows if r["family"] == "transformer")
    (p,) = paired_rows(nats, story_bytes, [(tr["model"], hmm["model"])], n_boot=200)
    assert (p["a_bits_per_byte"], p["a_lo"], p["a_hi"]) == pytest.approx(
        (tr["bits_per_byte"], tr["bpb_lo"], tr["bpb_hi"]), rel=1e-12
    )
    assert (p["b_bits_per_byte"], p["b_lo"], p["b_hi"]) == pytest.approx(
        (hmm["bits_per_byte"], hmm["bpb_lo"], hmm["bpb_hi"]), rel=1e-12
    )
    assert p["diff"] == pytest.approx(tr["bits_per_byte"] - hmm["bits_per_byte"], rel=1e-9)
    assert p["diff_lo"] <= p["diff"] <= p["diff_hi"] and 0 <= p["a_wins"] <= 1
    assert main(
        ["experiment", "paired", "--ladder", str(run_dir), "--vocab-size", "1024",
         "--pair", tr["model"], hmm["model"]]
    ) == 0  # fmt: skip
    # without --n-boot: the ladder's own resamples (200, its config.yaml), so the table's interval
    want = f"| {tr['model']} | {hmm['model']} | {tr['bits_per_byte']:.4f} [{tr['bpb_lo']:.4f}, "
    assert want + f"{tr['bpb_hi']:.4f}]" in capsys.readouterr().out
    assert main(
        ["experiment", "paired", "--ladder", str(run_dir), "--vocab-size", "1024",
         "--pair", "KN 9-gram", hmm["model"]]
    ) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no per-story nats for ['KN 9-gram']") and "\n" not in err
    assert main(
        ["experiment", "paired", "--ladder", str(run_dir), "--vocab-size", "4096",
         "--pair", tr["model"], hmm["model"]]
    ) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "no story_nats_4096.npz" in err and "story_nats_1024.npz" in err and "\n" not in err
    back = read_ladder_csv(run_dir / "ladder.csv")  # what a figure of several ladders reads
    assert [{k: v for k, v in r.items() if v is not None} for r in back] == [
        {k: v for k, v in r.items() if v is not None} for r in rows
    ]
    fig = ladder_figure(rows)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.title.text == "bits per byte"
    assert len(fig.data) == 5  # one trace per family at one vocab size
    assert fig.data[0].error_y.array is not None


def test_two_runs_of_one_recipe_get_two_names(tmp_path, corpus, tokenizers_dir, tiny_run):
    # the table, the per-story nats and a paired difference must name each run alike
    cfg = LadderConfig(
        vocab_sizes=(1024,),
        ngram_orders=(1, 2),
        hmm_states=(),
        cloned_clones=(),
        n_boot=50,
        transformer_runs=[str(tiny_run), str(tiny_run)],
    )
    run_dir, rows = run_ladder(corpus, tokenizers_dir, cfg, tmp_path)
    names = [r["model"] for r in rows if r["family"] == "transformer"]
    assert len(names) == 2 and names[1] == f"{names[0]} ({tiny_run.name})"
    nats, _ = load_story_nats(run_dir / "story_nats_1024.npz")
    assert set(nats) == {r["model"] for r in rows}
    assert np.array_equal(nats[names[0]], nats[names[1]])  # the same run, scored twice


def test_ladder_refuses_a_run_of_another_split(tmp_path, tiny_run):
    from hmm_lang.corpus import load_corpus
    from hmm_lang.errors import HmmLangError

    other = load_corpus("default", synthetic_stories=SMOKE_STORIES, seed=1)
    with pytest.raises(HmmLangError, match="another split"):
        check_run_split(tiny_run, other)


def test_beliefs_smoke(tmp_path, tiny_run):
    from hmm_lang.experiments.beliefs import SMOKE

    out, rows, kl, figs = run_beliefs(tiny_run, None, tmp_path, **SMOKE)
    assert {r["control"] for r in rows} == {
        "token_baseline",
        "trained",
        "token_shuffle",
        "random_init",
    }
    assert {r["target"] for r in rows} == {"belief", "history", "ahead2", "ahead3"}
    header = (out / "beliefs.csv").read_text().splitlines()[0].split(",")
    for col in ("target", "features", "control", "r2", "r2_lo", "r2_hi"):
        assert col in header
    for r in rows:
        assert r["r2_lo"] <= r["r2_hi"] and r["above_lo"] <= r["above_hi"]
        assert r["n_positions"] >= 1000
    base = [r for r in rows if r["control"] == "token_baseline"]
    assert all(r["above_token"] == 0 for r in base)
    # history is the belief less its training mean given the token: the token explains less of
    # it than of the belief
    r2 = {r["target"]: r["r2"] for r in base}
    assert r2["history"] < r2["belief"]
    assert kl["kl_transformer_hmm_nats"] >= 0 and 0 <= kl["share_top_state_above_0.9"] <= 1
    assert (out / "hmm.pt").exists() and (out / "kl.json").exists()
    assert set(figs) == {"r2_by_layer", "history_geometry", "embedding_by_hmm_state"}


def test_beliefs_of_a_blocked_hmm(tmp_path, tiny_run, capsys):
    """A blocked HMM's beliefs are probed through its exact dense form: at each position the
    belief lies on the states of the token's cluster and equals the blocked filter; the CLI
    records the family; a cloned HMM is refused with one line before any folder."""
    from hmm_lang.cli import main
    from hmm_lang.experiments.belief_probes import one_story_per_lane
    from hmm_lang.experiments.beliefs import belief_hmm
    from hmm_lang.hmm.blocked_init import init_blocked_hmm
    from hmm_lang.hmm.inference import forward
    from hmm_lang.runs import load_run, run_streams

    run = load_run(tiny_run)
    train_s, valid = run_streams(run)
    v, m, n = len(run.tokenizer), 8, 2
    cluster = np.arange(v) % m
    stories = [s.astype(np.int64) for s in train_s.stories()]
    blocked = init_blocked_hmm(stories, v, cluster, n, seed=0)
    blocked.save(tmp_path / "blocked.pt")
    dense, info = belief_hmm(tmp_path / "blocked.pt")
    assert (info["family"], info["n_states"], info["clusters"]) == ("BlockedHMM", m * n, m)
    lanes = one_story_per_lane([valid.story(i).astype(np.int64) for i in range(3)])
    alpha = forward(dense, lanes).alpha.transpose(0, 1)  # (N, T, K)
    own = blocked.filter_beliefs(lanes)  # (N, T, n) over the token's cluster
    state_cluster = torch.arange(m * n) // n
    for i in range(3):
        for t in range(int(lanes.valid[i].sum())):
            c = int(cluster[int(lanes.tokens[i, t])])
            inside = state_cluster == c
            assert float(alpha[i, t][~inside].abs().max()) == 0.0
            torch.testing.assert_close(
                alpha[i, t][inside].double(), own[i, t].double(), rtol=1e-5, atol=1e-7
            )
    out_dir = tmp_path / "out"
    args = ["experiment", "beliefs", "--run", str(tiny_run), "--hmm", str(tmp_path / "blocked.pt")]
    assert main(args + ["--smoke", "--out-dir", str(out_dir)]) == 0
    (folder,) = [p for p in out_dir.iterdir() if p.name.endswith("_beliefs")]
    kl = json.loads((folder / "kl.json").read_text())
    assert kl["hmm"]["family"] == "BlockedHMM" and kl["hmm"]["n_states"] == m * n
    rows = list(csv.DictReader((folder / "beliefs.csv").open()))
    assert {r["target"] for r in rows} == {"belief", "history", "ahead2", "ahead3"}
    assert not (folder / "hmm.pt").exists()  # the given HMM is not refitted

    from hmm_lang.hmm.cloned_init import init_cloned_hmm

    init_cloned_hmm(stories, v, 2).save(tmp_path / "cloned.pt")
    capsys.readouterr()
    cloned = args[:-1] + [str(tmp_path / "cloned.pt"), "--smoke", "--out-dir", str(tmp_path / "c")]
    assert main(cloned) == 2 and not (tmp_path / "c").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "cloned HMM" in err[0]


def test_probes_know_the_answer():
    """Folded ridge recovers a linear target and not noise; the token baseline and the
    within-token shuffle behave as their definitions say; bootstrap R^2 with every story
    drawn once is the pooled R^2."""
    from hmm_lang.analysis.probing import (
        FoldedRidge,
        StoryBootstrap,
        cv_token_means,
        group_sums,
        r2_score,
    )
    from hmm_lang.experiments.belief_probes import probe_rows, shuffle_within_tokens

    rng = np.random.default_rng(0)
    n, v = 6000, 30
    groups = np.repeat(np.arange(200), n // 200)
    tokens = rng.integers(0, v, size=n)
    prev = np.roll(tokens, 1)
    code = rng.normal(size=(v, 8))
    x_tok = code[tokens] + 0.01 * rng.normal(size=(n, 8))  # knows only the current token
    x_hist = np.concatenate([x_tok, code[prev]], 1)  # also knows the previous token
    w = rng.normal(size=(8, 3))
    y = code[prev] @ w  # depends on history, not on the current token
    assert r2_score(y, FoldedRidge(x_hist, groups, 5).predict(y)) > 0.99
    assert r2_score(y, FoldedRidge(x_tok, groups, 5).predict(y)) < 0.05
    z = code[tokens] @ w
    assert r2_score(z, cv_token_means(tokens, z, groups)) > 0.999
    sh = shuffle_within_tokens(y, tokens)
    for t in range(v):
        a, b = np.sort(y[tokens == t], 0), np.sort(sh[tokens == t], 0)
        np.testing.assert_array_equal(a, b)
    boot = StoryBootstrap(np.ones((1, 200)), groups)
    ridge = FoldedRidge(x_hist, groups, 5)
    p = ridge.predict(y)
    # the inner validation R^2 from Gram and cross products is the direct one
    cross = [ridge.x[r].T @ y[r] for r in ridge.rows]
    w = ridge._solve([0, 1, 2], cross, 0.1)
    direct = r2_score(y[ridge.rows[3]], ridge.x[ridge.rows[3]] @ w)
    assert ridge._val_r2(w, 3, cross, y[ridge.rows[3]]) == pytest.approx(direct, abs=1e-9)
    sums = np.zeros((v, 3))
    np.add.at(sums, tokens, y)
    np.testing.assert_allclose(group_sums(tokens, y, v), sums, rtol=1e-12, atol=1e-12)
    assert boot.r2(y, p)[0] == pytest.approx(r2_score(y, p))
    rows, _ = probe_rows(
        {"blocks.0.hook_resid_pre": x_tok, "blocks.0.hook_resid_post": x_hist},
        {"history": y},
        tokens,
        groups,
        n_boot=100,
        progress=False,
    )
    by = {(r["features"], r["control"]): r for r in rows}
    tok_only = by[("blocks.0.hook_resid_pre", "trained")]
    hist = by[("blocks.0.hook_resid_post", "trained")]
    assert tok_only["above_hi"] < 0.05  # a token-only probe: nothing above the baseline
    assert hist["above_lo"] > 0.9  # history is there and the interval says so
    assert by[("blocks.0.hook_resid_post", "token_shuffle")]["r2"] < 0.05


def test_hmm_anatomy_functions():
    hmm = random_hmm(5, 12, seed=0, dtype=torch.float64)
    ids, p = top_tokens(hmm, 3)
    assert ids.shape == (5, 3) and np.all(np.diff(p, axis=1) <= 0)
    edges = strongest_transitions(hmm, 6)
    assert len(edges) == 6 and all(i != j for i, j, _ in edges)
    usage = state_usage(hmm, [np.arange(12), np.arange(6)])
    assert usage.sum() == pytest.approx(1.0) and 0 < entropy_bits(usage) <= math.log2(5)
    cold = sample_predictive(hmm, 50, 20, temperature=0.1, seed=0)
    hot = sample_predictive(hmm, 50, 20, temperature=1.0, seed=0)
    distinct = lambda seqs: len({int(t) for s in seqs for t in s})  # noqa: E731
    assert distinct(cold) <= distinct(hot)
    assert dominant_states(hmm).shape == (12,)


def test_lvd_start_and_starts_experiment(tmp_path, corpus, tokenizers_dir, tiny_run):
    from hmm_lang.experiments.starts import StartsConfig, run_starts
    from hmm_lang.hmm.fit import HMMFitConfig, fit_hmm
    from hmm_lang.pretokenize import pretokenize

    tok = hf_dir(tokenizers_dir, 1024)
    train = pretokenize(corpus.train, tok).head(200)
    res = fit_hmm(train, None, HMMFitConfig(states=6, init="lvd", run=str(tiny_run), max_iters=3))
    assert res.choices["init"] == "lvd" and res.iterations <= 3
    assert math.isfinite(res.dev_score.bits_per_byte)
    cfg = StartsConfig(
        states=(6,),
        inits=("split", "class-bigram", "lvd"),
        run=str(tiny_run),
        max_iters=3,
        max_train_stories=200,
    )
    out, summary = run_starts(corpus, tok, cfg, tmp_path)
    assert {s["init"] for s in summary} == {"split", "class-bigram", "lvd"}
    assert (out / "curves.csv").exists() and (out / "starts.html").exists()


def test_an_interrupted_ladder_keeps_its_finished_rows(
    tmp_path, corpus, tokenizers_dir, monkeypatch
):
    import csv

    from hmm_lang.experiments import fit_cache
    from hmm_lang.records import discard_incomplete

    def killed(*a, **k):
        raise KeyboardInterrupt  # Ctrl-C during the first HMM fit

    monkeypatch.setattr(fit_cache, "fit_hmm", killed)
    cfg = LadderConfig(vocab_sizes=(1024,), ngram_orders=(1, 2, 3), hmm_states=(4,), n_boot=50)
    with pytest.raises(KeyboardInterrupt):
        run_ladder(corpus, tokenizers_dir, cfg, tmp_path)
    discard_incomplete()  # what the CLI does after Ctrl-C: this folder holds results, so stays
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.endswith("_ladder")]
    with open(run_dir / "ladder.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["unigram", "KN 2-gram", "KN 3-gram"]
    assert all(float(r["bpb_lo"]) <= float(r["bits_per_byte"]) <= float(r["bpb_hi"]) for r in rows)
    assert (run_dir / ".incomplete").exists() and "KN 3-gram" in (run_dir / "ladder.md").read_text()


def test_a_stopped_ladder_resumes_from_its_saved_fits(
    tmp_path, corpus, tokenizers_dir, monkeypatch
):
    from hmm_lang.errors import HmmLangError
    from hmm_lang.experiments import fit_cache
    from hmm_lang.records import discard_incomplete, is_complete

    real, calls = fit_cache.fit_hmm, []

    def second_fit_killed(train, valid, cfg, **kw):
        calls.append(cfg)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the cloned fit, after the dense one ended
        return real(train, valid, cfg, **kw)

    monkeypatch.setattr(fit_cache, "fit_hmm", second_fit_killed)
    cfg = LadderConfig(
        vocab_sizes=(1024,),
        ngram_orders=(1, 2),
        hmm_states=(4,),
        seeds=(0,),
        cloned_clones=(2,),
        cloned_smoothings=(1e-3,),  # one cloned fit
        max_iters=2,
        max_train_stories=150,
        n_boot=50,
    )
    with pytest.raises(KeyboardInterrupt):
        run_ladder(corpus, tokenizers_dir, cfg, tmp_path / "a")
    discard_incomplete()
    (run_dir,) = (tmp_path / "a").iterdir()
    assert len(list((run_dir / "fits").glob("*.npz"))) == 1  # the dense fit, saved as it ended

    calls.clear()
    monkeypatch.setattr(
        fit_cache, "fit_hmm", lambda t, v, c, **kw: calls.append(c) or real(t, v, c, **kw)
    )
    out, rows = run_ladder(corpus, tokenizers_dir, cfg, tmp_path / "unused", resume=run_dir)
    assert out == run_dir and is_complete(run_dir) and not (tmp_path / "unused").exists()
    assert len(calls) == 1 and calls[0].cloned  # only the unfinished fit ran
    assert len(list((run_dir / "fits").glob("*.npz"))) == 2

    # a reused fit gives the row a fresh ladder gives (fits are deterministic)
    _, fresh = run_ladder(corpus, tokenizers_dir, cfg, tmp_path / "fresh")
    assert [r["model"] for r in rows] == [r["model"] for r in fresh]
    for a, b in zip(rows, fresh, strict=True):
        assert a["bits_per_byte"] == pytest.approx(b["bits_per_byte"], rel=1e-9)
        assert a["bpb_lo"] == pytest.approx(b["bpb_lo"], rel=1e-9)
        assert a.get("iterations") == b.get("iterations")

    # a damaged saved fit is fitted again, not a crash
    calls.clear()
    sorted((run_dir / "fits").glob("*.npz"))[0].write_bytes(b"PK\x03\x04 cut")
    run_ladder(corpus, tokenizers_dir, cfg, tmp_path, resume=run_dir)
    assert len(calls) == 1

    # a changed setting is a new fit, never the stale one
    calls.clear()
    run_ladder(corpus, tokenizers_dir, replace(cfg, max_iters=3), tmp_path, resume=run_dir)
    assert len(calls) == 2 and all(c.max_iters == 3 for c in calls)

    with pytest.raises(HmmLangError, match="not a ladder folder"):
        run_ladder(corpus, tokenizers_dir, cfg, tmp_path, resume=tmp_path / "a")


def test_a_fit_killed_mid_em_continues_from_its_saved_state(
    tmp_path, corpus, tokenizers_dir, monkeypatch
):
    """A ladder killed in the middle of a fit's EM goes on from the saved EM state, and ends
    with the row an uninterrupted ladder gives; the state files go once the fit is saved."""
    from hmm_lang.experiments.ladder import ladder_rows
    from hmm_lang.hmm import em

    cfg = LadderConfig(
        vocab_sizes=(1024,),
        ngram_orders=(1,),
        hmm_states=(4,),
        seeds=(0,),
        cloned_clones=(2,),
        cloned_allocation="uniform",
        cloned_smoothings=(1e-3,),
        max_iters=8,
        tol=0.0,  # no early stop: the kill lands mid-EM
        max_train_stories=150,
        n_boot=50,
    )
    whole = ladder_rows(corpus, tokenizers_dir, cfg)
    monkeypatch.setattr(em, "CHECKPOINT_SECONDS", 0.0)  # save after every iteration
    real, calls = em.e_step, []

    def killed_at_fifth(*a, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(em, "e_step", killed_at_fifth)
    fits = tmp_path / "fits"
    with pytest.raises(KeyboardInterrupt):
        ladder_rows(corpus, tokenizers_dir, cfg, fits_dir=fits)
    (state,) = fits.glob("*.partial.restart0.pt")  # the dense fit's EM after 4 iterations
    assert not list(fits.glob("*.npz"))
    calls.clear()
    rows = ladder_rows(corpus, tokenizers_dir, cfg, fits_dir=fits)
    assert len(calls) == 8 - 4  # the dense fit ran only its last iterations
    assert not list(fits.glob("*.pt")) and len(list(fits.glob("*.npz"))) == 2
    for a, b in zip(rows, whole, strict=True):
        assert a["model"] == b["model"] and a.get("iterations") == b.get("iterations")
        assert a["bits_per_byte"] == b["bits_per_byte"]  # bit for bit: EM is deterministic


def test_the_cloned_em_pseudocount_is_chosen_on_dev(corpus, tokenizers_dir, monkeypatch):
    """Each EM pseudocount is fitted; the row is the one best on dev (never on validation),
    and its seconds count every fit tried."""
    from hmm_lang.experiments import ladder

    seen, real = [], ladder.best_on_dev
    monkeypatch.setattr(ladder, "best_on_dev", lambda f, s: seen.append((f, s)) or real(f, s))
    cfg = LadderConfig(
        vocab_sizes=(1024,),
        ngram_orders=(1,),
        hmm_states=(),
        seeds=(0,),
        cloned_clones=(2,),
        cloned_allocation="uniform",
        cloned_smoothings=(1e-5, 1.0),
        max_iters=3,
        max_train_stories=150,
        n_boot=50,
    )
    rows = ladder.ladder_rows(corpus, tokenizers_dir, cfg)
    (row,) = [r for r in rows if r["family"] == "cloned HMM"]
    ((fits, smoothings),) = seen
    dev = [f.dev_bits_per_byte for f in fits]
    best = int(np.argmin(dev))
    assert len(fits) == 2 and dev[0] != dev[1]
    assert row["choices"]["em_smoothing"] == smoothings[best]
    assert row["bits_per_byte"] == pytest.approx(fits[best].valid_bits_per_byte, rel=1e-9)
    assert row["seconds"] == pytest.approx(sum(f.seconds for f in fits), abs=0.01)


def test_fit_keys_follow_data_and_settings(corpus, tokenizers_dir):
    from hmm_lang.experiments.fit_cache import fit_key
    from hmm_lang.hmm.fit import HMMFitConfig
    from hmm_lang.pretokenize import pretokenize

    tok = hf_dir(tokenizers_dir, 1024)
    train, valid = pretokenize(corpus.train, tok), pretokenize(corpus.valid, tok)
    cfg = HMMFitConfig(states=8)
    key = fit_key(train, valid, cfg)
    assert key == fit_key(train, valid, HMMFitConfig(states=8))
    assert key != fit_key(train, valid, replace(cfg, seed=1))
    assert key != fit_key(train, valid, replace(cfg, tol=1e-3))
    assert key != fit_key(train, valid.select(np.arange(valid.n_stories - 1)), cfg)
    other = pretokenize(corpus.train, hf_dir(tokenizers_dir, 2048))
    assert key != fit_key(other, valid, cfg)  # another tokenizer, same text
