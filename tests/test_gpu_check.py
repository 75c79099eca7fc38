"""`benchmarks.gpu_check`: its stages run on the CPU with small shapes (`--quick`), so that the GPU
check cannot rot before a GPU runs it; every stage keeps what it measured on disk whatever the
stages after it do (a failure, the deadline, SIGTERM); `benchmarks/gpu_run.sh` runs the stages
in processes of their own into one report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import gpu_check

REPO = Path(__file__).resolve().parents[1]


def _recording(stages, out, seen):
    """The stages, each first reading the report as the stages before it left it on disk."""
    def wrap(name, stage):
        def wrapped(run, rows):
            seen[name] = json.loads(out.read_text()) if out.exists() else None
            return stage(run, rows)
        return wrapped
    return {name: wrap(name, stage) for name, stage in stages.items()}


def test_quick_check_passes_every_stage_and_writes_the_report_after_each(tmp_path, capsys, monkeypatch):
    out, seen = tmp_path / "check.json", {}
    monkeypatch.setattr(gpu_check, "STAGES", _recording(gpu_check.STAGES, out, seen))
    assert gpu_check.main(["--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["torch"] and report["python"]
    assert list(report["stages"]) == ["smoke", "correctness", "memory", "speed", "reference"]
    # before each stage the file held every stage before it, finished, and nothing else
    for index, name in enumerate(report["stages"]):
        before = seen[name]
        assert (before is None) == (index == 0)
        if before is not None:
            assert list(before["stages"]) == list(report["stages"])[:index]
            assert all(record["status"] == "passed" and record["rows"] for record in before["stages"].values())
    for name, record in report["stages"].items():
        assert record["status"] == "passed" and record["error"] is None and record["seconds"] > 0
        assert f"### {name}: passed" in printed
    names = [r["name"] for record in report["stages"].values() for r in record["rows"]]
    for expected in ("fp32 fast: greedy tokens = reference (captured, then again)",
                     "fp32 eager: greedy tokens = reference (2 cases)", "fp32 fast: step logits vs reference",
                     "bf16 fast vs eager: greedy token agreement", "capture failure falls back",
                     "backend:cudaMallocAsync (cpu): fp32 fast: greedy tokens = reference",
                     "quick-64/4 b4 fast: ms/image", "quick-64/4 b1: fast decoder estimate", "reference implementation"):
        assert any(expected in name for name in names), expected
    speeds = [r for r in report["stages"]["speed"]["rows"] if r.get("mode") == "fast"]
    assert len(speeds) == 2 and all(r["ms_per_image_vq"] > r["value"] > 0 for r in speeds)
    estimates = [r["estimate_bytes"] for r in report["stages"]["memory"]["rows"]]
    assert len(estimates) == 2 and 0 < estimates[0] < estimates[1]  # batch 1, batch 4
    assert gpu_check.main(["--report", str(out)]) == 0
    assert "### speed: passed" in capsys.readouterr().out


def test_a_failing_stage_keeps_the_others_figures(tmp_path, capsys, monkeypatch):
    """The speed stage breaks (its bandwidth probe raises): smoke's measured rows stay, the error's
    traceback is in the report, and the reference stage after it still runs."""
    out = tmp_path / "check.json"

    def broken(*args):
        raise RuntimeError("bandwidth probe made to fail")

    monkeypatch.setattr(gpu_check, "memory_bandwidth", broken)
    assert gpu_check.main(["--quick", "--stages", "smoke,speed,reference", "--json", str(out)]) == 1
    stages = json.loads(out.read_text())["stages"]
    assert [(name, record["status"]) for name, record in stages.items()] == [
        ("smoke", "passed"), ("speed", "error"), ("reference", "passed")]
    smoke = {r["name"]: r for r in stages["smoke"]["rows"]}
    assert smoke["fp32 fast: greedy tokens = reference (captured, then again)"]["ok"] is True
    assert smoke["fp32 fast: step logits vs reference, max abs"]["value"] < 1e-4
    error = stages["speed"]["error"]
    assert error.startswith("Traceback") and "RuntimeError: bandwidth probe made to fail" in error
    assert "in speed" in error and stages["speed"]["rows"] == []
    assert "### speed: error" in capsys.readouterr().out


def _fake_stages(monkeypatch, **behaviour):
    """Stages that each add one row, or do what `behaviour` says instead."""
    def stage(name):
        def run_it(run, rows):
            rows.append(gpu_check.row(name, f"{name} figure", 1.0))
            if name in behaviour:
                behaviour[name](run, rows)
        return run_it
    monkeypatch.setattr(gpu_check, "STAGES", {name: stage(name) for name in gpu_check.STAGES})


def test_stages_picks_some_in_the_documented_order(tmp_path, monkeypatch):
    _fake_stages(monkeypatch)
    out = tmp_path / "check.json"
    assert gpu_check.main(["--stages", "speed,smoke", "--json", str(out)]) == 0
    assert list(json.loads(out.read_text())["stages"]) == ["smoke", "speed"]
    with pytest.raises(SystemExit):
        gpu_check.main(["--stages", "smoke,warp", "--json", str(out)])


def test_the_deadline_stops_a_stage_between_cases_and_skips_the_rest(tmp_path, monkeypatch):
    def slow(run, rows):
        time.sleep(0.3)

    def next_case_does_not_fit(run, rows):
        run.check_time(60, "the next case")
        rows.append(gpu_check.row("memory", "never measured", 0.0))

    _fake_stages(monkeypatch, smoke=slow, memory=next_case_does_not_fit)
    out = tmp_path / "check.json"
    assert gpu_check.main(["--stages", "smoke,memory,speed", "--deadline", "30", "--json", str(out)]) == 1
    stages = json.loads(out.read_text())["stages"]
    assert stages["smoke"]["status"] == "passed"
    assert stages["memory"]["status"] == "stopped" and "the next case needs about 60 s" in stages["memory"]["error"]
    assert [r["name"] for r in stages["memory"]["rows"]] == ["memory figure"]  # what it had is kept
    assert stages["speed"]["status"] == "passed"  # its own check fits: it runs
    assert gpu_check.main(["--stages", "smoke,memory,speed", "--deadline", "1.2", "--json", str(out)]) == 1
    stages = json.loads(out.read_text())["stages"]
    assert [record["status"] for record in stages.values()] == ["passed", "skipped", "skipped"]
    assert stages["smoke"]["rows"] and stages["speed"]["rows"] == []


def test_sigterm_ends_the_run_with_what_it_measured(tmp_path, monkeypatch):
    def terminated(run, rows):
        os.kill(os.getpid(), signal.SIGTERM)  # as `timeout` does
        time.sleep(5)  # the handler ends the stage before this is over
        rows.append(gpu_check.row("speed", "never reached", 0.0))

    _fake_stages(monkeypatch, speed=terminated)
    out = tmp_path / "check.json"
    started = time.monotonic()
    assert gpu_check.main(["--json", str(out)]) == 124
    assert time.monotonic() - started < 4
    stages = json.loads(out.read_text())["stages"]
    assert list(stages) == ["smoke", "correctness", "memory", "speed"]  # the reference never started
    assert stages["speed"]["status"] == "stopped" and "SIGTERM" in stages["speed"]["error"]
    assert [r["name"] for r in stages["speed"]["rows"]] == ["speed figure"]
    assert signal.getsignal(signal.SIGTERM) is not gpu_check._stop_on_sigterm  # put back


def test_stages_of_one_run_fill_one_report_and_another_run_replaces_it(tmp_path, monkeypatch):
    _fake_stages(monkeypatch)
    out = tmp_path / "check.json"
    gpu_check.main(["--stages", "smoke", "--run", "a", "--json", str(out)])
    gpu_check.main(["--stages", "speed", "--run", "a", "--json", str(out)])
    assert list(json.loads(out.read_text())["stages"]) == ["smoke", "speed"]
    gpu_check.main(["--stages", "memory", "--run", "b", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["run"] == "b" and list(report["stages"]) == ["memory"]
    assert [p.name for p in tmp_path.iterdir()] == ["check.json"]  # no temporary left behind


def test_gpu_run_script_runs_stages_in_their_own_processes_into_one_report(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "GPU_CHECK_ARGS": "--quick",
           "GPU_RUN_STAGES": "smoke:300 reference:60", "GPU_RUN_SECONDS": "400"}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_run.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_check.md",
                                                     "machine.txt"]
    report = json.loads((out / "gpu_check.json").read_text())
    assert {name: record["status"] for name, record in report["stages"].items()} == {
        "smoke": "passed", "reference": "passed"}
    tables = (out / "gpu_check.md").read_text()
    assert "### smoke: passed" in tables and "### reference: passed" in tables and tables in done.stdout
    assert "gpu_run: smoke done (exit 0)" in (out / "gpu_check.log").read_text()
    assert "torch" in (out / "machine.txt").read_text()
