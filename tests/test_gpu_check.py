"""`python -m benchmarks.gpu_check --quick`: the GPU check's own code, run on the CPU with small
shapes, so that it cannot rot before a GPU runs it."""

import json

from benchmarks import gpu_check


def test_quick_check_passes_and_writes_its_table(tmp_path, capsys):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--quick", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["torch"]
    names = [r["name"] for r in result["rows"]]
    assert not [r for r in result["rows"] if r["ok"] is False]
    for expected in ("fp32 eager: greedy tokens = reference (2 cases)", "fp32 fast: step logits vs reference",
                     "bf16 fast vs eager: greedy token agreement", "capture failure falls back",
                     "backend:cudaMallocAsync (cpu): fp32 fast: greedy tokens = reference",
                     "quick-64/4 b4 fast: ms/image", "quick-64/4 b1 fast memory", "reference implementation"):
        assert any(expected in name for name in names), expected
        assert expected.split(":")[0] in table
    speeds = [r for r in result["rows"] if r["section"] == "speed" and r.get("mode") == "fast"]
    assert all(r["ms_per_image_vq"] > r["value"] > 0 for r in speeds)
