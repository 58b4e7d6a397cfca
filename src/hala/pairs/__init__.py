"""`hala pairs`: build the EN-AR parallel corpus (teacher translations + external corpora) and the
translator's prompt-completion training data. See `build` for the pass, `filters` for the rules."""

from hala.pairs.build import build_pairs
from hala.pairs.config import PairsConfig

__all__ = ["PairsConfig", "build_pairs"]
