"""`python -m clipsvc.standin DIR [--arch ...]`: the command line of clipsvc.encoder.standin.

Kept because that short command is the documented one (README, Makefile, docs, scripts/docker_check.py).
"""

from .encoder.standin import main

if __name__ == "__main__":
    main()
