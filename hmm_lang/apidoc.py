"""Write ``docs/api.md``: every public name of ``hmm_lang`` with its signature and the first
paragraph of its docstring. ``python -m hmm_lang.apidoc`` regenerates it; a test checks it is
current."""

from __future__ import annotations

import inspect
import logging
import sys
from pathlib import Path

import hmm_lang

GROUPS = {
    "load_corpus": "Data and tokens",
    "fit_hmm": "Models",
    "cosine_similarity_matrix": "Analysis (pure functions of tensors)",
    "similarity_heatmap": "Figures (each returns a plotly go.Figure; nothing calls show())",
    "run_ladder": "Experiments",
}


def _summary(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def api_markdown() -> str:
    lines = [
        "# hmm_lang public API",
        "",
        "`from hmm_lang import <name>`. Generated from the docstrings by "
        "`python -m hmm_lang.apidoc`; do not edit by hand.",
    ]
    for name in hmm_lang.__all__:
        if name in GROUPS:
            lines += ["", f"## {GROUPS[name]}", ""]
        if name == "HmmLangError":
            continue
        obj = getattr(hmm_lang, name)
        try:
            sig = str(inspect.signature(obj))
        except (TypeError, ValueError):
            sig = ""
        kind = "class" if inspect.isclass(obj) else "function"
        module = hmm_lang._API[name]
        lines.append(f"- **`{name}{sig}`** ({kind}, `{module}`): {_summary(obj)}")
    lines += ["", "Errors: every one-line user error is a `hmm_lang.HmmLangError`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m hmm_lang.apidoc [OUT.md]`` (default docs/api.md); an option is refused
    rather than taken for a file name."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        sys.exit("error: usage: python -m hmm_lang.apidoc [OUT.md] (default docs/api.md)")
    out = Path(args[0]) if args else Path("docs/api.md")
    out.write_text(api_markdown())
    logging.getLogger(__name__).info("wrote %s", out)


if __name__ == "__main__":
    main()
