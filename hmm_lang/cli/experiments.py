"""``hmm-lang experiment ladder|beliefs``: the study's experiments from the shell."""

from __future__ import annotations


def cmd_ladder(args) -> None:
    from hmm_lang.cli import _corpus
    from hmm_lang.experiments.ladder import LadderConfig, markdown_table, run_ladder

    cfg = LadderConfig(
        vocab_sizes=tuple(args.vocab_sizes),
        ngram_orders=tuple(args.orders),
        hmm_states=tuple(args.states),
        hmm_iters=args.iters,
        cloned_clones=tuple(args.clones),
        cloned_iters=args.iters,
        max_train_stories=args.max_train_stories,
        transformer_runs=list(args.runs),
    )
    run_dir, rows = run_ladder(_corpus(args), args.tokenizers_dir, cfg, args.out_dir)
    print(markdown_table(rows))
    print(f"run folder: {run_dir}")


def cmd_beliefs(args) -> None:
    from hmm_lang.experiments.beliefs import run_beliefs
    from hmm_lang.hmm.model import CategoricalHMM
    from hmm_lang.runs import find_run

    hmm = CategoricalHMM.load(args.hmm)[0] if args.hmm else None
    out, rows, kl, _ = run_beliefs(
        find_run(args.run, args.out_dir), hmm, args.out_dir, args.states, args.iters, args.tokens
    )
    for r in rows:
        print(f"{r['features']:>32} {r['control']:>16}  R^2 {r['r2']:.4f}")
    print(
        f"KL(transformer || HMM) {kl['kl_transformer_hmm_nats']:.4f} nats, reverse {kl['kl_hmm_transformer_nats']:.4f}"
    )
    print(f"run folder: {out}")


def register(sub) -> None:
    from hmm_lang.cli import _add_data_args

    p = sub.add_parser("experiment", help="the study's experiments: ladder, beliefs")
    exp = p.add_subparsers(dest="experiment", required=True)
    q = exp.add_parser("ladder", help="bits per byte of every model family, per tokenizer")
    _add_data_args(q)
    q.add_argument("--vocab-sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    q.add_argument("--orders", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    q.add_argument("--states", type=int, nargs="+", default=[16, 64, 256, 1024])
    q.add_argument("--clones", type=int, nargs="+", default=[1, 4, 16])
    q.add_argument("--iters", type=int, default=10)
    q.add_argument("--max-train-stories", type=int, default=None)
    q.add_argument("--runs", nargs="*", default=[], help="trained transformer run folders")
    q.add_argument("--tokenizers-dir", default="tokenizers")
    q.add_argument("--out-dir", default="records")
    q.set_defaults(func=cmd_ladder)
    q = exp.add_parser("beliefs", help="probe the residual stream for an HMM's belief state")
    q.add_argument("--run", default=None, help="transformer run (default: the newest)")
    q.add_argument("--hmm", default=None, help="a fitted HMM model.pt with the run's tokenizer")
    q.add_argument(
        "--states", type=int, default=64, help="K of the HMM fitted when --hmm is not given"
    )
    q.add_argument("--iters", type=int, default=10)
    q.add_argument("--tokens", type=int, default=20_000, help="validation positions probed")
    q.add_argument("--out-dir", default="records")
    q.set_defaults(func=cmd_beliefs)
