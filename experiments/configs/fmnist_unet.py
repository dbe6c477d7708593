r"""Fashion-MNIST (28x28x1) ADM U-Net trained by flow matching on one of four paths.

    python -m kopaths.train --config experiments/configs/fmnist_unet.py:ko --workdir /tmp/fmnist_ko

The config arg is ``<path>[,<variant>]`` with path in cond_ot, vp, cosine, ko. Variants:

* ``cpu``: the main job's 1.2M-parameter U-Net (attention only at 7x7), batch 32, 1200 steps with
  checkpoints at 1000/1100/1200: Table 1 at a scale the 2-core CPU trains in about 10 minutes a path;
* ``runlocal``: a seconds-long smoke test.
"""

from kopaths.pipeline_models import default_train_config
from kopaths.training import config_lib


def get_config(arg: str | None = None):
    """Returns the run config for ``arg = "<path>[,cpu|runlocal]"``."""
    path, variant = config_lib.parse_config_arg(arg, variants=("cpu", "runlocal"))
    c = config_lib.base_config(path)
    c.data = config_lib.data_config("fashion_mnist")
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
        main_job = default_train_config()
        c.model = main_job.model.to_dict()
        c.total_steps = 1200
        c.global_batch_size = int(main_job.global_batch_size)
        c.optim.lr = float(main_job.lr)
        c.optim.warmup_steps = int(main_job.warmup_steps)
        c.optim.ema_decay = float(main_job.ema_decay)
        c.checkpoint.every_steps = 100
        c.checkpoint.max_to_keep = 3
        c.log_every_steps = 50
    if variant == "runlocal":
        c.model.update(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, dropout=0.0)
        c.total_steps = 4
        c.global_batch_size = 8
        c.optim.warmup_steps = 1
        c.log_every_steps = 1
        c.checkpoint.every_steps = 2
        c.path.ko_num_data = 512
        c.path.ko_num_noise = 128
        c.path.ko_num_snr = 64
    return c
