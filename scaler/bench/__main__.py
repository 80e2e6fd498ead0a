"""``python -m scaler.bench``: the same as the ``scaler_bench`` command."""

from scaler.cli.bench import main

if __name__ == "__main__":
    main()
