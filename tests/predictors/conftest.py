"""The predictor tests run torch: two threads at most, fast and reproducible on small CI machines."""

import torch

torch.set_num_threads(2)
