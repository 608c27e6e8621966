"""`python -m clipsvc.standin DIR [--arch ...]`: the command line of clipsvc.encoder.standin."""

from .encoder.standin import main

if __name__ == "__main__":
    main()
