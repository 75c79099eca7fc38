"""Prove the GPU path in one command: correctness, speed and the reference implementation, one table.

    python -m benchmarks.gpu_check [--json gpu_check.json]       # on a CUDA machine, < 8 min on an H100/H200
    python -m benchmarks.gpu_check --quick                        # the same code on the CPU, small shapes

Correctness (the fixture model of tests/fixtures/lpd_reference, fp32): the reference's greedy
tokens exactly and its step logits within 1e-4, eager and fast; bf16 teacher-forced logits against
fp32; fast against eager greedy tokens in bf16; the capture-failure fallback (a capture made to
fail gives the eager tokens, one log line). All of it again in a child process under the other
CUDA allocator back-end (`PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync`: the back-end is fixed
per process).

Speed (random weights of the published shapes, bf16 on CUDA, cfg 4.8 linear, locality order):
LPD-L/XL/XXL-256 in 20 steps at batch 1 and 64, LPD-L/XL-512 in 48 steps at batch 1; eager and
fast; ms per image without and with the VQ decode; the first fast call after a release (capture
included) and the second (the decoder reused, as a second ComfyUI run of the same shape); the
share of the weight-reading floor (steps × weight bytes / copy bandwidth); the fast path's memory
estimate (`lpd_core.fast.decoder_memory_bytes`) against what CUDA really reserved.

Reference: the published implementation, timed by its own harness in a child process
(`bench_reference.py` of ../shared/tools/gpu_compare, copied into the checkout as `.gpu_compare/`,
which git ignores, or given with --reference-dir), on the same GPU in the same run; the table shows
our fast time against it.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lpd_core import LPD, LPDConfig, VQConfig, VQModel, build_schedule, generate, load_model
from lpd_core import fast as fast_path
from lpd_core.fast import decoder_memory_bytes, release_fast_state, static_decoder
from lpd_core.hub import TOKENIZER_STRIDE

from .bench_generate import memory_bandwidth, timed

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "lpd_reference"
FIXTURE_HEADS = 4
LOGIT_TOLERANCE = 1e-4
BF16_RELATIVE_BOUND = 2e-2
BF16_AGREEMENT_BOUND = 0.9
ALLOCATOR_VARIANT = "backend:cudaMallocAsync"
# (preset, resolution, steps, batch, cfg): the speed matrix, and the quick one for the CPU.
SPEED_CASES = [("lpd_l", 256, 20, 1, 4.8), ("lpd_l", 256, 20, 64, 4.8), ("lpd_xl", 256, 20, 1, 4.9),
               ("lpd_xl", 256, 20, 64, 4.9), ("lpd_xxl", 256, 20, 1, 5.9), ("lpd_xxl", 256, 20, 64, 5.9),
               ("lpd_l", 512, 48, 1, 7.3), ("lpd_xl", 512, 48, 1, 6.0)]
QUICK_CONFIG = dict(embed_dim=64, depth=2, num_heads=4, vocab_size=512, num_classes=10)
QUICK_CASES = [("quick", 64, 4, 1, 3.0), ("quick", 64, 4, 4, 3.0)]  # 4x4 tokens
QUICK_VQ = dict(codebook_size=512, ch=32, ch_mult=(1, 1, 1, 1, 1), z_channels=32, num_res_blocks=1)
QUICK_GREEDY = ["greedy_cfg3_linear", "greedy_uncond"]
# Reference runs: (model, resolution, steps, batch, cfg) of our cases it is compared with.
REFERENCE_CASES = [("lpd_l", 256, 20, 1, 4.8), ("lpd_l", 256, 20, 64, 4.8), ("lpd_xl", 256, 20, 1, 4.9),
                   ("lpd_xl", 512, 48, 1, 6.0)]

log = logging.getLogger("lpd_core")


def row(section: str, name: str, value, bound: str = "", ok: bool | None = None, **extra) -> dict:
    return dict(section=section, name=name, value=value, bound=bound, ok=ok, **extra)


# -- correctness --------------------------------------------------------------------------------
def _fixture_cases(device):
    from safetensors.torch import load_file
    cases = json.loads((FIXTURES / "cases.json").read_text())["cases"]
    tensors = {k: v.to(device) for k, v in load_file(str(FIXTURES / "cases.safetensors")).items()}
    by_name = {c["name"]: c for c in cases}
    def tensors_of(name):
        return {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(name + ".")}
    return by_name, tensors_of


def _greedy(model, case, t, fast):
    logits = []
    tokens = generate(model, labels=t.get("labels"), batch=t["orders"].shape[0], orders=t["orders"],
                      group_sizes=case["group_sizes"], cfg=case["cfg"], cfg_schedule=case.get("cfg_schedule", "linear"),
                      top_k=1, seeds=0, callback=lambda s: logits.append(s.logits), fast=fast)
    release_fast_state(model)
    return tokens, logits


@torch.no_grad()
def correctness(device: torch.device, quick: bool = False) -> list[dict]:
    """The fixture checks of the module docstring on `device`, as table rows (`quick`: two of the
    greedy cases, with and without guidance)."""
    rows = []
    model = load_model(FIXTURES / "lpd.pth", device=device, num_heads=FIXTURE_HEADS)
    cases, tensors_of = _fixture_cases(device)
    greedy = QUICK_GREEDY if quick else [name for name in cases if name.startswith("greedy_")]
    for fast in (False, True):
        mode = "fast" if fast else "eager"
        exact, worst = True, 0.0
        for name in greedy:
            t = tensors_of(name)
            tokens, logits = _greedy(model, cases[name], t, fast)
            exact &= bool(torch.equal(tokens, t["tokens"]))
            for k, step_logits in enumerate(logits):
                if f"step{k}_logits" in t:
                    worst = max(worst, (step_logits.float() - t[f"step{k}_logits"]).abs().max().item())
        rows.append(row("correctness", f"fp32 {mode}: greedy tokens = reference ({len(greedy)} cases)", exact,
                        "exact", exact))
        rows.append(row("correctness", f"fp32 {mode}: step logits vs reference, max abs", worst,
                        f"<= {LOGIT_TOLERANCE:g}", worst <= LOGIT_TOLERANCE))
    t = tensors_of("tf_groups")
    groups = cases["tf_groups"]["group_sizes"]
    full = model.teacher_forced(t["tokens"], t["labels"], t["orders"], groups).float()
    tf_error = (full - t["logits"]).abs().max().item()
    rows.append(row("correctness", "fp32 teacher-forced logits vs reference, max abs", tf_error,
                    f"<= {LOGIT_TOLERANCE:g}", tf_error <= LOGIT_TOLERANCE))
    low = copy.deepcopy(model).to(torch.bfloat16)
    half = low.teacher_forced(t["tokens"], t["labels"], t["orders"], groups).float()
    relative = ((half - full).norm() / full.norm()).item()
    rows.append(row("correctness", "bf16 teacher-forced logits vs fp32, relative L2", relative,
                    f"< {BF16_RELATIVE_BOUND:g}", 1e-4 < relative < BF16_RELATIVE_BOUND))
    same = total = 0
    for name in greedy:
        t = tensors_of(name)
        eager, _ = _greedy(low, cases[name], t, False)
        quick, _ = _greedy(low, cases[name], t, True)
        same, total = same + int((eager == quick).sum()), total + eager.numel()
    rows.append(row("correctness", "bf16 fast vs eager: greedy token agreement", same / total,
                    f">= {BF16_AGREEMENT_BOUND}", same / total >= BF16_AGREEMENT_BOUND))
    rows.append(_fallback_row(model, cases, tensors_of))
    return rows


def _fallback_row(model, cases, tensors_of) -> dict:
    """Make capture fail (for real on a CPU; by a failing torch.cuda.graph on CUDA): the fast path
    must give the eager tokens and say so once."""
    case, t = cases["greedy_cfg3_linear"], tensors_of("greedy_cfg3_linear")
    expected, _ = _greedy(model, case, t, False)
    rows_count = t["orders"].shape[0]
    decoder = static_decoder(model, rows_count, case["cfg"] != 1.0)
    decoder.use_graphs = True
    real_graph = torch.cuda.graph

    def failing_graph(*args, **kwargs):
        raise RuntimeError("capture made to fail by gpu_check")

    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    log.addHandler(handler)
    torch.cuda.graph = failing_graph
    try:
        tokens = generate(model, labels=t.get("labels"), batch=rows_count, orders=t["orders"],
                          group_sizes=case["group_sizes"], cfg=case["cfg"], top_k=1, seeds=0, fast=True)
    finally:
        torch.cuda.graph = real_graph
        log.removeHandler(handler)
        release_fast_state(model)
        fast_path._capture_failed.clear()
    said = sum("CUDA graph capture failed" in m for m in messages)
    ok = bool(torch.equal(tokens, expected)) and said == 1
    return row("correctness", "capture failure falls back: eager tokens, one log line", ok, "yes", ok)


def allocator_variant(quick: bool) -> list[dict]:
    """The correctness rows again in a child process under the cudaMallocAsync back-end."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "child.json"
        env = {**os.environ, "PYTORCH_CUDA_ALLOC_CONF": ALLOCATOR_VARIANT}
        command = [sys.executable, "-m", "benchmarks.gpu_check", "--correctness-only", "--json", str(out)]
        if quick:
            command.append("--quick")
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return [row("correctness", f"{ALLOCATOR_VARIANT}: child process", f"failed: {tail[0]}", "runs", False)]
        child = json.loads(out.read_text())
    return [{**r, "name": f"{ALLOCATOR_VARIANT} ({child['allocator']}): {r['name']}"} for r in child["rows"]]


