"""``train.py experiment=… +dry_run=true``: will this config fit the paper's GPUs?

Built and measured on the CPU, with no data (docs/paper_scale.md has the tables):

- the module (recogniser, STN, alignment loss; the margin head at 2 classes: its real size is
  accounted below), the optimizer's parameter groups and one random batch of 2 images;
- **activations per image**: one forward (recogniser and alignment loss) under autocast
  (bfloat16 on the CPU, 2 bytes like the GPU's float16), counting every tensor autograd saves
  for backward (``torch.autograd.graph.saved_tensors_hooks``), each storage once; tensors
  whose first dimension is the batch count per image, the rest (autocast's weight copies)
  are left to the fixed part;
- **per GPU**, at b images per card:

      fixed     = 4 P (fp32 weights) + 4 P (grads) + 4 P (momentum) + 2 P (AMP weight copies)
                  + 12 C_r D (head centres, grads, momentum) + 8 S_r D (the scored centres,
                  gathered and normalised, kept for backward) + RESERVED (context, workspaces)
      per image = activations + logit_bytes · S_r · R
      total     = fixed + b · per image

  P: trainable parameters besides the head; C_r: centres per card (C for a full head, ⌈C / n⌉
  for Partial FC on n cards); S_r: centres scored per step (C_r, or ⌈sample_rate · C_r⌉);
  R: logit rows per local image (1, or n for Partial FC, which scores the gathered batch);
  logit_bytes: bytes per logit of the head's forward and backward (measured on a small head,
  plus the float32 gradient of the logits).

The run fails (non-zero exit, :class:`DoesNotFitError`) when the total at the paper's batch
(32 per card: 256 over 8 cards, AMP) exceeds an 11 GB RTX 2080 Ti, and prints the largest
batch per card for 24 GB and 80 GB cards.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from balanced_align.config_schema import Head, ModuleConfig
from balanced_align.losses import build_param_groups
from balanced_align.models import build_head
from balanced_align.module import BalancedAlignModule

GIB = 1024**3
#: the paper's cluster: 8 RTX 2080 Ti (11 GB), 32 images per card, AMP
PAPER_CARD, PAPER_CARD_BYTES, PAPER_BATCH_PER_CARD = "RTX 2080 Ti (11 GB)", 11 * GIB, 32
#: cards whose largest batch is printed
OTHER_CARDS = (("24 GB", 24 * GIB), ("80 GB", 80 * GIB))
#: CUDA context, cuDNN / cuBLAS workspaces and allocator slack, per card (an assumption)
RESERVED = GIB
#: batch of the measuring forward
MEASURE_BATCH = 2


class DoesNotFitError(RuntimeError):
    """The config needs more memory per card than the paper's cluster has."""


def saved_tensor_bytes(run: Callable[[], object], batch: int) -> tuple[int, int]:
    """(bytes of the tensors autograd saves in ``run()`` whose first dimension is ``batch``,
    bytes of the others); each storage counted once."""
    seen: dict[tuple[int, int], bool] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        per_item = tensor.dim() > 0 and tensor.shape[0] == batch
        seen[key] = seen.get(key, False) or per_item
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    per_item = sum(nbytes for (_, nbytes), flag in seen.items() if flag)
    return per_item, sum(nbytes for (_, nbytes), flag in seen.items() if not flag)


def activation_bytes_per_image(
    module: BalancedAlignModule, amp: bool, batch: int = MEASURE_BATCH
) -> float:
    """Bytes autograd keeps per image for the recogniser and the alignment loss (measured)."""
    size = module.image_size
    images = torch.rand(batch, 3, *size) * 2 - 1
    template = module.template
    landmarks = None if template is None else template.detach().expand(batch, -1, -1).clone()

    def forward() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            aligner = landmarks if module.landmark_aligned else None
            output = module.recognizer(images, aligner)
            if module.align_loss is not None and module.lam > 0:
                module.align_loss(module.family, output.params, landmarks)

    module.train()
    per_batch, _ = saved_tensor_bytes(forward, batch)
    return per_batch / batch


