"""Prove the GPU path in stages, each of which keeps what it measured.

    python -m benchmarks.gpu_check                                 # on a CUDA machine: every stage
    python -m benchmarks.gpu_check --stages smoke,correctness      # some of them
    python -m benchmarks.gpu_check --quick                         # the same code on the CPU, small shapes
    python -m benchmarks.gpu_check --report gpu_check.json         # the tables of a run, again
    bash benchmarks/gpu_run.sh                                     # the GPU machine's one command

The stages run in this order. Each prints its table when it ends and writes the JSON (atomically:
`--json`, default gpu_check.json); a stage that fails is recorded with its traceback, and the next
one still runs.

smoke: imports, one capture and replay, fixture parity in fp32 (the fixture model of
tests/fixtures/lpd_reference: the reference's greedy tokens exactly and its step logits within 1e-4,
eager and fast, and on CUDA every step shape captured as a graph). Seconds.

correctness: every fixture case eager and fast in fp32; teacher-forced logits; bf16 teacher-forced
logits against fp32; fast against eager greedy tokens in bf16; the capture-failure fallback (a
capture made to fail gives the eager tokens, one log line). All of it again in a child process
under the other CUDA allocator back-end (`PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync` or
`backend:native`: the back-end is fixed per process).

memory: the fast decoder's estimate (`lpd_core.fast.decoder_memory_bytes`, which knows the
allocator) against what the decoder really took: the device's free memory and the allocator's
reserved bytes before and after its first run, for LPD-L-256/20 at batch 1 and 64 and LPD-L-512/48
at batch 1, bf16; again in a child under the other allocator back-end.

speed (random weights of the published shapes, bf16 on CUDA, cfg 4.8 linear, locality order):
LPD-L/XL/XXL-256 in 20 steps at batch 1 and 64, LPD-L/XL-512 in 48 steps at batch 1, the cases
the reference is compared on first; eager and fast; ms per image without and with the VQ decode;
the first fast call after a release (capture included) and the second (the decoder reused, as a
second ComfyUI run of the same shape); the share of the weight-reading floor (steps × weight
bytes / copy bandwidth).

reference: the published implementation, timed by its own harness in a child process
(`bench_reference.py` of ../shared/tools/gpu_compare, copied into the checkout as `.gpu_compare/`,
which git ignores, or given with --reference-dir), on the same GPU in the same run, against this
run's fast times.

Time: `--deadline S` gives the process S seconds. A stage that would start later is recorded as
skipped; memory, speed and reference stop between cases when the next would not fit, keeping the
cases done. SIGTERM (a `timeout` around the command) stops the running stage the same way and
writes what it has. `--run ID` names the run: a JSON file of the same run keeps its other stages,
so stages run in separate processes (gpu_run.sh) fill one file; any other file is replaced.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lpd_core import LPD, LPDConfig, VQConfig, VQModel, build_schedule, generate, load_model
from lpd_core import fast as fast_path
from lpd_core.fast import allocator_backend, decoder_memory_bytes, release_fast_state, static_decoder, step_rows
from lpd_core.files import atomic_write
from lpd_core.hub import TOKENIZER_STRIDE

from .bench_generate import device_name, memory_bandwidth, timed

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "lpd_reference"
FIXTURE_HEADS = 4
LOGIT_TOLERANCE = 1e-4
BF16_RELATIVE_BOUND = 2e-2
BF16_AGREEMENT_BOUND = 0.9
MEMORY_TOLERANCE = 0.10  # the estimate within 10 % of what the decoder took
SMOKE_CASE = "greedy_cfg3_linear"
QUICK_GREEDY = ["greedy_cfg3_linear", "greedy_uncond"]
# (preset, resolution, steps, batch, cfg): the speed matrix, the reference's cases first, and
# the quick one for the CPU.
SPEED_CASES = [("lpd_l", 256, 20, 1, 4.8), ("lpd_l", 256, 20, 64, 4.8), ("lpd_xl", 256, 20, 1, 4.9),
               ("lpd_xl", 512, 48, 1, 6.0), ("lpd_xl", 256, 20, 64, 4.9), ("lpd_xxl", 256, 20, 1, 5.9),
               ("lpd_xxl", 256, 20, 64, 5.9), ("lpd_l", 512, 48, 1, 7.3)]
MEMORY_CASES = [("lpd_l", 256, 20, 1, 4.8), ("lpd_l", 256, 20, 64, 4.8), ("lpd_l", 512, 48, 1, 7.3)]
REFERENCE_CASES = SPEED_CASES[:4]
QUICK_CONFIG = dict(embed_dim=64, depth=2, num_heads=4, vocab_size=512, num_classes=10)
QUICK_CASES = [("quick", 64, 4, 1, 3.0), ("quick", 64, 4, 4, 3.0)]  # 4x4 tokens
QUICK_VQ = dict(codebook_size=512, ch=32, ch_mult=(1, 1, 1, 1, 1), z_channels=32, num_res_blocks=1)

log = logging.getLogger("lpd_core")


class Stopped(BaseException):
    """The run's time is up (the deadline, or SIGTERM): end the stage with what it has. A
    BaseException, so that no `except Exception` on the way (capture fallback) swallows it."""


def row(section: str, name: str, value, bound: str = "", ok: bool | None = None, **extra) -> dict:
    return dict(section=section, name=name, value=value, bound=bound, ok=ok, **extra)


@dataclass
class Run:
    """What every stage gets: the device, the mode, the clock, the other stages' rows."""
    device: torch.device
    quick: bool
    reference_dir: Path | None
    deadline: float | None  # time.monotonic() by which the process must be done
    in_child: bool  # an allocator child: runs no child of its own
    stages: dict = field(default_factory=dict)  # name → the stage's record, as in the JSON

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.device.type == "cuda" else torch.float32

    def seconds_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def check_time(self, needed: float, what: str) -> None:
        """Stop the stage if `what` (about `needed` seconds) would not end before the deadline."""
        if self.seconds_left() < needed:
            raise Stopped(f"deadline: {self.seconds_left():.0f} s left, {what} needs about {needed:.0f} s")

    def child_timeout(self) -> float:
        return max(1.0, min(600.0, self.seconds_left() - 5))

    def speed_rows(self) -> list[dict]:
        return list((self.stages.get("speed") or {}).get("rows", []))


