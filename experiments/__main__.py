"""`python -m experiments`: the entry point of every experiment and benchmark (see experiments/reproduce.py)."""

import sys

from experiments.reproduce import main

sys.exit(main())
