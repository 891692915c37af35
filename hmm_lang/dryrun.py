"""``hmm-lang run --dry-run``: every stage of the run with its sizes, peak memory and time,
estimated from the data's size and the profile (:mod:`hmm_lang.estimate`), without running a
stage, creating a folder, training a tokenizer or touching the network.

Local data is sized cheaply (file sizes, a count of story separators); ``tinystories`` uses the
dataset's documented sizes, never the hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from hmm_lang import estimate as E
from hmm_lang.datasize import DataSize, data_size
from hmm_lang.errors import HmmLangError
from hmm_lang.memory import GiB, available_bytes
from hmm_lang.profiles import PROFILES, Profile

# fits per cloned HMM: one per EM pseudocount, len(LadderConfig.cloned_smoothings) (not imported:
# the plan stays free of torch; a test checks the two agree)
CLONED_EM_FITS = 2


@dataclass
class Part:
    """One piece of a stage's work: what it does and sizes, where it runs, peak memory, time."""

    name: str
    what: str
    device: str
    ram: float  # peak resident bytes in main memory
    seconds: float
    gpu: float = 0.0  # peak bytes on the GPU


@dataclass
class StagePlan:
    name: str
    sizes: str
    parts: list[Part]

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.parts)

    @property
    def ram(self) -> float:
        return max(p.ram for p in self.parts)

    @property
    def gpu(self) -> float:
        return max(p.gpu for p in self.parts)

    @property
    def device(self) -> str:
        return "+".join(sorted({p.device for p in self.parts}))


@dataclass
class RunPlan:
    profile: str
    data: DataSize
    vocab_sizes: tuple[int, ...]
    stages: list[StagePlan]
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def ram(self) -> float:
        return max(s.ram for s in self.stages)

    @property
    def gpu(self) -> float:
        return max(s.gpu for s in self.stages)

    def stage(self, name: str) -> StagePlan:
        return next(s for s in self.stages if s.name == name)


def _n(x: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.{1 if x < 100 * div else 0}f}{unit}"
    return f"{x:.0f}"


def _size(b: float) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= div:
            return f"{b / div:.{2 if b < 10 * div else 1}f} {unit}"
    return f"{b:.0f} bytes"


def _mem(b: float) -> str:
    return "-" if b <= 0 else f"{b / GiB:.1f} GiB" if b >= 0.1 * GiB else f"{b / 2**20:.0f} MiB"


def _time(s: float) -> str:
    for unit, div in (("days", 86400), ("h", 3600), ("min", 60)):
        if s >= div * (2 if unit == "days" else 1):
            return f"{s / div:.1f} {unit}"
    return f"{s:.0f} s" if s >= 1 else "<1 s"


def _list(xs) -> str:
    return ",".join(map(str, xs))


def stage_names() -> list[str]:
    """The stages of ``hmm-lang run``, in order (:data:`hmm_lang.stages.STAGES`, then report)."""
    from hmm_lang import stages

    return [f.__name__.removeprefix("stage_") for f in stages.STAGES] + ["report"]


def _context(prof: Profile, size: DataSize, device: E.Device, data_args: dict, tokenizers_dir):
    from hmm_lang.stages import _transformer_config

    state = SimpleNamespace(profile=prof, tokenizers_dir=Path(tokenizers_dir), data_args=data_args)
    cfg = _transformer_config(state)  # the transformer stage's own config, overrides applied
    v = max(prof.vocab_sizes)
    m = cfg.model
    n = E.transformer_parameters(m.n_layers, m.d_model, m.n_heads, m.d_head, m.d_mlp, m.n_ctx, v)
    fpt = E.transformer_flops_per_token(n, m.n_layers, m.n_ctx, m.d_model)
    return SimpleNamespace(p=prof, d=size, dev=device, cfg=cfg, v=v, n=n, fpt=fpt, notes=[])


def _tokenizers(c) -> StagePlan:
    d, vs = c.d, c.p.vocab_sizes
    n = min(c.p.tokenizer_stories or d.train_stories, d.train_stories)
    n_bytes = d.train_bytes * n / max(d.train_stories, 1)
    secs = len(vs) * n_bytes / E.TOKENIZER_BPS
    return StagePlan(
        "tokenizers",
        f"BPE V={_list(vs)} on {n:,} stories ({_size(n_bytes)}); "
        "reused where an identical tokenizer exists",
        [Part("train", "BPE", "cpu", E.BASE_RAM + E.TOKENIZER_RAM, secs)],
    )