def logit_bytes(head: str, rows: int = 8, classes: int = 64) -> float:
    """Bytes per logit of a margin head: what its forward saves for backward, plus the
    float32 gradient of the logits (measured on ``rows`` × ``classes``)."""
    kwargs = {} if head == "softmax" else {"s": 64.0}
    module = build_head(head, 16, classes, **kwargs)
    embeddings = torch.randn(rows, 16, requires_grad=True)
    labels = torch.arange(rows) % classes

    def forward() -> None:
        out = module(embeddings, labels)
        if not isinstance(out, Tensor):
            return
        nn.functional.cross_entropy(out, labels)

    saved, _ = saved_tensor_bytes(forward, rows)
    return saved / (rows * classes) + 4


@dataclass
class MemoryEstimate:
    """Memory per card (bytes) of one config; see the module docstring for the formula."""

    parameters: int
    activations_per_image: float
    head_rows: int
    scored_centres: int
    logit_rows_per_image: int
    logit_bytes: float
    embedding_dim: int
    momentum: bool
    amp: bool

    @property
    def weights_bytes(self) -> int:
        """Weights, grads, momentum (fp32) and AMP's half copies, besides the head."""
        return self.parameters * (4 + 4 + 4 * self.momentum + 2 * self.amp)

    @property
    def head_bytes(self) -> int:
        return self.head_rows * self.embedding_dim * 4 * (2 + self.momentum)

    @property
    def centre_copies_bytes(self) -> int:
        """The scored centres, gathered and L2-normalised, kept for backward (2 copies)."""
        return 2 * self.scored_centres * self.embedding_dim * 4

    @property
    def fixed_bytes(self) -> int:
        return self.weights_bytes + self.head_bytes + self.centre_copies_bytes + RESERVED

    @property
    def logits_per_image(self) -> float:
        return self.logit_bytes * self.scored_centres * self.logit_rows_per_image

    @property
    def per_image_bytes(self) -> float:
        return self.activations_per_image + self.logits_per_image

    def total(self, batch_per_card: int) -> float:
        return self.fixed_bytes + batch_per_card * self.per_image_bytes

    def largest_batch(self, card_bytes: int) -> int:
        return max(0, math.floor((card_bytes - self.fixed_bytes) / self.per_image_bytes))


def estimate(
    module: BalancedAlignModule,
    config: ModuleConfig,
    num_classes: int,
    cards: int,
    amp: bool,
) -> MemoryEstimate:
    """The :class:`MemoryEstimate` of ``module`` (built at any number of classes) when
    trained on ``cards`` cards with ``num_classes`` identities."""
    head = Head(config.loss.head)
    parameters = sum(
        p.numel() for name, p in module.named_parameters() if p.requires_grad and not
        name.startswith("head.")
    )  # fmt: skip
    rows = math.ceil(num_classes / cards) if head.partial_fc else num_classes
    scored = min(rows, math.ceil(config.loss.sample_rate * rows)) if head.partial_fc else rows
    return MemoryEstimate(
        parameters=parameters,
        activations_per_image=activation_bytes_per_image(module, amp),
        head_rows=rows,
        scored_centres=scored,
        logit_rows_per_image=cards if head.partial_fc else 1,
        logit_bytes=logit_bytes(head.value),
        embedding_dim=config.model.embedding_dim,
        momentum=config.optim.momentum > 0,
        amp=amp,
    )


def build(config: ModuleConfig) -> tuple[BalancedAlignModule, torch.optim.Optimizer]:
    """The module (head at 2 classes; ``model.pretrained`` not read: sizes only) and its SGD
    optimizer over the parameter groups."""
    groups = config.to_dicts()
    groups["model"]["pretrained"] = None
    module = BalancedAlignModule(num_classes=2, **groups)
    optim = config.optim
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        build_param_groups(named, optim.weight_decay), lr=optim.lr, momentum=optim.momentum
    )
    return module, optimizer


