"""dirty-rl: reinforcement learning you can look inside.

Importing the package loads neither numpy nor torch, so the CLI can set thread counts first.
"""

__version__ = "0.1.0"