# -- the fixture model --------------------------------------------------------------------------
def _fixture_cases(device):
    from safetensors.torch import load_file
    cases = json.loads((FIXTURES / "cases.json").read_text())["cases"]
    tensors = {k: v.to(device) for k, v in load_file(str(FIXTURES / "cases.safetensors")).items()}
    by_name = {c["name"]: c for c in cases}

    def tensors_of(name):
        return {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(name + ".")}
    return by_name, tensors_of


def _fixture_model(device):
    return load_model(FIXTURES / "lpd.pth", device=device, num_heads=FIXTURE_HEADS)


def _greedy(model, case, t, fast, keep=False):
    logits = []
    tokens = generate(model, labels=t.get("labels"), batch=t["orders"].shape[0], orders=t["orders"],
                      group_sizes=case["group_sizes"], cfg=case["cfg"], cfg_schedule=case.get("cfg_schedule", "linear"),
                      top_k=1, seeds=0, callback=lambda s: logits.append(s.logits), fast=fast)
    if not keep:
        release_fast_state(model)
    return tokens, logits


def _parity(names, cases, tensors_of, model, fast) -> tuple[bool, float]:
    """Greedy tokens equal to the reference's in every case, and the worst step-logit error."""
    exact, worst = True, 0.0
    for name in names:
        t = tensors_of(name)
        tokens, logits = _greedy(model, cases[name], t, fast)
        exact &= bool(torch.equal(tokens, t["tokens"]))
        for k, step_logits in enumerate(logits):
            if f"step{k}_logits" in t:
                worst = max(worst, (step_logits.float() - t[f"step{k}_logits"]).abs().max().item())
    return exact, worst


