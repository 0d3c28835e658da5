"""recrl_lib — the small shared library behind the recrl course notebooks.

Data flows one way: datasets -> encoders -> envs -> agents -> evaluation -> plotting.
"""

from recrl_lib.config import QUICK, budget
from recrl_lib.device import get_device, seed_everything

__all__ = ["QUICK", "budget", "get_device", "seed_everything"]
__version__ = "0.1.0"
