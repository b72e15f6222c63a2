#!/usr/bin/env python
"""Make the challenge data: ``python prepare_data.py --help``.

Renders blended multi-band galaxy scenes with GalSim and writes ``data/train.h5``,
``data/test.h5`` and the ``_mini`` files used by ``ramp-test --quick-test``.
The code lives in :mod:`deblendkit.cli.prepare_data`.
"""
import sys

from deblendkit.cli.prepare_data import main

if __name__ == "__main__":
    sys.exit(main())
