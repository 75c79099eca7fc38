"""README's set-up is what CI runs: `.ci/run` runs README's commands word for word, in README's order."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CI_BLOCK = "# ---- README, \"Set up\", word for word"


def _command(line: str) -> str:
    return line.split("  #")[0].strip()  # README aligns a comment after some commands


def readme_set_up() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Set up\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [_command(line) for block in blocks for line in block.splitlines() if _command(line)]


def ci_commands() -> list[str]:
    script = (ROOT / ".ci" / "run").read_text()
    block = script.split(CI_BLOCK, 1)[1].split("\n", 1)[1].split("\n# ----", 1)[0]
    return [_command(line) for line in block.splitlines() if _command(line)]


def test_ci_runs_readme_set_up_word_for_word():
    readme = readme_set_up()
    # CI clones the commit under test itself, and has no GPU: README's CUDA line is the other choice
    cuda = [line for line in readme if line.startswith("pip install torch") and "--index-url" not in line]
    clone = [line for line in readme if line.startswith("git clone")]
    assert len(cuda) == 1 and len(clone) == 1
    assert ci_commands() == [line for line in readme if line not in cuda + clone]
    assert ci_commands()[-2:] == ["make demo", "make test"]
