"""``python -m hmm_lang.cli`` (what torchrun runs): the ``hmm-lang`` command."""

import sys

from hmm_lang.cli import main

sys.exit(main())
