r"""2-D checkerboard with an MLP velocity model, flow matching on one of four paths.

    python -m kopaths.train --config experiments/configs/checkerboard_mlp.py:ko --workdir /tmp/cb_ko

The config arg is ``<path>[,runlocal]`` with path in cond_ot, vp, cosine, ko.
"""

from kopaths.training import config_lib


def get_config(arg: str | None = None):
    """Returns the run config for ``arg = "<path>[,runlocal]"``."""
    path, variant = config_lib.parse_config_arg(arg)
    runlocal = variant == "runlocal"
    c = config_lib.base_config(path)
    c.data = config_lib.data_config("checkerboard")
    c.model = dict(name="mlp", hidden_sizes=(512, 512, 512, 512), time_embed_dim=64, time_scale=1000.0,
                   dropout=0.0, dtype="float32")
    c.total_steps = 50_000
    c.global_batch_size = 4096
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 500
    c.optim.ema_decay = 0.999
    c.checkpoint.every_steps = 5000
    c.path.ko_num_noise = 4096
    if runlocal:
        c.model.hidden_sizes = (64, 64)
        c.total_steps = 4
        c.global_batch_size = 64
        c.optim.warmup_steps = 1
        c.log_every_steps = 1
        c.checkpoint.every_steps = 2
        c.path.ko_num_data = 1024
        c.path.ko_num_noise = 256
        c.path.ko_num_snr = 64
    return c
