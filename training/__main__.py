"""Train the demo's files: the VQ tokenizer, the LPD model and the judge of the tests.

    python -m training vq    --out vq_shapes.safetensors --seed 0
    python -m training lpd   --tokenizer vq_shapes.safetensors --out lpd_shapes.safetensors --seed 0 --bf16
    python -m training judge --out tests/fixtures/shape_judge.safetensors

The first two commands made the shipped demo files (lpd_core/data/demo/, see MODEL_CARD.md
there; they were then run as `python -m lpd_core.train`, the same code before it moved here),
the third the judge the tests load. All print progress, use CUDA when it is there (the judge
trains on the CPU unless `--device` says otherwise), and give the same weights for the same seed
on the same device (CPU runs use `--threads` threads; 2 by default). The model files are
.safetensors with the config in the metadata, as `lpd_core.weights.convert` writes them, so
`load_tokenizer(path)` / `load_model(path)` need no other argument; the LPD file also stores the
class names, the demo's sampling settings and the tokenizer to pair it with (`--tokenizer-name`,
default "demo"). Every file records its training arguments under the metadata key `lpd_training`.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from lpd_core.vq import VQConfig
from lpd_core.weights import load_tokenizer, save_model, save_tokenizer

from . import shapes
from .common import Log, default_device, seed_everything
from .judge import classify, save_judge, train_classifier
from .lpd import demo_lpd_config, train_lpd, with_demo_metadata, write_preview
from .vq import DEMO_VQ_CONFIG, evaluate_vq, train_vq

TRAINING_METADATA_KEY = "lpd_training"  # JSON of the training arguments (informational)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, device_help="cuda or cpu (default: cuda when available)"):
        p.add_argument("--out", required=True, help="where to write the .safetensors file")
        p.add_argument("--device", default=None, help=device_help)
        p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
        p.add_argument("--image-size", type=int, default=32)

    vq = sub.add_parser("vq", help="train the VQ tokenizer")
    common(vq)
    vq.add_argument("--seed", type=int, default=0)
    vq.add_argument("--steps", type=int, default=6000)
    vq.add_argument("--batch", type=int, default=8)
    vq.add_argument("--lr", type=float, default=2e-3)
    vq.add_argument("--images", type=int, default=30000, help="size of the training set")
    vq.add_argument("--crop", type=int, default=16, help="crop size of the first training phase (0: none)")
    vq.add_argument("--crop-fraction", type=float, default=0.8, help="fraction of the steps trained on crops")
    vq.add_argument("--codebook-size", type=int, default=DEMO_VQ_CONFIG.codebook_size)
    vq.add_argument("--codebook-dim", type=int, default=DEMO_VQ_CONFIG.codebook_dim)
    vq.add_argument("--ch", type=int, default=DEMO_VQ_CONFIG.ch, help="base channels (a multiple of 32)")
    vq.add_argument("--ch-mult", default=",".join(map(str, DEMO_VQ_CONFIG.ch_mult)),
                    help="channel multipliers per level; stride is 2^(levels-1)")
    vq.add_argument("--z-channels", type=int, default=DEMO_VQ_CONFIG.z_channels)
    vq.add_argument("--res-blocks", type=int, default=DEMO_VQ_CONFIG.num_res_blocks)

    lpd = sub.add_parser("lpd", help="train the LPD model on a trained tokenizer's codes")
    common(lpd)
    lpd.add_argument("--seed", type=int, default=0)
    lpd.add_argument("--tokenizer", required=True, help="the tokenizer .safetensors from `python -m training vq`")
    lpd.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    lpd.add_argument("--batch", type=int, default=128)
    lpd.add_argument("--lr", type=float, default=1e-3)
    lpd.add_argument("--images", type=int, default=40000, help="size of the training set")
    lpd.add_argument("--width", type=int, default=256)
    lpd.add_argument("--depth", type=int, default=5)
    lpd.add_argument("--heads", type=int, default=4)
    lpd.add_argument("--min-decode-steps", type=int, default=2,
                     help="decode step counts are drawn log-uniformly from [min, max] per batch")
    lpd.add_argument("--max-decode-steps", type=int, default=None, help="default: the number of tokens")
    lpd.add_argument("--label-drop", type=float, default=0.1)
    lpd.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the matmuls (CPU with AMX, GPU)")
    lpd.add_argument("--tokenizer-name", default="demo",
                     help="what loaders pair with this model: a registry name, 'demo' (default) or a path")
    lpd.add_argument("--preview", default=None, help="also write a PNG grid of samples here")

    judge = sub.add_parser("judge", help="train the shape classifier that judges samples")
    common(judge, device_help="cuda or cpu (default: cpu)")
    judge.add_argument("--seed", type=int, default=12345, help="its own images, apart from the models' data")
    judge.add_argument("--images", type=int, default=20000, help="size of the training set")
    judge.add_argument("--epochs", type=int, default=2)
    judge.add_argument("--batch", type=int, default=128)
    judge.add_argument("--lr", type=float, default=3e-3)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    seed_everything(args.seed, args.threads)
    if args.device:
        device = torch.device(args.device)
    else:
        device = torch.device("cpu") if args.command == "judge" else default_device()
    log = Log()
    log(f"{args.command}: device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    training = json.dumps({k: v for k, v in vars(args).items() if k not in ("out", "preview")} |
                          {"command": "python -m training " + " ".join(sys.argv[1:] if argv is None else argv)})
    extra = {TRAINING_METADATA_KEY: training}

    if args.command == "vq":
        config = VQConfig(codebook_size=args.codebook_size, codebook_dim=args.codebook_dim, ch=args.ch,
                          ch_mult=tuple(int(m) for m in args.ch_mult.split(",")), z_channels=args.z_channels,
                          num_res_blocks=args.res_blocks)
        model = train_vq(config, steps=args.steps, batch=args.batch, lr=args.lr, num_images=args.images,
                         image_size=args.image_size, seed=args.seed, crop=args.crop or None,
                         crop_fraction=args.crop_fraction, device=device, log=log)
        held_out, _ = shapes.dataset_uint8(2000, seed=args.seed + 777, size=args.image_size)
        stats = evaluate_vq(model, held_out)
        log(f"vq held-out: psnr {stats['psnr']:.2f} dB, codes used {stats['codes_used']}/{config.codebook_size}, "
            f"perplexity {stats['perplexity']:.0f}")
        path = save_tokenizer(model, args.out, extra)
    elif args.command == "lpd":
        vq_model = load_tokenizer(args.tokenizer, device=device)
        config = demo_lpd_config(vq_model, args.image_size, args.width, args.depth, args.heads)
        model = train_lpd(vq_model, config, steps=args.steps, batch=args.batch, lr=args.lr, num_images=args.images,
                          image_size=args.image_size, seed=args.seed, min_steps=args.min_decode_steps,
                          max_steps=args.max_decode_steps, label_drop=args.label_drop, device=device, log=log,
                          bf16=args.bf16)
        path = save_model(with_demo_metadata(model, args.tokenizer_name), args.out, extra)
        if args.preview:
            write_preview(vq_model, model, args.preview)
            log(f"preview written to {args.preview}")
    else:
        model = train_classifier(num_images=args.images, epochs=args.epochs, batch=args.batch, lr=args.lr,
                                 image_size=args.image_size, seed=args.seed, device=device, log=log)
        held_out, labels = shapes.dataset_uint8(2000, seed=args.seed + 777, size=args.image_size)
        predicted, _ = classify(model, torch.from_numpy(held_out).float() / 255)
        log(f"judge held-out accuracy {(predicted.numpy() == labels).mean():.3f}")
        path = save_judge(model, args.out, extra)
    log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {log.elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
