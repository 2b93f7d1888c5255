"""The plugin bootstrap: importing this package registers every search space (SPACES), every algorithm's
runner or strategy (RUNNERS) and their ops and file formats. The CLI and `load_model` import it."""

import archsearch.spaces.darts_cells
import archsearch.spaces.enas_spaces
import archsearch.spaces.nasbench201
import archsearch.spaces.user_model  # noqa: F401 - the spaces, before the strategies that run on them
from archsearch.strategies import darts, enas, gdas, manual, morphism, naswot, pcdarts, random, rea  # noqa: F401