def _parity_rows(section, names, cases, tensors_of, model, fast) -> list[dict]:
    mode = "fast" if fast else "eager"
    exact, worst = _parity(names, cases, tensors_of, model, fast)
    cases_said = f"{len(names)} case" + ("s" if len(names) > 1 else "")
    return [row(section, f"fp32 {mode}: greedy tokens = reference ({cases_said})", exact, "exact", exact),
            row(section, f"fp32 {mode}: step logits vs reference, max abs", worst, f"<= {LOGIT_TOLERANCE:g}",
                worst <= LOGIT_TOLERANCE)]


# -- smoke --------------------------------------------------------------------------------------
@torch.no_grad()
def smoke(run: Run, rows: list[dict]) -> None:
    """Imports, one capture and replay, fixture parity in fp32."""
    cuda = run.device.type == "cuda"
    rows.append(row("smoke", "import: torch, python, device, allocator",
                    f"torch {torch.__version__} (CUDA {torch.version.cuda}), python {platform.python_version()}, "
                    f"{device_name(run.device)}, {allocator_backend() if cuda else 'no CUDA allocator'}"))
    model = _fixture_model(run.device)
    cases, tensors_of = _fixture_cases(run.device)
    rows.extend(_parity_rows("smoke", [SMOKE_CASE], cases, tensors_of, model, False))
    case, t = cases[SMOKE_CASE], tensors_of(SMOKE_CASE)
    started = time.perf_counter()
    tokens, logits = _greedy(model, case, t, True, keep=True)  # captures every step shape, then replays
    seconds = time.perf_counter() - started
    decoder = static_decoder(model, t["orders"].shape[0], case["cfg"] != 1.0)
    graphs = sum(step.graph is not None for step in decoder.steps.values())
    release_fast_state(model)
    if cuda:
        rows.append(row("smoke", "fast: every step shape captured as a CUDA graph (shapes)", graphs,
                        f"{len(decoder.steps)}", graphs == len(decoder.steps) > 0))
    else:
        rows.append(row("smoke", "fast: step shapes made (no graphs on the CPU)", len(decoder.steps)))
    rows.append(row("smoke", "fast: first run (capture + replay), s", seconds))
    again, _ = _greedy(model, case, t, True)
    exact = bool(torch.equal(tokens, t["tokens"])) and bool(torch.equal(again, t["tokens"]))
    worst = max((step.float() - t[f"step{k}_logits"]).abs().max().item()
                for k, step in enumerate(logits) if f"step{k}_logits" in t)
    rows.append(row("smoke", "fp32 fast: greedy tokens = reference (captured, then again)", exact, "exact", exact))
    rows.append(row("smoke", "fp32 fast: step logits vs reference, max abs", worst, f"<= {LOGIT_TOLERANCE:g}",
                    worst <= LOGIT_TOLERANCE))


# -- correctness --------------------------------------------------------------------------------
@torch.no_grad()
def correctness(run: Run, rows: list[dict]) -> None:
    """The fixture checks of the module docstring (`quick`: two of the greedy cases, with and
    without guidance), then the same in a child under the other allocator back-end."""
    model = _fixture_model(run.device)
    cases, tensors_of = _fixture_cases(run.device)
    greedy = QUICK_GREEDY if run.quick else [name for name in cases if name.startswith("greedy_")]
    for fast in (False, True):
        rows.extend(_parity_rows("correctness", greedy, cases, tensors_of, model, fast))
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
    if not run.in_child:
        rows.extend(other_allocator(run, "correctness"))


def _fallback_row(model, cases, tensors_of) -> dict:
    """Make capture fail (for real on a CPU; by a failing torch.cuda.graph on CUDA): the fast path
    must give the eager tokens and say so once."""
    case, t = cases[SMOKE_CASE], tensors_of(SMOKE_CASE)
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


