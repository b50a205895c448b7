"""The CLI tests run torch (quickstart, science commands): two threads at most, fast and reproducible on small CI."""

import torch

torch.set_num_threads(2)
