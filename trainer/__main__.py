"""``python -m trainer``: train one run from the command line."""
import sys

from trainer.cli import main

sys.exit(main())