def other_allocator(run: Run, stage: str) -> list[dict]:
    """`stage`'s rows again from a child process under the allocator back-end this one does not use."""
    other = "native" if allocator_backend() == "cudaMallocAsync" else "cudaMallocAsync"
    setting = f"backend:{other}"
    name = f"{stage} under {setting}"
    run.check_time(30, name)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "child.json"
        env = {**os.environ, "PYTORCH_CUDA_ALLOC_CONF": setting, "PYTORCH_ALLOC_CONF": setting}  # old, new name
        command = [sys.executable, "-m", "benchmarks.gpu_check", "--stages", stage, "--in-child", "--json", str(out),
                   "--deadline", f"{run.child_timeout() - 5:.0f}", "--device", str(run.device)]
        if run.quick:
            command.append("--quick")
        try:
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=run.child_timeout())
        except subprocess.TimeoutExpired:
            return [row(stage, f"{name}: child process", "timed out", "runs", False)]
        if not out.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return [row(stage, f"{name}: child process", f"failed: {tail[0]}", "runs", False)]
        child = json.loads(out.read_text())
    record = child["stages"][stage]
    rows = [{**r, "name": f"{setting} ({child['allocator']}): {r['name']}"} for r in record["rows"]]
    if run.device.type == "cuda":
        rows.append(row(stage, f"{name}: the child's allocator", child["allocator"], other, child["allocator"] == other))
    if record["status"] not in ("passed", "failed"):
        error = (record.get("error") or "").strip().splitlines()[-1:] or [""]
        rows.append(row(stage, f"{name}: child stage {record['status']}", error[0], "runs", False))
    return rows


# -- models of the published shapes ------------------------------------------------------------
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


def _case_name(preset, resolution, steps, batch) -> str:
    return f"{preset}-{resolution}/{steps} b{batch}"


def _cases(run: Run, cases):
    """Each case with its model, loading one model at a time and checking the clock first."""
    loaded = {}
    for case in cases:
        preset, resolution, steps, batch, cfg = case
        # a case takes seconds on a GPU; without a deadline nothing is checked
        run.check_time(30 if run.device.type == "cuda" else 5, _case_name(preset, resolution, steps, batch))
        if (preset, resolution) not in loaded:
            loaded.clear()
            gc.collect()
            loaded[preset, resolution] = _models(preset, resolution, run.device, run.dtype)
        yield case, *loaded[preset, resolution]


# -- memory -------------------------------------------------------------------------------------
def _device_memory(device) -> tuple[int, int]:
    """(bytes in use on the device by anyone, bytes the allocator reserved), with nothing spare cached."""
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    return total - free, torch.cuda.memory_reserved(device)


@torch.no_grad()
def memory(run: Run, rows: list[dict]) -> None:
    """The fast decoder's estimate against what its first run took (see the module docstring)."""
    cuda = run.device.type == "cuda"
    allocator = allocator_backend() if cuda else "native"
    for (preset, resolution, steps, batch, cfg), model, _ in _cases(run, QUICK_CASES if run.quick else MEMORY_CASES):
        config = model.config
        schedule = build_schedule(config.grid_size, steps=steps, order="locality", seed=0)
        labels = torch.arange(batch) % config.num_classes
        name = _case_name(preset, resolution, steps, batch)
        estimate = decoder_memory_bytes(config, 2 * batch, run.dtype, step_rows(schedule.group_sizes),
                                        allocator=allocator)
        figures = dict(model=preset, resolution=resolution, steps=steps, batch=batch, allocator=allocator,
                       estimate_bytes=estimate)
        if not cuda:
            rows.append(row("memory", f"{name}: fast decoder estimate, MiB", estimate / 2**20, **figures))
            continue
        generate(model, schedule, labels, cfg=cfg, seeds=0)  # cuBLAS handles and workspaces exist before
        release_fast_state(model)
        used, reserved = _device_memory(run.device)
        generate(model, schedule, labels, cfg=cfg, seeds=0, fast=True)  # builds and captures the decoder
        used_after, reserved_after = _device_memory(run.device)
        release_fast_state(model)
        taken, held = used_after - used, reserved_after - reserved
        ratio = estimate / taken if taken > 0 else float("nan")
        rows.append(row("memory", f"{name}: estimate / taken on the device (MiB; allocator reserved {held / 2**20:.0f})",
                        f"{estimate / 2**20:.0f} / {taken / 2**20:.0f} = {ratio:.2f}",
                        f"within {MEMORY_TOLERANCE:.0%}", abs(ratio - 1) <= MEMORY_TOLERANCE,
                        **figures, taken_bytes=taken, reserved_bytes=held, ratio=ratio))
    if not run.in_child and cuda:
        rows.extend(other_allocator(run, "memory"))


