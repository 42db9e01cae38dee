"""``python -m benchmarks [--only NAME] [--quick] [--list]``: see :mod:`benchmarks.suite`."""

from benchmarks.suite import main

if __name__ == "__main__":
    main()
