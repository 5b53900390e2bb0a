"""Benchmarks: scripts that print tables and write them into docs/results.md (run with ``python -m benchmarks.NAME``).

pycma's eigendecomposition and other numpy linear algebra run in OpenBLAS; on a small shared
machine OpenBLAS's worker threads contend with the simulator's and torch's, and a 100 x 100
``eigh`` takes 70x longer (measured: 0.35 s vs 5 ms on 2 busy cores). One BLAS thread is what
a fair CMA-ES timing needs. Set here, before any benchmark imports numpy; a value the user
exported wins.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
