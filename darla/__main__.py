"""``python -m darla`` runs the pipeline (default: the quickstart config)."""
import sys

from darla.pipeline import main

sys.exit(main())
