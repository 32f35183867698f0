"""README's bad-input table, row by row: the real CLI, exit status 2, one line, nothing lost.

Each case runs `policykd distill ... --out OUT --overwrite` where OUT already holds a
previous run's file: a refused run must leave it in place.
"""

import base64
import io
import json
import pickle
import zipfile

import pytest
import torch as th
from conftest import run_cli

ROWS = {
    "unknown env id": (
        ["--env", "CartPole-v9", "--teacher", "{zoo}/ppo/CartPole-v1_1"],
        "unknown env id 'CartPole-v9'",
    ),
    "space mismatch": (
        ["--env", "Acrobot-v1", "--teacher", "{zoo}/ppo/CartPole-v1_1"],
        "does not match Acrobot-v1's Box(6,)",
    ),
    "corrupt zip": (["--env", "CartPole-v1", "--teacher", "{corrupt}"], "not a zip file"),
    "non-SB3 zip": (["--env", "CartPole-v1", "--teacher", "{not_sb3}"], "not a Stable-Baselines3 model"),
    "zoo folder without zip": (["--env", "CartPole-v1", "--teacher", "{empty_zoo}"], "has no CartPole-v1.zip"),
    "missing path": (["--env", "CartPole-v1", "--teacher", "{tmp}/missing.zip"], "teacher not found"),
    "zero budget": (
        ["--env", "CartPole-v1", "--teacher", "{zoo}/ppo/CartPole-v1_1", "--steps", "0"],
        "--steps must be positive",
    ),
    "negative budget": (
        ["--env", "CartPole-v1", "--teacher", "{zoo}/ppo/CartPole-v1_1", "--steps", "-5"],
        "--steps must be positive",
    ),
    "unknown loss": (
        ["--env", "CartPole-v1", "--teacher", "{zoo}/ppo/CartPole-v1_1", "--loss", "l7"],
        "unknown loss 'l7'",
    ),
    "a GPU that is not there": (
        ["--env", "CartPole-v1", "--teacher", "{zoo}/ppo/CartPole-v1_1", "--device", "cuda:7"],
        "--device cuda:7: torch sees no such device here (devices seen: cpu",
    ),
    "unknown device": (
        ["--env", "CartPole-v1", "--teacher", "{zoo}/ppo/CartPole-v1_1", "--device", "tpu"],
        "--device must be cpu, cuda, cuda:N or auto",
    ),
    "crafted pickle in the zip": (["--env", "CartPole-v1", "--teacher", "{crafted}"], "cannot be loaded safely"),
    "NaN teacher": (["--env", "CartPole-v1", "--teacher", "{nan}"], "NaN or Inf"),
    "output path is a file": (
        ["--env", "CartPole-v1", "--teacher", "{zoo}/ppo/CartPole-v1_1", "--out", "{tmp}/file.txt"],
        "is not a folder",
    ),
    "unwritable output folder": (
        ["--env", "CartPole-v1", "--teacher", "{zoo}/ppo/CartPole-v1_1", "--out", "/proc/policykd-out"],
        "cannot",
    ),
    "offline hub": (
        ["--env", "CartPole-v1", "--teacher", "zoo:ppo/Nope-v0", "--zoo-folder", "{tmp}/zoo"],
        "cannot download zoo:ppo/Nope-v0",
    ),
}


class Marker:
    """Unpickling this creates a file: proof that a pickle ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _rewrite_zip(src, dst, data=None, policy=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            content = zin.read(item.filename)
            if item.filename == "data" and data is not None:
                content = json.dumps(data(json.loads(content))).encode()
            if item.filename == "policy.pth" and policy is not None:
                state = th.load(io.BytesIO(content), weights_only=True)
                buffer = io.BytesIO()
                th.save(policy(state), buffer)
                content = buffer.getvalue()
            zout.writestr(item, content)


@pytest.fixture
def inputs(zoo, tmp_path):
    source = zoo / "ppo/CartPole-v1_1/CartPole-v1.zip"
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"definitely not a zip")
    not_sb3 = tmp_path / "not_sb3.zip"
    with zipfile.ZipFile(not_sb3, "w") as z:
        z.writestr("readme.txt", "hello")
    empty_zoo = tmp_path / "ppo" / "CartPole-v1_1"
    (empty_zoo / "CartPole-v1").mkdir(parents=True)
    marker = tmp_path / "pwned"
    payload = base64.b64encode(pickle.dumps(Marker(str(marker)))).decode()

    def craft(data):
        data["policy_kwargs"] = {
            ":type:": "<class 'dict'>",
            ":serialized:": payload,
            "net_arch": {":type:": "x", ":serialized:": payload},
        }
        return data

    crafted = tmp_path / "crafted.zip"
    _rewrite_zip(source, crafted, data=craft)
    nan = tmp_path / "nan.zip"
    _rewrite_zip(
        source,
        nan,
        policy=lambda s: {k: v.fill_(float("nan")) if k.startswith("action_net") else v for k, v in s.items()},
    )
    (tmp_path / "file.txt").write_text("a file, not a folder")
    return {
        "zoo": zoo,
        "tmp": tmp_path,
        "corrupt": corrupt,
        "not_sb3": not_sb3,
        "empty_zoo": empty_zoo,
        "crafted": crafted,
        "nan": nan,
        "marker": marker,
    }


@pytest.mark.parametrize("row", sorted(ROWS))
def test_bad_input_row(inputs, row):
    args, message = ROWS[row]
    args = [a.format(**inputs) for a in args]
    out = inputs["tmp"] / "previous-run"
    out.mkdir()
    (out / "student.zip").write_text("the student of an earlier run")
    if "--out" not in args:
        args += ["--out", str(out)]
    result = run_cli("distill", *args, "--overwrite")
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (out / "student.zip").read_text() == "the student of an earlier run"
    assert not inputs["marker"].exists(), "a pickle from the teacher zip was executed"


def test_a_setting_is_named_as_the_caller_writes_it(tmp_path, capsys):
    """The same refusal: a library caller is told `overwrite=True`, the CLI user `--overwrite` (in one process)."""
    import policykd
    from policykd.cli.main import main
    from policykd.errors import PolicykdError

    out = tmp_path / "previous-run"
    out.mkdir()
    (out / "student.zip").write_text("the student of an earlier run")
    with pytest.raises(PolicykdError, match="already exists") as library:
        policykd.distill("CartPole-v1", out=str(out), steps=800, rounds=1, quiet=True)
    assert "overwrite=True" in str(library.value) and "--" not in str(library.value)
    assert (
        main(["distill", "--env", "CartPole-v1", "--out", str(out), "--steps", "800", "--rounds", "1", "--quiet"]) == 2
    )
    cli = capsys.readouterr().err.strip()
    assert cli.startswith("error: ") and "already exists" in cli and "--overwrite" in cli and "=True" not in cli
    assert len(cli.splitlines()) == 1
    with pytest.raises(PolicykdError, match="overwrite=True"):
        policykd.distill("CartPole-v1", out=str(out), steps=800, rounds=1, quiet=True)  # main() kept its spelling
    assert (out / "student.zip").read_text() == "the student of an earlier run"
