"""``python -m cowork_llm`` runs the ``cowork-llm`` command."""

import sys

from .cli import main

sys.exit(main())
