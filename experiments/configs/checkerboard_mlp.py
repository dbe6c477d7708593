r"""2-D checkerboard with an MLP velocity model, flow matching on one path.

    kopaths train --config experiments/configs/checkerboard_mlp.py:ko --workdir /tmp/cb_ko

The config arg is ``<path>[,runlocal]`` with a path of :data:`kopaths.PATHS`. The KO path is the
committed ``<ko_variant>_ko_schedule.json`` of ``experiments/results/checkerboard_nfe/ko`` (the one
the Figure 2 models trained on; lambda-hat of 10^6 points) when it exists.
"""

import os

from kopaths.configs import parse_arg
from kopaths.training.defaults import PATHS, base_config, data_config

RESULTS = os.path.join(os.path.dirname(__file__), "..", "results", "checkerboard_nfe", "ko")


def get_config(arg: str | None = None):
    """Returns the run config for ``arg = "<path>[,runlocal]"``."""
    parsed = parse_arg(arg, path=PATHS, variant=("runlocal",))
    path, runlocal = parsed["path"] or "cond_ot", parsed["variant"] == "runlocal"
    c = base_config(path)
    c.data = data_config("checkerboard")
    c.model = dict(name="mlp", hidden_sizes=(512, 512, 512, 512), time_embed_dim=64, time_scale=1000.0,
                   dropout=0.0, dtype="float32")
    c.total_steps = 50_000
    c.global_batch_size = 4096
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 500
    c.optim.ema_decay = 0.999
    c.checkpoint.every_steps = 5000
    if path == "ko":
        committed = os.path.abspath(os.path.join(RESULTS, f"{c.path.ko_variant}_ko_schedule.json"))
        c.path.schedule_file = committed if os.path.exists(committed) else ""
        c.path.ko_num_noise = 4096
    if runlocal:
        c.model.hidden_sizes = (64, 64)
        c.total_steps = 4
        c.global_batch_size = 64
        c.optim.warmup_steps = 1
        c.log_every_steps = 1
        c.checkpoint.every_steps = 2
        if path == "ko":
            c.path.update(schedule_file="", ko_num_data=1024, ko_num_noise=256, ko_num_snr=64)
    return c
