import json
import subprocess
import sys

from hierhead.cli import main
from hierhead.design import PRESETS


def test_designs_lists_presets(capsys):
    assert main(["designs"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(PRESETS)


def test_designs_prints_matrix_and_json(capsys):
    assert main(["designs", "9An{9,3,1}As"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split() == ["R1"] + ["1"] * 9
    assert main(["designs", "9An{9,3}S", "--order", "paper", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"name", "num_sizes", "num_ratios", "anchors", "matrix"}
    assert data["anchors"][:3] == [[0, 0], [0, 1], [0, 2]]
    assert data["matrix"][0] == [1, 0, 0, 1, 0, 0, 1, 0, 0]


def test_malformed_name_is_one_line_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "hierhead", "designs", "9An{9,2}As"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "expected '9An{9,3}As'" in proc.stderr


def test_designs_and_help_answer_without_importing_torch():
    """torch + torchvision take about 6 s to import: the parser and `hierhead designs` do without them."""
    script = ("import sys, contextlib, io\n"
              "from hierhead.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n"
              "    assert main(['designs', '9An{9,3}As']) == 0 and main(['designs', '--json']) == 0\n"
              "    try:\n"
              "        main(['train', '--help'])\n"
              "    except SystemExit:\n"
              "        pass\n"
              "print(sorted(m for m in ('torch', 'torchvision', 'lightning') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "[]\n", proc.stdout + proc.stderr
