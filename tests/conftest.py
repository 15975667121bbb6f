"""Under pytest-xdist (pyproject's ``-n auto``) every worker computes with one thread, so the workers
share the cores instead of each starting one thread per core; the subprocesses the tests start
(DDP ranks, a SIGTERM'd training) inherit the setting."""
import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