def _token_stats(c) -> StagePlan:
    d, vs = c.d, c.p.vocab_sizes
    toks = ", ".join(f"V={v} {_n(d.valid_tokens(v))}" for v in vs)
    secs = len(vs) * d.valid_bytes / E.PRETOKENIZE_BPS
    ram = E.BASE_RAM + 16.0 * d.valid_stories
    return StagePlan(
        "token_stats",
        f"pretokenize {d.valid_stories:,} valid stories: {toks} tokens",
        [Part("pretokenize", "valid", "cpu", ram, secs)],
    )


def _transformer(c) -> StagePlan:
    d, m, t, dev = c.d, c.cfg.model, c.cfg.train, c.dev
    tok = d.train_tokens(c.v)
    steps = t.total_steps
    seen = steps * t.batch_tokens
    step = E.transformer_step(m, t.batch_tokens, c.v, fused=dev.name == "gpu")
    weights = E.transformer_train_bytes(c.n, step)
    host = E.BASE_RAM + 24.0 * d.train_stories  # offsets, bytes, <s> places; tokens mapped
    gpu = weights if dev.name == "gpu" else 0.0
    # dev evals (stories carved from training) at every eval_interval, validation once
    dev_stories = max(1, int(d.train_stories * t.dev_fraction))
    evals = steps // t.eval_interval * min(t.eval_stories or dev_stories, dev_stories)
    eval_tok = evals * tok / max(d.train_stories, 1) + d.valid_tokens(c.v)
    have = available_bytes()
    if t.check_memory and dev.name != "gpu" and have is not None and step > have:
        c.notes.append(
            f"transformer: its step estimate ({_mem(step)}) exceeds the free RAM "
            f"({_mem(have)} here): the run would stop there unless "
            "train.check_memory=false or a smaller train.batch_tokens"
        )
    return StagePlan(
        "transformer",
        f"{c.p.transformer_config}: {m.n_layers}L d{m.d_model}, {_n(c.n)} params, V={c.v}; "
        f"{steps:,} steps x {t.batch_tokens:,} tokens = {_n(seen)} tokens "
        f"({seen / max(tok, 1):.2f} epochs of {_n(tok)})",
        [
            Part(
                "pretokenize",
                f"train, V={c.v}: {_size(E.stream_bytes(tok))} of uint16 on disk",
                "cpu",
                E.BASE_RAM,
                d.train_bytes / E.PRETOKENIZE_BPS,
            ),
            Part(
                "train",
                f"{c.fpt / 1e6:.1f} MFLOP/token",
                dev.name,
                host + weights - gpu,
                E.seconds(seen * c.fpt, dev),
                gpu,
            ),
            Part(
                "evaluate",
                f"{_n(eval_tok)} tokens",
                dev.name,
                host,
                E.seconds(eval_tok * c.fpt / 3, dev),
                16.0 * c.n if gpu else 0.0,
            ),
        ],
    )


def _analysis(c) -> StagePlan:
    p, m = c.p, c.cfg.model
    hooks = m.n_layers + 1
    ram = E.BASE_RAM + 4.0 * c.n + 24.0 * p.analysis_tokens**2 + hooks * 8.0 * m.d_model**2
    ram += 24.0 * c.d.valid_stories * m.n_ctx  # the validation stories as (S, n_ctx) chunks
    secs = E.seconds(2 * p.pca_tokens * c.fpt / 3, E.CPU)  # hooked path: ~2x the fused one
    return StagePlan(
        "analysis",
        f"similarity of {p.analysis_tokens:,} tokens, circuits, PCA of {p.pca_tokens:,} positions "
        f"at {hooks} hooks (model on CPU)",
        [Part("figures", "", "cpu", ram, secs)],
    )


