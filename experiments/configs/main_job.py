r"""The main job (``kopaths run``): lambda-hat, the KO paths, energies and diagnostics, short U-Net
runs on Cond-OT and KO, each sampled along both paths, and the report.

    kopaths run                                            # this file is the default config
    kopaths run --config experiments/configs/main_job.py --config.train.total_steps=100

Sections: ``seed``; ``data`` (:func:`kopaths.data.default_data_config`); ``separation`` (lambda-hat:
``num_data`` examples, ``num_noise`` = k, ``num_snr`` grid points, device blocks); ``ko``
(``sigma_min``, the ``variant`` trained on, the shooting check); ``train_paths`` (the paths trained,
empty to skip training); ``train`` (the trainer config every path is trained with: the same schema as
``fmnist_unet.py``; its ``path`` section is set per path); ``evaluate`` (sample and likelihood sizes,
the paths sampled along, and the FD classifier: shipped or trained in the output folder).
The sizes are tuned to a 2-core CPU: a 1.2M-parameter U-Net (attention only at 7x7, since attention
over 28x28 tokens is 10x slower on CPU), 400 steps at batch 32 per path.
"""

import ml_collections

from kopaths.configs import parse_arg
from kopaths.data import default_data_config
from kopaths.ko import DEFAULT_KO_VARIANT
from kopaths.training.defaults import base_config


def trainer_config() -> ml_collections.ConfigDict:
    """The trainer config of the main job's runs; ``seed`` and ``data`` are the main job's own and
    ``path`` is set per trained path (:func:`kopaths.main_job.trained_models.trainer_config`)."""
    c = base_config("cond_ot")
    c.model = dict(
        name="unet", model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolutions=(4,),
        dropout=0.0, num_heads=4, num_head_channels=-1, use_scale_shift_norm=True, resblock_updown=False,
        time_scale=1000.0, dtype="float32",
    )
    c.total_steps = 400
    c.global_batch_size = 32
    c.optim.update(lr=1e-3, warmup_steps=50, ema_decay=0.995)
    c.checkpoint.every_steps = 200
    c.log_every_steps = 50
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``arg``: empty, or ``runlocal`` (tiny sizes for smoke tests)."""
    variant = parse_arg(arg, variant=("runlocal",))["variant"]
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = default_data_config("fashion_mnist")
    c.separation = ml_collections.ConfigDict(dict(
        num_data=60000, num_noise=2048, num_snr=256,
        noise_chunk=ml_collections.config_dict.placeholder(int),  # None: the backend's default blocks
        data_chunk=ml_collections.config_dict.placeholder(int),
    ))
    c.ko = ml_collections.ConfigDict(dict(sigma_min=0.0, variant=DEFAULT_KO_VARIANT, check_shooting=True))
    c.train_paths = ("cond_ot", "ko")
    c.train = trainer_config()
    c.evaluate = ml_collections.ConfigDict(dict(
        num_samples=128, euler_nfe=(2, 4, 8, 16), tol=1e-3, num_bpd=16, num_importance=1, num_probes=1,
        # Every model is sampled along every trained path; also_along_ko=("parametric",) adds a KO variant.
        also_along_ko=(),
        # FD features: the shipped network where the dataset has one (Fashion-MNIST at 28x28), else a
        # classifier trained for classifier_epochs in the output folder; "train" always trains one.
        fd_classifier="builtin", classifier_epochs=1,
    ))
    if variant == "runlocal":
        c.data.resolution = 7
        c.separation.update(num_data=512, num_noise=64, num_snr=32)
        c.train.model.update(model_channels=8, channel_mult=(1,), attention_resolutions=())
        c.train.update(total_steps=4, global_batch_size=8, log_every_steps=1)
        c.train.checkpoint.every_steps = 2
        c.evaluate.update(num_samples=16, num_bpd=4, euler_nfe=(2, 4), tol=0.01)
    return c
