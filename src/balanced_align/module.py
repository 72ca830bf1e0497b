"""BalancedAlignModule: the one place where Lightning meets the method.

It owns the recognizer (IR-ResNet with an STN at the input, at the stage-0 feature map, or
none), the margin head and the alignment loss, and trains L = L_fr + λ·L_align
(docs/design.md §1). Validation and test embed the evaluation set with flip TTA, gather the rows
across ranks, and run the evaluation protocols it was given (verification, MegaFace-style
rank-1, rank-1 per |yaw| bin, ANME of the alignment the model applies).

The module never reads the data module: it receives the template, the protocols and the
batch size explicitly (``template_init`` / :meth:`BalancedAlignModule.set_template`,
:meth:`BalancedAlignModule.set_evaluation_protocols`, ``optim.batch_size``); the
:class:`~balanced_align.data_hook.DataModuleHook` callback, which
:meth:`BalancedAlignModule.configure_callbacks` adds, hands them over from a data module.

Everything is built from plain values (dicts of numbers and strings), so checkpoints hold no
Hydra objects and notebooks can call ``BalancedAlignModule(num_classes=…)`` directly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from balanced_align.config_schema import Head, ModuleConfig
from balanced_align.core.protocol import EvaluationProtocol
from balanced_align.core.schema import get_schema
from balanced_align.data_hook import DataModuleHook
from balanced_align.evaluation import EmbeddingCollector, anme, evaluate_protocol
from balanced_align.evaluation.anme import UndefinedANMEError
from balanced_align.evaluation.embeddings import flip_tta_embeddings
from balanced_align.losses import AlignmentLoss, build_param_groups
from balanced_align.models import LANDMARK_METHODS, build_head, build_recognizer
from balanced_align.models.insightface import load_insightface_weights
from balanced_align.models.partial_fc import PartialFC

log = logging.getLogger(__name__)

#: consecutive non-finite training losses after which a run stops as diverged
MAX_NONFINITE_STEPS = 10


class BalancedAlignModule(L.LightningModule):
    """Recognizer + margin head + alignment loss, trained with L = L_fr + λ·L_align.

    Args:
        num_classes: number of training identities.
        model, align, loss, optim: dicts overriding the defaults of
            :mod:`balanced_align.config_schema` (plain values; an unknown key or a bad
            value is a ValueError naming ``group.key``).
        template_init: (S, 2) initial template in normalised coordinates (e.g. the mean
            landmarks of frontal training faces, T_fix). If None, :meth:`set_template` or
            :meth:`template_from_data` must give it before training (the data module's
            ``mean_frontal_landmarks()``, through :class:`DataModuleHook`).
        num_landmarks: S, when ``template_init`` is None (84 for the project's schema).
        schema: landmark schema name (for ANME's eye indices).

    Batches are dicts: ``image`` (B, 3, H, W) in [−1, 1], ``label`` (B,), ``landmarks``
    (B, S, 2) normalised source-frame coordinates, ``index`` (B,) and ``yaw`` (B,) for
    evaluation.
    """

    def __init__(
        self,
        num_classes: int,
        model: Mapping | None = None,
        align: Mapping | None = None,
        loss: Mapping | None = None,
        optim: Mapping | None = None,
        template_init=None,
        num_landmarks: int = 84,
        schema: str = "lmk84",
    ) -> None:
        super().__init__()
        # the schema's defaults updated by the given groups, validated; stored as plain values
        config = ModuleConfig.from_mappings(model=model, align=align, loss=loss, optim=optim)
        groups = config.to_dicts()
        model, align, loss, optim = (groups[g] for g in ("model", "align", "loss", "optim"))
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if template_init is not None:
            template_init = torch.as_tensor(template_init, dtype=torch.float32).tolist()
            num_landmarks = len(template_init)
        self.save_hyperparameters(
            {
                "num_classes": num_classes,
                "model": model,
                "align": align,
                "loss": loss,
                "optim": optim,
                "template_init": template_init,
                "num_landmarks": num_landmarks,
                "schema": schema,
            },
            logger=False,  # loggers get the run's flat config from the training job instead
        )
        self.schema = get_schema(schema)
        self.lam = float(loss["lambda"])
        self._nonfinite_steps = 0  # consecutive training steps with a NaN / inf loss
        size = model["input_size"]
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)

        self.recognizer = build_recognizer(
            backbone=model["backbone"],
            width=model["width"],
            input_size=model["input_size"],
            embedding_dim=model["embedding_dim"],
            dropout=model["dropout"],
            align_method=align["method"],
            tps_grid_size=align["tps_grid_size"],
            location=align["location"],
            locnet_input_size=align["locnet_input_size"],
            locnet_width=align["locnet_width"],
            padding_mode=align["padding_mode"],
            template=self._initial_template(template_init, num_landmarks)
            if align["method"] in LANDMARK_METHODS
            else None,
            schema=schema,
        )
        if model["channels_last"]:
            self.recognizer.to(memory_format=torch.channels_last)
        head_kwargs = {}
        if loss["head"] != "softmax":
            head_kwargs = {"s": loss["scale"], "m": loss["margin"]}
        if Head(loss["head"]).partial_fc:
            head_kwargs["sample_rate"] = loss["sample_rate"]
        self.head = build_head(loss["head"], model["embedding_dim"], num_classes, **head_kwargs)
        self.partial_fc = isinstance(self.head, PartialFC)
        if self.partial_fc:
            # each rank holds other centres: DDP must neither broadcast nor average them
            self._ddp_params_and_buffers_to_ignore = ["head.weight"]
        if model["pretrained"]:
            load_insightface_weights(self.recognizer.backbone, model["pretrained"])

        self.align_loss: AlignmentLoss | None = None
        self.landmark_aligned = align["method"] in LANDMARK_METHODS
        if self.landmark_aligned:
            self.register_buffer("template_ready", torch.tensor(template_init is not None))
        elif self.family is not None:
            loss_kwargs = {
                "learn_alpha": loss["learn_alpha"],
                "alpha_init": loss["alpha_init"],
                "image_size": self.image_size,
                "units": loss["units"],
                "reduction": loss["reduction"],
            }
            if loss["template_checkpoint"]:  # T_fix†: a learned template, frozen
                self.align_loss = AlignmentLoss.from_checkpoint(
                    loss["template_checkpoint"], **loss_kwargs
                )
                template_init = self.align_loss.template.tolist()
            else:
                self.align_loss = AlignmentLoss(
                    self._initial_template(template_init, num_landmarks),
                    learn_template=loss["learn_template"],
                    **loss_kwargs,
                )
            if self.lam == 0:
                # λ = 0: T and α get no gradient; frozen, so DDP does not wait for them
                self.align_loss.requires_grad_(False)
            self.register_buffer("template_start", self.align_loss.template.detach().clone())
            self.register_buffer("template_ready", torch.tensor(template_init is not None))
        self.val_collector = self._collector()
        self.test_collector = self._collector()
        self._protocols: dict[str, EvaluationProtocol] = {}

    # -- construction helpers ------------------------------------------------------------
    @staticmethod
    def _initial_template(template_init, num_landmarks: int) -> Tensor:
        """The given template, or a placeholder filled at ``setup`` from the data module."""
        if template_init is not None:
            return torch.tensor(template_init)
        # a spread placeholder (FullAlign's spline needs distinct points until setup)
        angles = torch.linspace(0, 2 * math.pi, num_landmarks + 1)[:-1]
        radius = 0.3 + 0.4 * torch.arange(num_landmarks) / num_landmarks
        return torch.stack([radius * angles.cos(), radius * angles.sin()], dim=1)

    def _collector(self) -> EmbeddingCollector:
        return EmbeddingCollector(
            # states stay on the device: NCCL cannot all-gather CPU tensors
            extras=(
                "labels",
                "yaw",
                "aligned_landmarks",
                "valid",
                "folded",
                "aligned_exact",
                "valid_exact",
            )
        )

    @property
    def family(self):
        return self.recognizer.family

    @property
    def template(self) -> Tensor | None:
        """T (S, 2): the alignment loss's template, or the landmark aligner's T_fix."""
        if self.landmark_aligned:
            return self.recognizer.aligner.template
        return None if self.align_loss is None else self.align_loss.template

    def configure_callbacks(self) -> list[L.Callback]:
        """:class:`DataModuleHook`: hands the data module's template and protocols over."""
        return [DataModuleHook()]

    def setup(self, stage: str) -> None:
        if self.partial_fc and stage == "fit" and not self.head.sharded:
            world = self.trainer.world_size
            if world > 1:  # the process group exists now; DDP wraps the module after this
                self.head.shard(self.trainer.global_rank, world)
        if self.template is None or bool(self.template_ready):
            return
        raise ValueError(
            "BalancedAlignModule: no template_init was given and the data module cannot "
            "provide mean_frontal_landmarks() (or call set_template before training)"
        )

    def template_from_data(self, has_landmarks: bool, mean_frontal_landmarks=None) -> None:
        """Initialise T from the training data unless it is set already.

        has_landmarks: whether the training data has landmarks. mean_frontal_landmarks: a
        callable returning (S, 2) normalised landmarks (called only when T is needed), or
        None when the data cannot provide them (then :meth:`setup` raises).
        """
        if self.template is None or bool(self.template_ready):
            return
        if not has_landmarks and self.lam == 0 and not self.landmark_aligned:
            # a plain STN on data without landmarks: no L_align, no ANME, T is never used
            self.template_ready.fill_(True)
            return
        if mean_frontal_landmarks is not None:
            self.set_template(torch.as_tensor(mean_frontal_landmarks(), dtype=torch.float32))

    def set_evaluation_protocols(
        self, val: EvaluationProtocol | None = None, test: EvaluationProtocol | None = None
    ) -> None:
        """The protocols run at the end of validation / test; rows index the dataset of
        ``val_dataloader()`` / ``test_dataloader()``. A protocol left None stays as it was."""
        for stage, protocol in (("val", val), ("test", test)):
            if protocol is not None:
                self._protocols[stage] = protocol

    @torch.no_grad()
    def set_template(self, template: Tensor) -> None:
        """Initialise T (and the drift reference) to ``template`` (S, 2) normalised."""
        if self.template is None:
            raise ValueError("this model has no alignment (align.method=none): no template")
        template = torch.as_tensor(template, dtype=torch.float32)
        if template.shape != self.template.shape:
            raise ValueError(
                f"template has shape {tuple(template.shape)}, expected {tuple(self.template.shape)}"
            )
        if self.landmark_aligned:
            self.recognizer.aligner.set_template(template)
        else:
            self.align_loss.template.copy_(template)
            self.template_start.copy_(template)
        self.template_ready.fill_(True)
        self.hparams["template_init"] = template.tolist()

    # -- forward ------------------------------------------------------------------------
    def forward(self, images: Tensor) -> Tensor:
        """Embeddings (B, D) of images (B, 3, H, W) in [−1, 1] (no TTA, not normalised)."""
        return self.recognizer(images).embedding

    def embed(self, images: Tensor) -> Tensor:
        """Flip-TTA embeddings, L2-normalised (docs/design.md §5)."""
        return flip_tta_embeddings(self, images)

    def aligned_landmarks(self, params: Tensor | None, landmarks: Tensor):
        """Landmarks after the model's deformation, in the aligned frame (for ANME).

        STN: y = f⁻¹(x) by the family's inverse (for TPS, Newton started from the template
        point of each landmark); no alignment: y = x.
        Returns (points (B, S, 2), converged (B, S) bool, folded (B, S) bool).
        """
        if params is None:
            ones = torch.ones(landmarks.shape[:2], dtype=torch.bool, device=landmarks.device)
            return landmarks, ones, ~ones
        initial = self.template.detach() if self.template is not None else None
        inverse = self.family.inverse_points(params.float(), landmarks.float(), initial=initial)
        folded = (
            inverse.folded if inverse.folded is not None else torch.zeros_like(inverse.converged)
        )
        return inverse.points, inverse.converged, folded

    # -- training -----------------------------------------------------------------------
    def _images(self, batch: dict) -> Tensor:
        images = batch["image"]
        if self.hparams.model["channels_last"]:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _aligner_landmarks(self, batch: dict) -> Tensor | None:
        """The batch's landmarks when the alignment is computed from them, else None."""
        if not self.landmark_aligned:
            return None
        has = batch.get("has_landmarks")
        if has is None or not bool(has.all()):
            raise ValueError(
                f"align.method={self.hparams.align['method']} aligns each image by its "
                "landmarks; this batch has images without landmarks"
            )
        return batch["landmarks"]

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        images, labels = self._images(batch), batch["label"]
        output = self.recognizer(images, self._aligner_landmarks(batch))
        if self.partial_fc:  # the loss over every rank's rows and centres
            result = self.head(output.embedding, labels)
            loss_fr, accuracy = result.loss, result.accuracy
        else:
            logits = self.head(output.embedding, labels)
            loss_fr = F.cross_entropy(logits.float(), labels)
            with torch.no_grad():
                accuracy = (logits.argmax(dim=1) == labels).float().mean()
        total = loss_fr
        batch_size = images.shape[0]
        log = {"train/l_fr": loss_fr}
        has = batch.get("has_landmarks")
        has_landmarks = has is not None and bool(has.all())
        if self.align_loss is not None and self.lam > 0 and not has_landmarks:
            raise ValueError(
                f"loss.lambda={self.lam} > 0 needs landmarks for every training image; this "
                "batch has images without landmarks"
            )
        if self.align_loss is not None and has_landmarks:
            if self.lam > 0:
                align = self.align_loss(self.family, output.params, batch["landmarks"])
                total = total + self.lam * align.total
            else:
                with torch.no_grad():  # λ = 0: the plain STN; L_align is only reported
                    align = self.align_loss(self.family, output.params, batch["landmarks"])
            drift = (self.align_loss.template.detach() - self.template_start).norm(dim=-1).mean()
            log.update(
                {
                    "train/l_align": align.total.detach(),
                    "train/l_lmk": align.lmk.detach(),
                    "train/l_reg": align.reg.detach(),
                    "train/alpha_mean": align.alpha.mean(),
                    "train/alpha_min": align.alpha.min(),
                    "train/template_drift": drift,
                }
            )
        log["train/acc"] = accuracy
        log["train/loss"] = total.detach()
        self._check_finite(log)
        loss = log.pop("train/loss")
        self.log_dict(log, on_step=True, on_epoch=True, batch_size=batch_size, sync_dist=False)
        self.log(
            "train/loss", loss, on_step=True, on_epoch=True, batch_size=batch_size, prog_bar=True
        )
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, batch_size=1)
        return total

    def _check_finite(self, log: Mapping[str, Tensor]) -> None:
        """Stop a diverged run: MAX_NONFINITE_STEPS consecutive NaN / inf training losses.

        One non-finite loss can be a transient overflow under fp16 autocast; a streak means
        the weights are gone (every later step and evaluation would be NaN). Under DDP the
        ranks agree on each step (a step counts if its loss is non-finite on any rank), so
        they all stop at the same step instead of leaving some waiting in a collective.
        Steps are training_step calls (micro-batches under gradient accumulation).
        """
        finite = bool(torch.isfinite(log["train/loss"]))
        if self._trainer is not None:
            finite = bool(self.trainer.strategy.reduce_boolean_decision(finite, all=True))
        self._nonfinite_steps = 0 if finite else self._nonfinite_steps + 1
        if self._nonfinite_steps < MAX_NONFINITE_STEPS:
            return
        parts = ", ".join(f"{k.removeprefix('train/')}={float(v):.4g}" for k, v in log.items())
        raise FloatingPointError(
            f"training diverged: the loss was NaN or infinite for {self._nonfinite_steps} "
            f"consecutive steps, up to global step {self.global_step} (epoch "
            f"{self.current_epoch}); last step on this rank: {parts}. Learned warps are the "
            "usual cause: lower optim.align_lr_scale or set trainer.gradient_clip_val"
        )

    # -- Partial FC: the checkpoint holds every rank's centres -----------------------------
    def _head_optimizer_slot(self) -> int | None:
        """Index of ``head.weight`` in the optimizer's state dict (None without one)."""
        optimizers = self.trainer.optimizers if self._trainer is not None else []
        if not optimizers:
            return None
        params = [p for group in optimizers[0].param_groups for p in group["params"]]
        return next((i for i, p in enumerate(params) if p is self.head.weight), None)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The validation metrics of the saved weights (``val_metrics``: the last validation's
        ``val/…`` values; results.json's ``val_best`` reads them), and a sharded head's full
        (C, D) centres and momentum, gathered on rank 0 (every rank calls this hook), so the
        checkpoint loads at any world size."""
        if self._trainer is not None:
            checkpoint["val_metrics"] = {
                k: float(v)
                for k, v in self.trainer.callback_metrics.items()
                if k.startswith("val/")
            }
        if not self.partial_fc:
            return
        slot = self._head_optimizer_slot()
        # also when not sharded: a one-process checkpoint resumed under DDP needs it
        checkpoint["partial_fc_slot"] = slot
        if not self.head.sharded:
            return
        full = self.head.gather_full()
        states = checkpoint.get("optimizer_states") or []
        state = states[0]["state"].get(slot, {}) if states and slot is not None else {}
        momentum = state.get("momentum_buffer")
        full_momentum = None if momentum is None else self.head.gather_full(momentum)
        if full is not None:  # rank 0, the one that writes
            checkpoint["state_dict"]["head.weight"] = full
            if full_momentum is not None:  # a new dict: `state` is the optimizer's own
                states[0]["state"][slot] = {**state, "momentum_buffer": full_momentum}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """This rank's rows of the checkpoint's full centres (and their momentum)."""
        if not (self.partial_fc and self.head.sharded):
            return
        state_dict = checkpoint["state_dict"]
        state_dict["head.weight"] = self.head.local_rows(state_dict["head.weight"])
        slot, states = checkpoint.get("partial_fc_slot"), checkpoint.get("optimizer_states")
        state = states[0]["state"].get(slot, {}) if states and slot is not None else {}
        if state.get("momentum_buffer") is not None:
            rows = self.head.local_rows(state["momentum_buffer"])
            states[0]["state"][slot] = {**state, "momentum_buffer": rows}

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """With Partial FC, ``trainer.gradient_clip_val`` clips the replicated parameters
        only: a norm over each rank's own centres would differ between ranks and let the
        replicas drift apart. The centres are not clipped."""
        if not self.partial_fc or gradient_clip_val is None:
            super().configure_gradient_clipping(
                optimizer, gradient_clip_val, gradient_clip_algorithm
            )
            return
        params = [
            p for n, p in self.named_parameters() if n != "head.weight" and p.grad is not None
        ]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def on_train_end(self) -> None:
        """Rank 0 holds the full centres again (``ddp_spawn`` copies its state back)."""
        if self.partial_fc and self.head.sharded:
            full = self.head.gather_full()
            if full is not None:
                self.head.unshard(full)

    # -- evaluation ---------------------------------------------------------------------
    def _evaluation_step(self, batch: dict, collector: EmbeddingCollector) -> None:
        images = self._images(batch)
        landmarks = self._aligner_landmarks(batch)
        output = self.recognizer(images, landmarks)
        if landmarks is not None:  # the flipped face's landmarks: mirrored and permuted
            perm = list(self.schema.flip_permutation)
            landmarks = landmarks[:, perm] * landmarks.new_tensor([-1.0, 1.0])
        flipped = self.recognizer(torch.flip(images, dims=[3]), landmarks).embedding
        embedding = F.normalize((output.embedding + flipped).float(), dim=1)
        batch_size, num_points = images.shape[0], self.hparams.num_landmarks
        has = batch.get("has_landmarks")
        if has is None or not bool(has.any()):
            # no landmarks (e.g. a folder source): no ANME, rows marked invalid
            aligned = images.new_zeros(batch_size, num_points, 2)
            valid = torch.zeros(batch_size, num_points, dtype=torch.bool, device=images.device)
            folded = valid
        else:
            aligned, valid, folded = self.aligned_landmarks(output.params, batch["landmarks"])
            valid = valid & has.bool()[:, None]
        # the true landmarks behind noisy labels, through the same warp (anme_exact)
        aligned_exact, valid_exact = torch.zeros_like(aligned), torch.zeros_like(valid)
        if "landmarks_exact" in batch and has is not None and bool(has.any()):
            aligned_exact, valid_exact, _ = self.aligned_landmarks(
                output.params, batch["landmarks_exact"]
            )
            valid_exact = valid_exact & has.bool()[:, None]
        collector.update(
            batch["index"],
            embedding,
            labels=batch["label"],
            yaw=batch["yaw"].float(),
            aligned_landmarks=aligned.float(),
            valid=valid,
            folded=folded & valid,
            aligned_exact=aligned_exact.float(),
            valid_exact=valid_exact,
        )

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluation_step(batch, self.val_collector)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluation_step(batch, self.test_collector)

    def _evaluation_epoch_end(self, collector: EmbeddingCollector, stage: str) -> None:
        if self.trainer.sanity_checking:
            collector.reset()
            return
        rows = collector.compute()
        collector.reset()
        protocol = self._protocols.get(stage)
        if protocol is None:
            raise RuntimeError(
                f"{stage}: no evaluation protocol; call set_evaluation_protocols({stage}=…) or "
                "run with a data module that provides one (see balanced_align.data_hook)"
            )
        protocol = self._protocol_of_seen_rows(
            protocol, rows["indices"].cpu().numpy(), rows["labels"].cpu().numpy(), stage
        )
        metrics = evaluate_protocol(
            protocol, rows["embeddings"], labels=rows["labels"], yaw=rows["yaw"]
        )
        valid = rows["valid"].bool()
        if bool(valid.any()):
            rows_used = slice(None)
            if protocol.anme_indices is not None:
                rows_used = torch.as_tensor(protocol.anme_indices, device=valid.device)
            points = rows["aligned_landmarks"][rows_used]
            metrics["anme"] = self._anme("anme", points, valid[rows_used], stage)
            valid_exact = rows["valid_exact"].bool()
            if bool(valid_exact.any()):  # labels with annotation noise
                points = rows["aligned_exact"][rows_used]
                metrics["anme_exact"] = self._anme(
                    "anme_exact", points, valid_exact[rows_used], stage
                )
            # fractions of evaluation landmarks whose inverse warp failed / lies on a fold
            metrics["anme_failed_frac"] = float((~valid).float().mean())
            metrics["folded_frac"] = float(rows["folded"].float().mean())
        logged = {f"{stage}/{k}": float(v) for k, v in metrics.items()}
        # every rank computed the same numbers from the gathered rows: no further reduction
        self.log_dict(logged, sync_dist=False, rank_zero_only=False)

    def _protocol_of_seen_rows(
        self, protocol: EvaluationProtocol, seen, labels, stage: str
    ) -> EvaluationProtocol:
        """``protocol`` on the evaluated rows ``seen`` (dataset indices, in row order): itself
        when they are 0..N-1 and cover it; else restricted to them, with a warning naming
        what was left out (a part of the set: ``limit_{stage}_batches``, ``fast_dev_run``)."""
        if (seen == np.arange(seen.size)).all() and protocol.max_row() < seen.size:
            return protocol
        restricted = protocol.restricted(seen, labels)
        before, after = protocol.counts(), restricted.counts()
        kept = ", ".join(f"{k} {after[k]}/{n}" for k, n in before.items() if n)
        log.warning(
            "%s: %d rows of the evaluation set were evaluated (a limited run); its protocol is "
            "restricted to them: %s. These metrics do not compare with a full evaluation",
            stage,
            seen.size,
            kept,
        )
        return restricted

    def _anme(self, metric: str, points: Tensor, valid: Tensor, stage: str) -> float:
        """ANME of aligned ``points`` (N, S, 2) where ``valid`` (N, S); NaN, with a warning
        naming ``stage/metric``, where undefined (e.g. no face whose eyes inverted). Any other
        problem (wrong shapes, a landmark count that is not the schema's) raises."""
        try:
            return anme(points, self.schema, valid=valid)
        except UndefinedANMEError as error:
            log.warning("%s/%s is undefined: %s", stage, metric, error)
            return float("nan")

    def on_validation_epoch_end(self) -> None:
        self._evaluation_epoch_end(self.val_collector, "val")

    def on_test_epoch_end(self) -> None:
        self._evaluation_epoch_end(self.test_collector, "test")

    # -- optimisation -------------------------------------------------------------------
    def configure_optimizers(self):
        optim = self.hparams.optim
        # linear scaling by the global batch: per-device batch × devices × accumulation
        trainer = self.trainer
        global_batch = optim["batch_size"] * trainer.world_size * trainer.accumulate_grad_batches
        lr = optim["lr"] * global_batch / optim["reference_batch_size"]
        # the alignment subsystem (LocNet + template) learns at lr × align_lr_scale
        align_params = []
        if self.recognizer.stn is not None:
            align_params += list(self.recognizer.stn.named_parameters(prefix="recognizer.stn"))
        if self.align_loss is not None and isinstance(self.align_loss.template, torch.nn.Parameter):
            align_params.append(("align_loss.template", self.align_loss.template))
        align_ids = {id(p) for _, p in align_params}
        rest = [(n, p) for n, p in self.named_parameters() if id(p) not in align_ids]
        groups = build_param_groups(rest, optim["weight_decay"])
        if align_params:
            for group in build_param_groups(align_params, optim["weight_decay"]):
                group["lr"] = lr * optim["align_lr_scale"]
                group["name"] = f"align_{group['name']}"
                groups.append(group)
        optimizer = torch.optim.SGD(
            groups, lr=lr, momentum=optim["momentum"], nesterov=optim["nesterov"]
        )
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        milestones = [round(m * total_steps) for m in optim["milestones"]]
        warmup = round(optim["warmup_fraction"] * total_steps)
        gamma = optim["gamma"]

        def factor(step: int) -> float:
            scale = gamma ** sum(step >= m for m in milestones)
            if warmup > 0 and step < warmup:
                scale *= (step + 1) / warmup
            return scale

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
