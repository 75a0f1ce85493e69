"""``python -m taskbert`` (and ``torchrun -m taskbert``) runs the CLI."""

from .cli import main

if __name__ == "__main__":
    main()
