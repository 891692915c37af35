"""``hmm-lang experiment ladder|paired|starts|beliefs|sample``: the study's experiments from the shell."""

from __future__ import annotations


def cmd_ladder(args) -> None:
    from hmm_lang.cli.data_args import corpus_from_args
    from hmm_lang.config import auto_cuda
    from hmm_lang.experiments.ladder import LadderConfig, markdown_table, run_ladder

    cfg = LadderConfig(
        vocab_sizes=tuple(args.vocab_sizes),
        ngram_orders=tuple(args.orders),
        hmm_states=tuple(args.states),
        seeds=tuple(args.seeds),
        multi_seed_max_states=args.multi_seed_max_states,
        hmm_init=args.init,
        max_iters=args.max_iters,
        tol=args.tol,
        patience=args.patience,
        cloned_clones=tuple(args.clones),
        cloned_allocation=args.allocation,
        cloned_smoothings=tuple(args.cloned_smoothing),
        blocked_states=tuple(args.blocked_states),
        blocked_clusters=args.blocked_clusters,
        blocked_block_size=args.blocked_block_size,
        blocked_config=args.blocked_config,
        n_boot=args.n_boot,
        max_train_stories=args.max_train_stories,
        transformer_runs=list(args.runs),
        hmm_device=auto_cuda(args.device),
    )
    if args.resume is not None:  # before any work: a wrong folder is one error line
        from hmm_lang.experiments.ladder import check_resume

        check_resume(args.resume)
    run_dir, rows = run_ladder(
        corpus_from_args(args), args.tokenizers_dir, cfg, args.out_dir, resume=args.resume
    )
    print(markdown_table(rows))
    print(f"run folder: {run_dir}")


def cmd_paired(args) -> None:
    from pathlib import Path

    import yaml

    from hmm_lang.errors import HmmLangError
    from hmm_lang.experiments.paired import load_story_nats, paired_markdown, paired_rows

    folder = Path(args.ladder)
    n_boot = args.n_boot
    if n_boot is None:  # the ladder's own, so that each side's interval is its table's
        cfg = folder / "config.yaml"
        saved = (yaml.safe_load(cfg.read_text()) or {}) if cfg.is_file() else {}
        n_boot = (saved.get("ladder") or {}).get("n_boot")
        n_boot = n_boot or 1000
    if n_boot < 10:
        raise HmmLangError(f"--n-boot must be at least 10, got {n_boot}")
    nats, story_bytes = load_story_nats(folder / f"story_nats_{args.vocab_size}.npz")
    rows = paired_rows(nats, story_bytes, [tuple(p) for p in args.pair], n_boot=n_boot)
    print(paired_markdown(rows, f"V={args.vocab_size}, {len(story_bytes)} validation stories"))


def cmd_beliefs(args) -> None:
    from hmm_lang.errors import HmmLangError
    from hmm_lang.experiments.beliefs import SMOKE, belief_hmm, run_beliefs
    from hmm_lang.runs import find_run

    sizes = dict(
        states=args.states, iters=args.iters, n_tokens=args.tokens, k_folds=args.k_folds,
        n_boot=args.n_boot, top_tokens=args.top_tokens,
    )  # fmt: skip
    if args.smoke:
        sizes |= {k: v for k, v in SMOKE.items() if getattr(args, _FLAG[k]) is None}
    sizes = {k: (DEFAULTS[k] if v is None else v) for k, v in sizes.items()}
    if min(sizes.values()) < 1 or sizes["k_folds"] < 3 or sizes["n_boot"] < 10:
        raise HmmLangError(
            "--tokens, --states, --iters, --top-tokens must be >= 1, --k-folds >= 3, --n-boot >= 10"
        )
    hmm, info = belief_hmm(args.hmm) if args.hmm else (None, None)
    run = find_run(args.run, args.out_dir)
    out, rows, kl, _ = run_beliefs(run, hmm, args.out_dir, **sizes, hmm_info=info)
    print((out / "beliefs.md").read_text())
    print(
        f"KL(transformer || HMM) {kl['kl_transformer_hmm_nats']:.4f} nats, reverse {kl['kl_hmm_transformer_nats']:.4f}"
    )
    print(f"run folder: {out}")


DEFAULTS = dict(states=256, iters=300, n_tokens=200_000, k_folds=5, n_boot=1000, top_tokens=256)
_FLAG = dict(
    states="states", iters="iters", n_tokens="tokens", k_folds="k_folds", n_boot="n_boot",
    top_tokens="top_tokens",
)  # fmt: skip


def cmd_starts(args) -> None:
    from hmm_lang.cli.data_args import corpus_from_args
    from hmm_lang.experiments.starts import StartsConfig, run_starts

    cfg = StartsConfig(
        states=tuple(args.states),
        inits=tuple(args.inits),
        run=args.run,
        max_iters=args.max_iters,
        tol=args.tol,
        patience=args.patience,
    )
    cfg.validate()  # before the corpus is read
    run_dir, summary = run_starts(corpus_from_args(args), args.tokenizer, cfg, args.out_dir)
    print((run_dir / "summary.md").read_text())
    print(f"run folder: {run_dir}")


def cmd_sample(args) -> None:
    from hmm_lang.experiments.sampled import sample_corpus
    from hmm_lang.pretokenize import load_stream

    out = sample_corpus(
        args.hmm, args.tokenizer, args.out, args.stories, max_len=args.max_len, seed=args.seed
    )
    s = load_stream(out)
    print(f"{s.n_stories} stories, {s.n_tokens} tokens, {s.n_bytes} bytes: {out}")
    print(
        f"train on it: hmm-lang train --config <config.yaml> --data {out} --tokenizer {args.tokenizer}"
    )


