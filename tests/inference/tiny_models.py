"""Tiny untrained models whose alignment is not the identity, and checkpoints of them."""

from pathlib import Path

import torch

from balanced_align.module import BalancedAlignModule

#: (name, align overrides) for every alignment method of the library
METHODS = {
    "none": {"method": "none"},
    "stn_affine": {"method": "affine"},
    "stn_proj": {"method": "projective"},
    "stn_tps2": {"method": "tps", "tps_grid_size": 2},
    "stn_tps8": {"method": "tps", "tps_grid_size": 8},
    "affine2d": {"method": "affine2d"},
    "fullalign": {"method": "fullalign"},
}
SIZE = 32


def tiny_module(name: str, location: str = "fmap", seed: int = 0) -> BalancedAlignModule:
    """A width-⅛ IR-18 at 32 px whose LocNet predicts a clearly non-identity warp and whose
    batch norms have non-trivial statistics (eval mode)."""
    torch.manual_seed(seed)
    model = BalancedAlignModule(
        num_classes=4,
        model={"width": 0.125, "input_size": SIZE, "embedding_dim": 16},
        align={**METHODS[name], "location": location, "locnet_input_size": 16, "locnet_width": 0.5},
        loss={"lambda": 0.0},
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        stn = model.recognizer.stn
        if stn is not None:  # LocNet's last layer starts at zero weight: the identity warp
            stn.locnet.fc.weight.normal_(0.0, 0.05)
    return model.eval()


def landmarks_for(model: BalancedAlignModule, batch: int, seed: int = 0) -> torch.Tensor:
    """(B, S, 2) normalised landmarks: the template rotated, scaled, shifted and jittered."""
    generator = torch.Generator().manual_seed(seed)
    template = model.template.detach().float()
    angle = (torch.rand(batch, generator=generator) - 0.5) * 0.6
    scale = 0.8 + 0.3 * torch.rand(batch, generator=generator)
    rotation = (
        torch.stack(
            [
                torch.stack([angle.cos(), -angle.sin()], -1),
                torch.stack([angle.sin(), angle.cos()], -1),
            ],
            dim=1,
        )
        * scale[:, None, None]
    )
    shift = (torch.rand(batch, 1, 2, generator=generator) - 0.5) * 0.2
    noise = 0.02 * torch.randn(batch, *template.shape, generator=generator)
    return template @ rotation.transpose(1, 2) + shift + noise


def save_checkpoint(model: BalancedAlignModule, path: Path) -> Path:
    """A checkpoint as Lightning writes it (state_dict + hyper_parameters, plain values)."""
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path
