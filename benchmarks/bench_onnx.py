"""onnxruntime vs torch inference latency per image, side by side in one run.

For each model (the default run's recognizer, STN-TPS-8 at fmap on IR-18 ×0.25 at 64², and
optionally larger ones) and batch size (1 and 32): the raw embedding of ``BalancedAlignModule
.forward`` in torch (eval, ``inference_mode``, channels-last as trained) and of its ONNX export
in onnxruntime (CPU provider, all graph optimisations). Runs are interleaved round-robin so
machine noise hits both alike; the table shows the median ms per image, the ratio, and the
largest |difference| of the L2-normalised embeddings. Untrained weights (speed does not
depend on them), with a non-identity LocNet so the warp is real work.

    python benchmarks/bench_onnx.py [--models default ir34_112 plain] [--batches 1 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
import torch

from balanced_align.export import export_onnx
from balanced_align.module import BalancedAlignModule

#: model name -> BalancedAlignModule overrides
MODELS = {
    "default": {"model": {}, "align": {}},  # IR-18 ×0.25, 64², STN-TPS-8 at fmap
    "ir34_112": {
        "model": {"backbone": "iresnet34", "width": 0.5, "input_size": 112, "embedding_dim": 512},
        "align": {"locnet_input_size": 64},
    },
    "plain": {"model": {}, "align": {"method": "none"}},
}


def build(name: str) -> BalancedAlignModule:
    torch.manual_seed(0)
    spec = MODELS[name]
    model = BalancedAlignModule(
        num_classes=10, model=spec["model"], align=spec["align"], loss={"lambda": 0.0}
    )
    if model.recognizer.stn is not None:
        with torch.no_grad():
            model.recognizer.stn.locnet.fc.weight.normal_(0.0, 0.02)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["default"], choices=sorted(MODELS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=7)
    # one thread by default: on a shared, loaded machine torch's OpenMP team stalls (at 2
    # threads under load batch-1 latency grew 20x here), which would measure the machine
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads")
    header = "| model | batch | torch ms/img | onnxruntime ms/img | ort / torch | max Δ (unit) |"
    print(header)
    print("|---|---|---|---|---|---|")
    for name in args.models:
        model = build(name)
        session = ort.InferenceSession(
            export_onnx(model), options, providers=["CPUExecutionProvider"]
        )
        height, width = model.image_size
        channels_last = bool(model.hparams.model["channels_last"])
        for batch in args.batches:
            images = torch.rand(batch, 3, height, width) * 2 - 1
            feed = {"images": images.numpy()}

            def run_torch():
                x = (
                    images.contiguous(memory_format=torch.channels_last)
                    if channels_last
                    else images
                )
                with torch.inference_mode():
                    return model(x)

            def run_ort():
                return session.run(["embedding"], feed)[0]

            for fn in (run_torch, run_ort):  # warm up (oneDNN / ORT kernel selection)
                fn()
            times = {"torch": [], "ort": []}
            for _ in range(args.repeats):
                for key, fn in (("torch", run_torch), ("ort", run_ort)):
                    start = time.perf_counter()
                    fn()
                    times[key].append(time.perf_counter() - start)
            ref = torch.nn.functional.normalize(run_torch().float(), dim=1).numpy()
            got = torch.nn.functional.normalize(torch.from_numpy(run_ort()), dim=1).numpy()
            ms_torch = statistics.median(times["torch"]) * 1e3 / batch
            ms_ort = statistics.median(times["ort"]) * 1e3 / batch
            print(
                f"| {name} | {batch} | {ms_torch:.2f} | {ms_ort:.2f} | {ms_ort / ms_torch:.2f} "
                f"| {float(np.abs(ref - got).max()):.1e} |"
            )


if __name__ == "__main__":
    main()
