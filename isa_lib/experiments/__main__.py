"""``python -m isa_lib.experiments``: the ``isa-vae sweep`` command (:func:`isa_lib.experiments.sweep_main`)."""
import sys

from .sweeps import sweep_main

sys.exit(sweep_main())