def _ladder(c) -> StagePlan:
    p, d, v = c.p, c.d, c.v
    dense_its = min(p.hmm_max_iters, E.EM_ITERS)
    block_its = min(p.hmm_max_iters, E.BLOCK_EM_ITERS)
    cost: dict[str, list[float]] = {}  # family -> [seconds, peak bytes]

    def add(family: str, seconds: float, ram: float) -> None:
        s, r = cost.get(family, [0.0, 0.0])
        cost[family] = [s + seconds, max(r, E.BASE_RAM + ram)]

    hs = min(p.hmm_train_stories or d.train_stories, d.train_stories)
    n_smooth = CLONED_EM_FITS
    # as stages.ladder_config: the profile's ladder vocab sizes and the transformer's (the largest)
    ladder_v = sorted({*(p.ladder_vocab_sizes or p.vocab_sizes), max(p.vocab_sizes)})
    for vs in ladder_v:
        n, h = d.train_tokens(vs), _hmm_tokens(c, vs)
        fit = round(h * 0.95)  # less the dev split
        for o in (1, *p.ngram_orders):
            add("n-grams", E.ngram_seconds(o, n), E.ngram_count_bytes(n))
        for k in p.hmm_states:
            seeds = len(p.hmm_seeds) if k <= 256 else 1  # LadderConfig.multi_seed_max_states
            ram = E.dense_hmm_bytes(k, vs, h, hs)
            add("dense", seeds * E.dense_em_seconds(k, fit, dense_its, _hmm_dev(c)), ram)
        bigrams = E.distinct_ngrams(2, vs, h)
        for cl in p.cloned_clones:  # allocation auto: uniform (n) and frequency (up to 2n)
            for b in (cl, 2 * cl if cl > 1 else 1):
                ram = E.block_hmm_bytes(b, bigrams, vs, h, hs)
                # one fit per EM pseudocount (LadderConfig.cloned_smoothings)
                add("cloned", n_smooth * E.block_em_seconds(b, fit, block_its), ram)
        for k in p.blocked_states:
            m = min(p.blocked_clusters, k)
            ram = E.block_hmm_bytes(k // m, min(m * m, bigrams), vs, h, hs)
            add("blocked", E.block_em_seconds(k // m, fit, block_its), ram)
    h, top = _hmm_tokens(c, v), max(p.ngram_orders, default=1)
    other = [x for x in ladder_v if x != v]
    seeds = f"{len(p.hmm_seeds)} seeds up to K=256" if len(p.hmm_seeds) > 1 else "1 seed"
    model = E.ngram_model_bytes(top, v, d.train_tokens(v))
    grams, blocks = E.distinct_ngrams(top, v, d.train_tokens(v)), E.distinct_ngrams(2, v, h)
    what = {
        "n-grams": f"unigram, KN {_list(p.ngram_orders)}: ~{_n(grams)} {top}-grams at V={v}, "
        f"model {_size(model)} memory-mapped",
        "dense": f"K={_list(p.hmm_states)}, {seeds}",
        "cloned": f"{_list(p.cloned_clones)} clones x 2 allocations x {CLONED_EM_FITS} "
        f"EM pseudocounts; ~{_n(blocks)} blocks at V={v}",
        "blocked": f"K={_list(p.blocked_states)}, {p.blocked_clusters} clusters",
    }
    parts = []
    if other:
        secs = len(other) * d.train_bytes / E.PRETOKENIZE_BPS
        parts.append(Part("pretokenize", f"train, V={_list(other)}", "cpu", E.BASE_RAM, secs))
    where = {"dense": _hmm_dev(c).name}
    parts += [Part(f, what[f], where.get(f, "cpu"), r, s) for f, (s, r) in cost.items()]
    scoring = E.seconds(d.valid_tokens(v) * c.fpt / 3, E.CPU)
    parts.append(Part("transformer", "scored on CPU", "cpu", E.BASE_RAM + 4.0 * c.n, scoring))
    return StagePlan(
        "ladder",
        f"V={_list(ladder_v)}; n-grams on {_n(d.train_tokens(v))} tokens, HMMs on "
        f"{hs:,} stories ({_n(h)} tokens at V={v}); EM ~{dense_its} iterations dense, "
        f"~{block_its} cloned/blocked (cap {p.hmm_max_iters})",
        parts,
    )


def _hmm_dev(c) -> E.Device:
    """Dense EM's device: the GPU where the profile asks for one (``auto``) and plans one."""
    return E.GPU if c.p.hmm_device != "cpu" and c.dev is E.GPU else E.CPU


def _hmm_tokens(c, v: int) -> int:
    """Tokens at ``v`` of the training stories the ladder's HMMs fit (the profile's cap)."""
    d, cap = c.d, c.p.hmm_train_stories
    n = d.train_stories if cap is None else min(cap, d.train_stories)
    return round(d.train_tokens(v) * n / max(d.train_stories, 1))


def _beliefs(c) -> StagePlan:
    p, m, v = c.p, c.cfg.model, c.v
    s = min(p.hmm_train_stories or c.d.train_stories, c.d.train_stories)  # the HMM's stories
    tok = _hmm_tokens(c, v)
    its = min(p.hmm_max_iters, E.EM_ITERS)
    k, n, top = p.belief_states, p.belief_tokens, p.belief_top_tokens
    hooks, dim, sets = m.n_layers + 1, m.d_model + top, 3 * (m.n_layers + 1) + 2
    feats = n * 4.0 * ((2 * hooks + 1) * m.d_model + top)  # both models' hooks, logits (float32)
    targets = n * 8.0 * (k + 2 * 4 * max(k, top))  # beliefs; 4 targets and their shuffles
    joined = n * 8.0 * dim  # one hook joined with the logits at a time (float64 in the ridge)
    preds = n * 4.0 * k * hooks  # the history predictions kept for the geometry figure
    probe_flops = sets * (2.0 * n * dim * dim + 16.0 * n * dim * max(k, top))
    fit = E.dense_em_seconds(k, round(tok * 0.95), its, _hmm_dev(c))
    return StagePlan(
        "beliefs",
        f"dense HMM K={k} on {s:,} training stories ({_n(tok)} tokens, V={v}, EM ~{its} "
        f"iterations); "
        f"probes on {n:,} positions, {p.belief_k_folds} folds, {p.belief_boot} resamples",
        [
            Part(
                "hmm",
                f"dense K={k}",
                _hmm_dev(c).name,
                E.BASE_RAM + E.dense_hmm_bytes(k, v, tok, s),
                fit,
            ),
            Part(
                "residuals",
                "2 models, on CPU",
                "cpu",
                E.BASE_RAM + 8.0 * c.n + feats + n * 8.0 * k,
                E.seconds(4 * n * c.fpt / 3, E.CPU),
            ),
            Part(
                "probes",
                f"ridge, {sets} feature sets x 4 targets",
                "cpu",
                E.BASE_RAM + feats + targets + joined + preds,
                E.seconds(probe_flops, E.CPU),
            ),
        ],
    )


def _report(c) -> StagePlan:
    return StagePlan(
        "report", "summary.md and report.html", [Part("write", "", "cpu", E.BASE_RAM, 5.0)]
    )


PLANNERS = {
    "tokenizers": _tokenizers,
    "token_stats": _token_stats,
    "transformer": _transformer,
    "analysis": _analysis,
    "ladder": _ladder,
    "beliefs": _beliefs,
    "report": _report,
}


def plan_run(
    data: str = "default",
    valid: str | None = None,
    profile: str = "cpu",
    max_stories: int | None = None,
    seed: int = 0,
    tokenizers_dir: str | Path = "tokenizers",
    valid_fraction: float = 0.1,
) -> RunPlan:
    """Every stage of ``hmm-lang run`` (the arguments of :func:`hmm_lang.pipeline.run_pipeline`)
    with its sizes, peak memory and time. Reads file sizes and counts separators, nothing else."""
    if profile not in PROFILES:
        raise HmmLangError(f"unknown profile {profile!r}; choose {', '.join(PROFILES)}")
    prof = PROFILES[profile]
    size = data_size(
        data, valid, max_stories, valid_fraction, prof.synthetic_stories, prof.max_valid_stories
    )
    device = E.GPU if profile == "gpu" else E.CPU
    data_args = {"data": data, "valid": valid, "max_stories": max_stories, "seed": seed}
    data_args["valid_fraction"] = valid_fraction
    c = _context(prof, size, device, data_args, tokenizers_dir)
    names = stage_names()
    missing = [s for s in names if s not in PLANNERS]
    if missing:
        raise HmmLangError(f"no dry-run estimate for stage(s) {', '.join(missing)}")
    plan = RunPlan(profile, size, prof.vocab_sizes, [PLANNERS[s](c) for s in names])
    have = available_bytes()
    for s in plan.stages:
        if have is not None and s.ram > have:
            plan.notes.append(
                f"{s.name}: needs about {_mem(s.ram)} of RAM, {_mem(have)} is free here"
            )
    plan.notes += c.notes
    return plan