# -- speed --------------------------------------------------------------------------------------
@torch.no_grad()
def speed(run: Run, rows: list[dict]) -> None:
    device, dtype = run.device, run.dtype
    repeats = 2 if run.quick else 5
    bandwidth = memory_bandwidth(device, 2048 if device.type == "cuda" else 256)
    for (preset, resolution, steps, batch, cfg), model, vq in _cases(run, QUICK_CASES if run.quick else SPEED_CASES):
        config = model.config
        schedule = build_schedule(config.grid_size, steps=steps, order="locality", seed=0)
        labels = torch.arange(batch) % config.num_classes
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        floor = steps * weights / bandwidth
        name = _case_name(preset, resolution, steps, batch)
        figures = dict(model=preset, resolution=resolution, steps=steps, batch=batch, cfg=cfg,
                       dtype=str(dtype).removeprefix("torch."))

        def run_loop(fast):
            return generate(model, schedule, labels, cfg=cfg, seeds=0, fast=fast)

        tokens = run_loop(False)  # also the warm-up
        decode = timed(lambda: vq.decode_images(tokens), device, repeats)
        eager = timed(lambda: run_loop(False), device, repeats)
        release_fast_state(model)
        first = timed(lambda: run_loop(True), device, 1)  # makes (captures) every step shape
        second = timed(lambda: run_loop(True), device, 1)  # the decoder reused: a second run of the shape
        fast = timed(lambda: run_loop(True), device, repeats)
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


# -- reference ----------------------------------------------------------------------------------
def reference(run: Run, rows: list[dict]) -> None:
    script = run.reference_dir / "bench_reference.py" if run.reference_dir is not None else None
    if script is None or not script.exists():
        where = "not run with --quick" if run.quick else "not found"
        rows.append(row("reference", "reference implementation", where, f"copy ../shared/tools/gpu_compare to "
                        f"{REPO / '.gpu_compare'} or give --reference-dir", None))
        return
    fast = {(r["model"], r["resolution"], r["steps"], r["batch"]): r for r in run.speed_rows()
            if r.get("mode") == "fast"}
    for model, resolution, steps, batch, cfg in REFERENCE_CASES:
        name = _case_name(model, resolution, steps, batch)
        run.check_time(30, f"the reference's {name}")
        command = [sys.executable, str(script), "--device", run.device.type, "--model", model, "--img-size",
                   str(resolution), "--steps", str(steps), "--bsz", str(batch), "--cfg", str(cfg),
                   "--reps", "10" if batch == 1 else "3", "--vq"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=run.child_timeout())
        except subprocess.TimeoutExpired:
            rows.append(row("reference", f"{name}: reference run", "timed out", "runs", False))
            continue
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


STAGES = {"smoke": smoke, "correctness": correctness, "memory": memory, "speed": speed, "reference": reference}


# -- the report ---------------------------------------------------------------------------------
def _text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.2f}"
    return str(value)


def stage_table(name: str, record: dict) -> str:
    """One stage's rows as a Markdown table, headed by its status."""
    lines = [f"### {name}: {record['status']} ({record['seconds']:.1f} s)", "",
             "| check | value | bound / target | ok |", "|---|---:|---|---|"]
    for r in record["rows"]:
        ok = "" if r["ok"] is None else ("pass" if r["ok"] else "FAIL")
        lines.append(f"| {r['name']} | {_text(r['value'])} | {r['bound']} | {ok} |")
        if r.get("mode") is not None:
            lines.append(f"|   with VQ decode: ms/image; images/s; share of weight-reading floor | "
                         f"{r['ms_per_image_vq']:.2f}; {r['images_per_s']:.1f}; {100 * r['floor_share']:.0f}% | | |")
    if record.get("error"):
        lines.append("")
        lines.append(f"{record['status']}: " + record["error"].strip().splitlines()[-1])
    return "\n".join(lines) + "\n"


def report_text(report: dict) -> str:
    head = (f"## gpu_check on {report['device']}, torch {report['torch']}, python {report['python']}, "
            f"allocator {report['allocator']}, {report['date']} (run {report['run']})\n")
    return "\n".join([head] + [stage_table(name, record) for name, record in report["stages"].items()])


