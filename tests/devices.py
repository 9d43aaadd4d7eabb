"""Device parameters for tests that compare numbers: every such test names its device, and
runs on the CPU everywhere and on CUDA where a GPU is present (skipped elsewhere, with the
reason)."""

import pytest
import torch

NO_CUDA = "CUDA is not available on this machine; the same test runs on a GPU where one is present"
CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)])
DEVICES = ["cpu", CUDA]
AUTO = "cuda" if torch.cuda.is_available() else "cpu"
"""what `device: auto` resolves to on this machine"""
