r"""Fashion-MNIST (28x28x1) ADM U-Net trained by flow matching on one path.

    kopaths train --config experiments/configs/fmnist_unet.py:ko --workdir /tmp/fmnist_ko

The config arg is ``<path>[,<variant>]`` with a path of :data:`kopaths.PATHS` (cond_ot, vp, cosine,
ko, ...). Variants:

* ``cpu``: the main job's 1.2M-parameter U-Net (``main_job.py``), batch 32, 1200 steps with
  checkpoints at 1000/1100/1200, about 10 minutes a path on a 2-core CPU;
* ``small14``: Table 1 at the scale a 2-core CPU can repeat over seeds: 14x14 images, a 0.19M-parameter
  U-Net (16 channels, two levels, attention at 7x7), 2000 steps at batch 64 (about 4 minutes);
* ``runlocal``: a seconds-long smoke test.
"""

import os

from kopaths.configs import load_module, parse_arg
from kopaths.training.defaults import PATHS, base_config, data_config


def get_config(arg: str | None = None):
    """Returns the run config for ``arg = "<path>[,cpu|small14|runlocal]"``."""
    parsed = parse_arg(arg, path=PATHS, variant=("cpu", "small14", "runlocal"))
    path, variant = parsed["path"] or "cond_ot", parsed["variant"]
    c = base_config(path)
    c.data = data_config("fashion_mnist")
    c.model = dict(
        name="unet", model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=(2,),
        dropout=0.1, num_heads=4, num_head_channels=-1, use_scale_shift_norm=True, resblock_updown=False,
        time_scale=1000.0, dtype="float32",
    )
    c.total_steps = 100_000
    c.global_batch_size = 128
    c.optim.lr = 2e-4
    c.optim.warmup_steps = 2000
    if variant == "cpu":
        main_job = load_module(os.path.join(os.path.dirname(__file__), "main_job.py")).trainer_config()
        c.model = main_job.model.to_dict()
        c.global_batch_size = main_job.global_batch_size
        c.optim.update(lr=main_job.optim.lr, warmup_steps=main_job.optim.warmup_steps, ema_decay=main_job.optim.ema_decay)
        c.total_steps = 1200
        c.checkpoint.update(every_steps=100, max_to_keep=3)
        c.log_every_steps = 50
    if variant == "small14":
        c.data.resolution = 14
        c.model.update(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,), dropout=0.0)
        c.total_steps = 2000
        c.global_batch_size = 64
        c.optim.update(lr=1e-3, warmup_steps=100, ema_decay=0.999)
        c.checkpoint.update(every_steps=1000, max_to_keep=2)
        c.log_every_steps = 100
    if variant == "runlocal":
        c.model.update(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, dropout=0.0)
        c.total_steps = 4
        c.global_batch_size = 8
        c.optim.warmup_steps = 1
        c.log_every_steps = 1
        c.checkpoint.every_steps = 2
        if path == "ko":
            c.path.update(ko_num_data=512, ko_num_noise=128, ko_num_snr=64)
    return c
