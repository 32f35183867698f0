"""Safe teacher loading: same policy as SB3's full load, and no pickle from the zip ever runs."""

import base64
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch as th

from policykd.errors import PolicykdError
from policykd.teachers import load_teacher

REPO = Path(__file__).resolve().parent.parent
PONG = REPO / "agents" / "pong-ppo-v5"
ZOO_FOLDERS = [
    "a2c/CartPole-v1_1",
    "dqn/Acrobot-v1_1",
    "dqn/CartPole-v1_1",
    "ppo/CartPole-v1_1",
    "ppo/HalfCheetah-v3_1",
    "ppo/Hopper-v3_1",
    "ppo/Pendulum-v1_1",  # gSDE
    "qrdqn/CartPole-v1_1",
    "sac/HalfCheetah-v3_1",
    "sac/Hopper-v3_1",
    "sac/Pendulum-v1_1",  # gSDE, and tensors.pth instead of pytorch_variables.pth
    "sac/Walker2d-v3_1",
]


def _observations(teacher, n_envs: int = 4, steps: int = 6) -> np.ndarray:
    """A batch of real observations: resets plus a few random steps."""
    venv = teacher.factory.make(n_envs, 0)
    try:
        batch = [venv.reset()]
        for _ in range(steps):
            actions = np.array([venv.action_space.sample() for _ in range(n_envs)])
            batch.append(venv.step(actions)[0])
    finally:
        venv.close()
    return np.concatenate(batch)


def _assert_same_labels(safe, trusted) -> None:
    assert type(safe.model.policy) is type(trusted.model.policy)
    obs = _observations(safe)
    (dist_a, value_a), (dist_b, value_b) = safe.label(obs), trusted.label(obs)
    assert (dist_a.kind, dist_a.squashed, dist_a.q_values) == (dist_b.kind, dist_b.squashed, dist_b.q_values)
    for name in ("logits", "mean", "log_std"):
        a, b = getattr(dist_a, name), getattr(dist_b, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert th.allclose(a, b), name
    assert (value_a is None) == (value_b is None)
    if value_a is not None:
        assert th.allclose(value_a, value_b)
    assert safe.acting_params == trusted.acting_params


def test_every_zoo_folder_is_covered(zoo):
    """The list of zoo agents below is every agent in the zoo folder, so none escapes the safe-load comparison."""
    assert sorted(str(p.relative_to(zoo)) for p in zoo.glob("*/*_1") if p.is_dir()) == ZOO_FOLDERS


@pytest.mark.parametrize("folder", ZOO_FOLDERS)
def test_safe_load_matches_sb3_load_on_every_zoo_agent(zoo, folder):
    """The safe loader labels exactly as SB3's full (pickle-running) load does, agent by agent."""
    _assert_same_labels(load_teacher(zoo / folder), load_teacher(zoo / folder, trust=True))


def test_safe_load_matches_sb3_load_on_pong_cnn():
    """The same for the shipped Pong CNN."""
    if not (PONG / "pong_ppo_v5.zip").is_file():
        pytest.skip("the shipped Pong agent is absent")
    safe = load_teacher(PONG)
    assert type(safe.model.policy).__name__ == "ActorCriticCnnPolicy"
    _assert_same_labels(safe, load_teacher(PONG, trust=True))


# --- crafted zips -----------------------------------------------------------------------


class _Payload:
    """Pickles to `open(marker, 'w')`: unpickling it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _rewrite(src: Path, dst: Path, data: dict | None = None, **members: bytes) -> Path:
    """A copy of an SB3 zip with its `data` JSON and/or other members replaced."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for name in old.namelist():
            if name == "data" and data is not None:
                new.writestr(name, json.dumps(data))
            else:
                new.writestr(name, members.get(name.replace(".", "_"), old.read(name)))
    return dst


def _cartpole(zoo: Path) -> tuple[Path, dict]:
    src = zoo / "ppo" / "CartPole-v1_1" / "CartPole-v1.zip"
    with zipfile.ZipFile(src) as archive:
        return src, json.loads(archive.read("data"))


def test_crafted_pickles_in_the_json_never_run(zoo, tmp_path):
    """A zip whose every pickled field is a payload: refused in one line, and the payload never ran."""
    src, data = _cartpole(zoo)
    marker = tmp_path / "pwned"
    blob = base64.b64encode(pickle.dumps(_Payload(marker))).decode()
    for value in data.values():  # every pickled field: spaces, policy class, schedules, ...
        if isinstance(value, dict) and ":serialized:" in value:
            value[":serialized:"] = blob
    data["policy_kwargs"] = {":type:": "<class 'dict'>", ":serialized:": blob}
    data["observation_space"][":serialized:"] = blob
    crafted = _rewrite(src, tmp_path / "crafted.zip", data)

    safe = load_teacher(crafted, env_id="CartPole-v1")
    assert not marker.exists()
    _assert_same_labels(safe, load_teacher(src, env_id="CartPole-v1", trust=True))

    try:  # the payload is real: SB3's full load runs it
        load_teacher(crafted, env_id="CartPole-v1", trust=True)
    except Exception:
        pass
    assert marker.exists()


def test_crafted_pickle_in_policy_pth_never_runs(zoo, tmp_path):
    """A payload in policy.pth is never unpickled: refused in one line."""
    src, _ = _cartpole(zoo)
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    th.save({"mlp_extractor.policy_net.0.weight": _Payload(marker)}, buffer)
    crafted = _rewrite(src, tmp_path / "crafted.zip", policy_pth=buffer.getvalue())
    with pytest.raises(PolicykdError, match="policy.pth cannot be read as plain weights") as err:
        load_teacher(crafted, env_id="CartPole-v1")
    assert "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "key, value",
    [
        ("activation_fn", "<class 'os.system'>"),
        ("features_extractor_class", "<class 'evil.Extractor'>"),
        ("net_arch", {":type:": "<class 'evil.Arch'>", ":serialized:": "gASVAA=="}),
    ],
)
def test_classes_off_the_allow_list_are_refused_with_one_line(zoo, tmp_path, key, value):
    """A class off the allow-list anywhere in the zip's data is refused in one line that names the way out."""
    src, data = _cartpole(zoo)
    data["policy_kwargs"] = {":type:": "<class 'dict'>", ":serialized:": "gASVAA==", key: value}
    crafted = _rewrite(src, tmp_path / "crafted.zip", data)
    with pytest.raises(PolicykdError, match=r"cannot be loaded safely.*trust_teacher=True") as err:  # library spelling
        load_teacher(crafted, env_id="CartPole-v1")
    assert "\n" not in str(err.value)


def test_foreign_policy_module_and_mismatched_weights_are_refused(zoo, tmp_path):
    """A policy class outside SB3 and weights that do not fit the declared net are each refused in one line."""
    src, data = _cartpole(zoo)
    foreign = json.loads(json.dumps(data))
    foreign["policy_class"]["__module__"] = "evil.policies"
    with pytest.raises(PolicykdError, match="'evil.policies', not SB3"):
        load_teacher(_rewrite(src, tmp_path / "foreign.zip", foreign), env_id="CartPole-v1")
    data["policy_kwargs"] = {"net_arch": [8]}
    with pytest.raises(PolicykdError, match=r"mismatched.zip: its weights do not fit") as err:
        load_teacher(_rewrite(src, tmp_path / "mismatched.zip", data), env_id="CartPole-v1")
    assert "\n" not in str(err.value)