def write_report(path: Path | None, report: dict) -> None:
    if path is not None:
        atomic_write(path, lambda temporary: temporary.write_text(json.dumps(report, indent=2, default=str)))


def _earlier(path: Path | None, run_id: str) -> dict:
    """The stages already in `path` from the same run (none from any other run)."""
    if path is None or not path.exists():
        return {}
    try:
        earlier = json.loads(path.read_text())
    except ValueError:
        return {}
    return earlier.get("stages", {}) if earlier.get("run") == run_id else {}


def _stop_on_sigterm(signum, frame):
    raise Stopped("SIGTERM: the run's time limit")


def run_stages(names: list[str], run: Run, report: dict, out: Path | None) -> bool:
    """Run the stages in order, each recorded and written as it ends. False once time is up."""
    for name in names:
        record = dict(status="skipped", seconds=0.0, rows=[], error=None)
        report["stages"][name] = run.stages[name] = record
        started = time.monotonic()
        try:
            run.check_time(1, f"stage {name}")
            STAGES[name](run, record["rows"])
            record["status"] = "failed" if any(r["ok"] is False for r in record["rows"]) else "passed"
        except Stopped as stop:
            record["status"] = "stopped" if record["rows"] or time.monotonic() - started > 1 else "skipped"
            record["error"] = str(stop)
        except Exception:
            record["status"], record["error"] = "error", traceback.format_exc()
        finally:
            record["seconds"] = time.monotonic() - started
            write_report(out, report)
            if not run.in_child:
                print(stage_table(name, record), flush=True)
        if record["status"] in ("stopped", "skipped") and "SIGTERM" in (record["error"] or ""):
            return False
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated, run in this order: {', '.join(STAGES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="CPU, small shapes: the same code in a minute or two")
    parser.add_argument("--json", type=Path, help="write the report here after every stage (default: "
                        "gpu_check.json; --quick: none)")
    parser.add_argument("--run", help="the run's name: a --json file of the same run keeps its other stages "
                        "(default: a new name)")
    parser.add_argument("--deadline", type=float, help="seconds this process may take; later stages and cases "
                        "are skipped, what finished is kept")
    parser.add_argument("--reference-dir", type=Path, default=REPO / ".gpu_compare",
                        help="folder with bench_reference.py (default: .gpu_compare in the checkout)")
    parser.add_argument("--device", help="default: cuda if available, else cpu (--quick: cpu)")
    parser.add_argument("--report", type=Path, help="print the tables of this JSON report and stop")
    parser.add_argument("--in-child", action="store_true", help=argparse.SUPPRESS)  # an allocator child
    args = parser.parse_args(argv)

    if args.report is not None:
        print(report_text(json.loads(args.report.read_text())))
        return 0
    names = [name.strip() for name in args.stages.split(",") if name.strip()]
    unknown = [name for name in names if name not in STAGES]
    if unknown or not names:
        parser.error(f"unknown stage(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(STAGES)}")
    names = [name for name in STAGES if name in names]  # always in the documented order
    device = torch.device(args.device or ("cpu" if args.quick or not torch.cuda.is_available() else "cuda"))
    deadline = None if args.deadline is None else time.monotonic() + args.deadline
    run = Run(device=device, quick=args.quick, reference_dir=None if args.quick else args.reference_dir,
              deadline=deadline, in_child=args.in_child)
    out = args.json if args.json is not None else (None if args.quick else Path("gpu_check.json"))
    run_id = args.run or f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    run.stages = _earlier(out, run_id)
    report = dict(run=run_id, device=device_name(device), torch=torch.__version__, cuda=torch.version.cuda,
                  python=platform.python_version(), allocator=allocator_backend() if device.type == "cuda" else "cpu",
                  quick=args.quick, date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  stages=dict(run.stages))
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        finished = run_stages(names, run, report, out)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not finished:
        return 124
    return 0 if all(report["stages"][name]["status"] == "passed" for name in names) else 1


if __name__ == "__main__":
    sys.exit(main())