def report(
    estimate: MemoryEstimate, num_classes: int, cards: int, batch_per_card: int | None = None
) -> str:
    """The dry-run's table (markdown); ``batch_per_card``: the config's ``data.batch_size``,
    a row of its own where it is not the paper's."""

    def gib(value: float) -> str:
        return f"{value / GIB:.2f} GiB"

    batch, mib = PAPER_BATCH_PER_CARD, 2**20
    lines = [
        "| quantity | value |",
        "|---|---|",
        f"| parameters (besides the head) | {estimate.parameters:,} |",
        f"| identities (head rows per card) | {num_classes:,} ({estimate.head_rows:,}) |",
        f"| centres scored per step per card | {estimate.scored_centres:,} |",
        f"| activations per image (measured) | {estimate.activations_per_image / mib:.1f} MiB |",
        f"| logits per image | {estimate.logits_per_image / mib:.1f} MiB |",
        f"| weights + grads + momentum (+ AMP copies) | {gib(estimate.weights_bytes)} |",
        f"| head shard (centres + grads + momentum) | {gib(estimate.head_bytes)} |",
        f"| scored centres kept for backward | {gib(estimate.centre_copies_bytes)} |",
        f"| reserved (context, workspaces) | {gib(RESERVED)} |",
        f"| **per card at {batch} images ({batch * cards} over {cards})** | "
        f"**{gib(estimate.total(batch))}** |",
        f"| largest batch per card, {PAPER_CARD} | {estimate.largest_batch(PAPER_CARD_BYTES)} |",
    ]
    if batch_per_card not in (None, batch):
        lines.insert(
            -1,
            f"| **per card at data.batch_size={batch_per_card}** | "
            f"**{gib(estimate.total(batch_per_card))}** |",
        )
    lines += [
        f"| largest batch per card, {name} | {estimate.largest_batch(size)} |"
        for name, size in OTHER_CARDS
    ]
    return "\n".join(lines)


def check_fits(estimate: MemoryEstimate, where: str, batch_per_card: int | None = None) -> None:
    """Raise :class:`DoesNotFitError` when the paper's batch, or the config's
    ``batch_per_card`` (``data.batch_size``), does not fit the paper's cards."""
    most = estimate.largest_batch(PAPER_CARD_BYTES)
    need = estimate.total(PAPER_BATCH_PER_CARD)
    if need > PAPER_CARD_BYTES:
        raise DoesNotFitError(
            f"{where} does not fit the paper's cluster: {need / GIB:.2f} GiB per card at "
            f"{PAPER_BATCH_PER_CARD} images per card (AMP) > {PAPER_CARD}; at most "
            f"{most} images per card fit"
        )
    if batch_per_card is not None and batch_per_card > most:
        raise DoesNotFitError(
            f"{where}: data.batch_size={batch_per_card} does not fit the paper's cards: "
            f"{estimate.total(batch_per_card) / GIB:.2f} GiB per card > {PAPER_CARD}; at most "
            f"{most} images per card fit"
        )


def dry_run(
    config: ModuleConfig, num_classes: int, cards: int, amp: bool, where: str = "this config"
) -> MemoryEstimate:
    """Build, measure, print the table; raise :class:`DoesNotFitError` if it does not fit."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"paper.num_classes must be an integer >= 2, got {num_classes!r}")
    module, _ = build(config)
    result = estimate(module, config, num_classes, cards, amp)
    print(f"dry run: {where}, {cards} cards, {'AMP' if amp else 'fp32'}")
    batch = config.optim.batch_size  # per card: data.batch_size
    print(report(result, num_classes, cards, batch))
    check_fits(result, where, batch)
    return result


__all__ = [
    "GIB",
    "PAPER_BATCH_PER_CARD",
    "PAPER_CARD_BYTES",
    "RESERVED",
    "DoesNotFitError",
    "MemoryEstimate",
    "activation_bytes_per_image",
    "build",
    "check_fits",
    "dry_run",
    "estimate",
    "logit_bytes",
    "report",
    "saved_tensor_bytes",
]