# -- speed --------------------------------------------------------------------------------------
def _models(preset: str, resolution: int, device, dtype):
    if preset == "quick":
        config = LPDConfig(grid_size=resolution // TOKENIZER_STRIDE, **QUICK_CONFIG)
        vq_config = VQConfig(**QUICK_VQ)
    else:
        config = LPDConfig.preset(preset, grid_size=resolution // TOKENIZER_STRIDE)
        vq_config = VQConfig()
    torch.manual_seed(0)
    with torch.device(device):
        model = LPD(config).init_weights().eval().to(dtype)
        vq = VQModel(vq_config).eval().to(dtype)
    return model, vq


@torch.no_grad()
def speed(device: torch.device, dtype: torch.dtype, cases, repeats: int, bandwidth: float) -> list[dict]:
    rows, loaded = [], {}
    for preset, resolution, steps, batch, cfg in cases:
        if (preset, resolution) not in loaded:
            loaded.clear()  # one model on the device at a time
            loaded[preset, resolution] = _models(preset, resolution, device, dtype)
        model, vq = loaded[preset, resolution]
        config = model.config
        schedule = build_schedule(config.grid_size, steps=steps, order="locality", seed=0)
        labels = torch.arange(batch) % config.num_classes
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        floor = steps * weights / bandwidth
        name = f"{preset}-{resolution}/{steps} b{batch}"
        figures = dict(model=preset, resolution=resolution, steps=steps, batch=batch, cfg=cfg)

        def run(fast):
            return generate(model, schedule, labels, cfg=cfg, seeds=0, fast=fast)

        tokens = run(False)  # also the warm-up
        decode = timed(lambda: vq.decode_images(tokens), device, repeats)
        eager = timed(lambda: run(False), device, repeats)
        release_fast_state(model)
        before = None
        if device.type == "cuda":  # what the decoder takes: start from an allocator holding nothing spare
            gc.collect()
            torch.cuda.empty_cache()
            before = torch.cuda.memory_reserved(device)
        first = timed(lambda: run(True), device, 1)  # makes (captures) every step shape
        second = timed(lambda: run(True), device, 1)  # the decoder reused: a second run of the shape
        fast = timed(lambda: run(True), device, repeats)
        longest = max(plan_rows(schedule))
        estimate = decoder_memory_bytes(config, 2 * batch, dtype, longest)
        reserved = torch.cuda.memory_reserved(device) - before if before is not None else None
        release_fast_state(model)
        for mode, seconds in (("eager", eager), ("fast", fast)):
            rows.append(row("speed", f"{name} {mode}: ms/image", 1e3 * seconds / batch, **figures, mode=mode,
                            ms_per_image_vq=1e3 * (seconds + decode) / batch, images_per_s=batch / seconds,
                            images_per_s_vq=batch / (seconds + decode), floor_share=floor / seconds))
        rows.append(row("speed", f"{name} fast: capture (first call − steady), ms", 1e3 * (first - fast), **figures))
        captures = device.type == "cuda"  # elsewhere there is no capture to skip, and timings are noise
        rows.append(row("speed", f"{name} fast: second call with the decoder reused, ms", 1e3 * second,
                        f"~ {1e3 * fast:.1f} (no capture)", second < 1.5 * fast + 0.005 if captures else None,
                        **figures))
        rows.append(row("speed", f"{name} fast memory: estimate / reserved (MiB)",
                        f"{estimate / 2**20:.0f} / " + ("n/a" if reserved is None else f"{reserved / 2**20:.0f}"),
                        "estimate >= reserved", None if reserved is None else estimate >= reserved, **figures))
    return rows


def plan_rows(schedule) -> list[int]:
    """Input rows of each step of a plain (non-editing) schedule: the previous group + the queries."""
    sizes = list(schedule.group_sizes)
    return [previous + size for previous, size in zip([1, *sizes[:-1]], sizes)]


# -- reference ----------------------------------------------------------------------------------
def reference(folder: Path | None, ours: list[dict], device: torch.device) -> list[dict]:
    script = folder / "bench_reference.py" if folder is not None else None
    if script is None or not script.exists():
        return [row("reference", "reference implementation", "not found", f"copy ../shared/tools/gpu_compare to "
                    f"{REPO / '.gpu_compare'} or give --reference-dir", None)]
    fast = {(r["model"], r["resolution"], r["steps"], r["batch"]): r for r in ours
            if r.get("mode") == "fast"}
    rows = []
    for model, resolution, steps, batch, cfg in REFERENCE_CASES:
        command = [sys.executable, str(script), "--device", device.type, "--model", model, "--img-size",
                   str(resolution), "--steps", str(steps), "--bsz", str(batch), "--cfg", str(cfg),
                   "--reps", "10" if batch == 1 else "3", "--vq"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        name = f"{model}-{resolution}/{steps} b{batch}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            rows.append(row("reference", f"{name}: reference run", f"failed: {tail[0]}", "runs", False))
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        ref_ms = 1e3 * result["with_vq_median_s"] / batch
        rows.append(row("reference", f"{name}: reference ms/image with VQ", ref_ms, reference_result=result))
        mine = fast.get((model, resolution, steps, batch))
        if mine is not None:
            target = 8.0 if batch == 1 else 2.0
            ratio = ref_ms / mine["ms_per_image_vq"]
            rows.append(row("reference", f"{name}: reference / ours (fast, with VQ)", ratio, f">= {target:g}x",
                            ratio >= target))
    return rows


# -- table --------------------------------------------------------------------------------------
def _text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.2f}"
    return str(value)


def print_table(rows: list[dict], header: str) -> None:
    print(header)
    print("| section | check | value | bound / target | ok |")
    print("|---|---|---:|---|---|")
    for r in rows:
        ok = "" if r["ok"] is None else ("pass" if r["ok"] else "FAIL")
        print(f"| {r['section']} | {r['name']} | {_text(r['value'])} | {r['bound']} | {ok} |")
        if r.get("mode") is not None:
            print(f"|  |   with VQ decode: ms/image; images/s; share of weight-reading floor | "
                  f"{r['ms_per_image_vq']:.2f}; {r['images_per_s']:.1f}; {100 * r['floor_share']:.0f}% | | |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CPU, small shapes: the same code in a minute or two")
    parser.add_argument("--json", type=Path, help="write the rows here (default: gpu_check.json, quick: none)")
    parser.add_argument("--reference-dir", type=Path, default=REPO / ".gpu_compare",
                        help="folder with bench_reference.py (default: .gpu_compare in the checkout)")
    parser.add_argument("--device", help="default: cuda if available, else cpu (--quick: cpu)")
    parser.add_argument("--correctness-only", action="store_true", help=argparse.SUPPRESS)  # the allocator child
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cpu" if args.quick or not torch.cuda.is_available() else "cuda"))
    allocator = torch.cuda.get_allocator_backend() if device.type == "cuda" else "cpu"
    started = time.perf_counter()
    rows = correctness(device, args.quick)
    if not args.correctness_only:
        rows += allocator_variant(args.quick)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        bandwidth = memory_bandwidth(device, 2048 if device.type == "cuda" else 256)
        rows += speed(device, dtype, QUICK_CASES if args.quick else SPEED_CASES, 2 if args.quick else 5, bandwidth)
        rows += reference(None if args.quick else args.reference_dir, [r for r in rows if r["section"] == "speed"],
                          device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    meta = dict(device=name, torch=torch.__version__, allocator=allocator, quick=args.quick,
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                seconds=time.perf_counter() - started)
    if not args.correctness_only:
        print_table(rows, f"gpu_check on {name}, torch {meta['torch']}, allocator {allocator}, {meta['date']}, "
                          f"{meta['seconds']:.0f} s")
    out = args.json if args.json is not None else (None if args.quick else Path("gpu_check.json"))
    if out is not None:
        out.write_text(json.dumps(dict(meta, rows=rows), indent=2, default=str))
    failed = [r for r in rows if r["ok"] is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