def register(sub) -> None:
    from hmm_lang.cli.data_args import add_data_args

    p = sub.add_parser(
        "experiment", help="the study's experiments: ladder, paired, starts, beliefs, sample"
    )
    exp = p.add_subparsers(dest="experiment", required=True)
    q = exp.add_parser("ladder", help="bits per byte of every model family, per tokenizer")
    add_data_args(q)
    q.add_argument("--vocab-sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    q.add_argument("--orders", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    q.add_argument("--states", type=int, nargs="*", default=[16, 64, 256, 1024])
    q.add_argument("--clones", type=int, nargs="*", default=[1, 4, 16])
    q.add_argument("--blocked-states", type=int, nargs="*", default=[], help="K of blocked HMMs")
    q.add_argument("--blocked-clusters", type=int, default=512, help="M of blocked HMMs")
    q.add_argument(
        "--blocked-block-size", type=int, default=None, help="states per cluster (M = K / this)"
    )
    q.add_argument(
        "--blocked-config", default=None, help="YAML of blocked fit settings (hmm_best.yaml)"
    )
    q.add_argument("--max-iters", "--iters", dest="max_iters", type=int, default=300)
    q.add_argument("--tol", type=float, default=1e-4, help="dev gain (nats/token) that counts")
    q.add_argument("--patience", type=int, default=3)
    q.add_argument("--init", default="split", help="dense HMM start: split, class-bigram, random")
    q.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    q.add_argument(
        "--multi-seed-max-states", type=int, default=256, help="larger K get the first seed only"
    )
    q.add_argument("--allocation", choices=["uniform", "frequency", "auto"], default="auto")
    q.add_argument(
        "--cloned-smoothing",
        type=float,
        nargs="+",
        default=[1e-5, 1e-3],
        help="EM pseudocounts of cloned HMMs: each is fitted, the best on dev kept",
    )
    q.add_argument("--n-boot", type=int, default=1000, help="story-bootstrap resamples")
    q.add_argument("--max-train-stories", type=int, default=None)
    q.add_argument("--runs", nargs="*", default=[], help="trained transformer run folders")
    q.add_argument(
        "--device",
        default="cpu",
        help="where dense EM runs: cpu, cuda[:N] or auto (cloned and blocked fits use the CPU)",
    )
    q.add_argument("--tokenizers-dir", default="tokenizers")
    q.add_argument("--out-dir", default="records")
    q.add_argument(
        "--resume",
        default=None,
        metavar="LADDER_DIR",
        help="continue in this earlier ladder folder: its finished HMM fits are reused, "
        "and a fit cut off mid-EM goes on from its saved EM state",
    )
    q.set_defaults(func=cmd_ladder)
    q = exp.add_parser("paired", help="paired differences between two models of a ladder")
    q.add_argument("--ladder", required=True, help="a ladder folder (with story_nats_<V>.npz)")
    q.add_argument("--vocab-size", type=int, required=True)
    q.add_argument(
        "--pair",
        nargs=2,
        action="append",
        required=True,
        metavar=("A", "B"),
        help="two model names as in ladder.csv (A minus B); repeat for more pairs",
    )
    q.add_argument(
        "--n-boot", type=int, default=None, help="story-bootstrap resamples (the ladder's; 1000)"
    )
    q.set_defaults(func=cmd_paired)
    q = exp.add_parser("starts", help="EM curves of each HMM start on the dev split")
    add_data_args(q)
    q.add_argument("--tokenizer", required=True, help="HF_custom_tokenizer_{V} folder")
    q.add_argument("--states", type=int, nargs="+", default=[64, 256])
    q.add_argument("--inits", nargs="+", default=["split", "class-bigram", "lvd"])
    q.add_argument("--run", default=None, help="transformer run folder (for the lvd start)")
    q.add_argument("--max-iters", type=int, default=300)
    q.add_argument("--tol", type=float, default=1e-4)
    q.add_argument("--patience", type=int, default=3)
    q.add_argument("--out-dir", default="records")
    q.set_defaults(func=cmd_starts)
    q = exp.add_parser("beliefs", help="probe the residual stream for an HMM's belief state")
    q.add_argument("--run", default=None, help="transformer run (default: the newest)")
    q.add_argument(
        "--hmm",
        default=None,
        help="a fitted dense or blocked HMM model.pt with the run's tokenizer",
    )
    q.add_argument(
        "--states", type=int, default=None, help="K of the HMM fitted when --hmm is not given (256)"
    )
    q.add_argument("--iters", type=int, default=None, help="EM iteration cap (300; stops on dev)")
    q.add_argument("--tokens", type=int, default=None, help="validation positions probed (200k)")
    q.add_argument("--k-folds", type=int, default=None, help="folds by story (5)")
    q.add_argument("--n-boot", type=int, default=None, help="story-bootstrap resamples (1000)")
    q.add_argument("--top-tokens", type=int, default=None, help="tokens of ahead2/3, logits (256)")
    q.add_argument("--smoke", action="store_true", help="tiny sizes: runs in seconds")
    q.add_argument("--out-dir", default="records")
    q.set_defaults(func=cmd_beliefs)
    q = exp.add_parser(
        "sample", help="a corpus sampled from an HMM (token ids), for belief ground truth"
    )
    q.add_argument("--hmm", required=True, help="a fitted dense HMM (model.pt / hmm.pt)")
    q.add_argument("--tokenizer", required=True, help="the HF tokenizer folder it was fitted with")
    q.add_argument("--stories", type=int, default=9949, help="stories (default: the dev text's)")
    q.add_argument("--max-len", type=int, default=1024, help="longest story in tokens")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", required=True, help="new folder for the sampled token stream")
    q.set_defaults(func=cmd_sample)
