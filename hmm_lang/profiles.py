"""The sizes of ``hmm-lang run``: one :class:`Profile` per named profile (smoke, cpu, gpu)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """Sizes of one run of the study."""

    synthetic_stories: int
    vocab_sizes: tuple[int, ...] = (1024, 2048, 4096)
    ladder_vocab_sizes: tuple[int, ...] | None = None  # the ladder's tokenizers (None: all)
    ngram_orders: tuple[int, ...] = (2, 3, 4, 5)
    hmm_states: tuple[int, ...] = (16, 64)
    hmm_max_iters: int = 300  # EM stops earlier when the dev split stops improving
    hmm_seeds: tuple[int, ...] = (0,)
    hmm_train_stories: int | None = None
    hmm_device: str = "cpu"  # dense EM's device; "auto": CUDA where there is one
    tokenizer_stories: int | None = None  # BPE trained on the first this many stories (None: all)
    cloned_clones: tuple[int, ...] = ()
    blocked_states: tuple[int, ...] = ()  # blocked HMMs in the ladder (K, in blocked_clusters)
    blocked_clusters: int = 128
    max_valid_stories: int | None = None
    transformer_config: str = "tiny"
    transformer_overrides: tuple[str, ...] = ()
    analysis_tokens: int = 1024  # tokens in the similarity figures
    pca_tokens: int = 100_000
    belief_states: int = 256
    anatomy_states: int = 32  # notebook 07's HMM
    belief_tokens: int = 200_000
    belief_k_folds: int = 5
    belief_boot: int = 1000
    belief_top_tokens: int = 256


PROFILES = {
    "smoke": Profile(
        synthetic_stories=2500,
        ladder_vocab_sizes=(1024,),
        ngram_orders=(2, 3),
        hmm_states=(8,),
        hmm_max_iters=2,
        hmm_train_stories=200,
        cloned_clones=(2,),
        blocked_states=(32,),
        blocked_clusters=16,
        max_valid_stories=100,
        transformer_config="tiny",
        analysis_tokens=128,
        pca_tokens=2000,
        belief_states=8,
        anatomy_states=8,
        belief_tokens=1500,
        belief_k_folds=3,
        belief_boot=50,
        belief_top_tokens=32,
    ),
    "cpu": Profile(
        synthetic_stories=20_000,
        hmm_states=(16, 64, 256),
        hmm_max_iters=60,
        hmm_train_stories=5000,
        cloned_clones=(1, 4, 16),
        blocked_states=(4096,),
        max_valid_stories=1000,
        transformer_config="cpu_small",
        transformer_overrides=(
            "train.steps=500",
            "train.eval_interval=100",
            "train.checkpoint_interval=100",
            "train.eval_stories=200",
        ),
        analysis_tokens=1024,
        pca_tokens=50_000,
        belief_states=64,
        belief_tokens=20_000,
    ),
    "gpu": Profile(
        synthetic_stories=200_000,
        hmm_states=(16, 64, 256, 1024),
        hmm_max_iters=300,
        hmm_seeds=(0, 1, 2),
        # HMMs on 200k stories (~45M tokens at V=4096): the full 2.1M would take days of
        # cloned EM (see `hmm-lang run --profile gpu --dry-run`)
        hmm_train_stories=200_000,
        hmm_device="auto",
        tokenizer_stories=200_000,
        cloned_clones=(1, 4, 16),
        transformer_config="gpu_base",
        analysis_tokens=4096,
    ),
}
