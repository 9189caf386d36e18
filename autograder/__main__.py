"""``python -m autograder`` is ``llm-course``."""

from autograder.cli import main

raise SystemExit(main())
