"""Transfer baselines that reuse the diffusion training loop (README: TGDP, exactly, "Baselines").

- finetune: every weight of the source model, trained on the target at a low learning rate,
  early stopped on the held-out target loss;
- finetune_partial: only the input and output layers and the label embedding (after Yang
  et al. 2024 and Cheng et al. 2025), the rest frozen;
- domain_guidance: ε_src + w (ε_ft − ε_src) (Zhong et al., ICLR 2025), a guidance that
  extrapolates from the source towards the fine-tuned model.
"""
from __future__ import annotations

from torch import Tensor, nn

from ecg_tgdp.models.model_card import ModelCard
from ecg_tgdp.models.samplers import DenoiserFn
from ecg_tgdp.models.unet import UNet1D

# The parts of UNet1D that finetune_partial trains: the input convolution, the output
# head and the class embedding.
PARTIAL_FINETUNE_MODULES = ("stem", "out", "class_emb")


def trainable_copy(weights: dict[str, Tensor], card: ModelCard) -> UNet1D:
    """A U-Net of the card's shape holding `weights` (e.g. the source EMA), ready to train."""
    net = card.new_network()
    net.load_state_dict(weights)
    return net.train().requires_grad_(True)


def freeze_except(net: nn.Module, modules: tuple[str, ...]) -> int:
    """Freeze every parameter outside the named child modules; return the trainable count."""
    unknown = [name for name in modules if not hasattr(net, name)]
    if unknown:
        raise ValueError(f"{type(net).__name__} has no modules {unknown}")
    trainable = 0
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(name.split(".")[0] in modules)
        trainable += parameter.numel() if parameter.requires_grad else 0
    return trainable


def domain_guidance(source_fn: DenoiserFn, finetuned_fn: DenoiserFn, scale: float) -> DenoiserFn:
    """ε̃ = ε_src + w (ε_ft − ε_src) (Zhong et al. 2025, eq. 7); w = 1 is the fine-tuned model."""

    def guided(x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        eps_source = source_fn(x, t, y)
        return eps_source + scale * (finetuned_fn(x, t, y) - eps_source)

    return guided
