r"""Fashion-MNIST (28x28x1) ADM U-Net trained by flow matching on one of four paths.

    python -m kopaths.train --config experiments/configs/fmnist_unet.py:ko --workdir /tmp/fmnist_ko

The config arg is ``<path>[,runlocal]`` with path in cond_ot, vp, cosine, ko; ``runlocal``
is a seconds-long smoke-test variant.
"""

from kopaths.training import config_lib


def get_config(arg: str | None = None):
    """Returns the run config for ``arg = "<path>[,runlocal]"``."""
    path, runlocal = config_lib.parse_config_arg(arg)
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
    if runlocal:
        c.model.update(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, dropout=0.0)
        c.total_steps = 4
        c.global_batch_size = 8
        c.optim.warmup_steps = 1
        c.log_every_steps = 1
        c.checkpoint.every_steps = 2
        c.path.ko_num_examples = 512
        c.path.ko_num_noise = 128
    return c
