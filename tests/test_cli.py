import json
import subprocess
import sys

import pytest

from growsearch.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "growsearch.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_pretrain_then_grow_json(tmp_path, mlp_base):
    proc = run_cli("grow", mlp_base, "--width", 2, "--depth", 1, "--out", tmp_path / "g", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["params_before"] == 40 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    assert report["params_after"] > report["params_before"]
    assert report["max_abs_output_diff"] <= 1e-5
    assert (tmp_path / "g" / "model.safetensors").exists()


def test_grow_with_plan_file(tmp_path, mlp_base, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text("widths: [48, 40]\ninsert_at: [2]\n")
    assert main(["grow", str(mlp_base), "--plan", str(plan), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["spec"]["hidden"] == [48, 40, 40]


@pytest.mark.parametrize("args, message", [
    (["grow", "{base}", "--width", "0.5"], "plan.width: got 0.5"),
    (["grow", "{tmp}/missing", "--width", "2"], "does not exist"),
    (["grow", "{base}", "--plan", "{tmp}/bad.yaml"], "is not valid YAML at line"),
    (["grow", "{base}", "--plan", "{tmp}/unknown.yaml"], "plan.heads: unknown key"),
    (["pretrain", "--family", "gpt", "--dataset", "digits", "--out", "{tmp}/x"], "gpt needs a text dataset"),
    (["pretrain", "--family", "mlp", "--dataset", "nope", "--out", "{tmp}/x"], "dataset: got 'nope'"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, mlp_base, capsys, args, message):
    (tmp_path / "bad.yaml").write_text("width: [1\n")
    (tmp_path / "unknown.yaml").write_text("heads: 3\n")
    argv = [a.format(base=mlp_base, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_unknown_family_is_argparse_exit_2(tmp_path):
    proc = run_cli("pretrain", "--family", "rnn", "--out", tmp_path)
    assert proc.returncode == 2 and "invalid choice: 'rnn'" in proc.stderr


def test_help_reads_like_documentation():
    proc = run_cli("grow", "--help")
    assert proc.returncode == 0 and "function-preserving" in proc.stdout and "--width" in proc.stdout
