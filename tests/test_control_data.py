"""The control domain's data layer: the OfflineDataset checks, the npz / D4RL / Minari
formats, the shipped Pendulum sets and the data-generation pieces that need no SAC."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import torch

from rtb_lab.checkpoint import CheckpointError, assets_dir
from rtb_lab.domains.control import data
from rtb_lab.domains.control.data import (
    QUALITIES,
    OfflineDataset,
    load_d4rl_hdf5,
    load_dataset,
    load_minari,
    load_npz,
)
from rtb_lab.domains.control.envs import PENDULUM, get_spec

# Three stretches: rows 0-2 end in a terminal, rows 3-5 in a timeout, rows 6-7 are an
# episode the data set cut short (no flag).
REWARDS = np.array([1, 2, 3, 10, 20, 30, 100, 200], np.float32)
TERMINALS = np.array([0, 0, 1, 0, 0, 0, 0, 0], bool)
TIMEOUTS = np.array([0, 0, 0, 0, 0, 1, 0, 0], bool)
# Shipped Pendulum sets: transitions, as documented in rtb_lab/assets/manifest.json.
SHIPPED_SIZES = {"random": 40_000, "medium": 40_000, "medium-replay": 2_600, "expert": 40_000}


def tiny(**overrides) -> OfflineDataset:
    """8 Pendulum-sized transitions whose s' is the next row's s inside an episode."""
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(9, 3)).astype(np.float32)
    fields = {"observations": observations[:8], "actions": rng.uniform(-2, 2, (8, 1)),
              "rewards": REWARDS, "next_observations": observations[1:].copy(),
              "terminals": TERMINALS, "timeouts": TIMEOUTS, "spec": PENDULUM}
    fields["next_observations"][[2, 5]] = rng.normal(size=(2, 3))  # the reset breaks the chain
    return OfflineDataset(**(fields | overrides))


def test_episode_returns_hand_computed():
    dataset = tiny()
    assert dataset.episode_ends().tolist() == [2, 5, 7]
    assert dataset.episode_returns().tolist() == [6.0, 60.0]  # the cut episode is left out
    assert dataset.normalised_score() == pytest.approx(PENDULUM.normalised_score(33.0))


def test_tensors_and_sample():
    dataset = tiny()
    assert len(dataset) == 8 and dataset.states is dataset.observations
    assert dataset.observations.dtype == torch.float32 and dataset.terminals.dtype == torch.bool
    first = dataset.sample(5, torch.Generator().manual_seed(3))
    again = dataset.sample(5, torch.Generator().manual_seed(3))
    assert torch.equal(first.indices, again.indices)
    assert first.observations.shape == (5, 3) and first.actions.shape == (5, 1)
    assert torch.equal(first.next_observations, dataset.next_observations[first.indices])


def test_npz_round_trip_is_exact(tmp_path):
    dataset = tiny()
    path = dataset.save_npz(tmp_path / "set.npz")
    with np.load(path) as stored:
        assert "next_observations" not in stored.files  # the compact form
        assert stored["final_next_observations"].shape == (3, 3)
    loaded = load_npz(path)
    for name in data.REQUIRED + ("next_observations",):
        assert torch.equal(getattr(loaded, name), getattr(dataset, name)), name
    assert loaded.spec == PENDULUM


def test_npz_keeps_next_observations_that_break_the_chain(tmp_path):
    dataset = tiny()
    dataset.next_observations[1] += 1.0  # s' of row 1 is no longer row 2's s
    loaded = load_npz(dataset.save_npz(tmp_path / "set.npz"))
    assert torch.equal(loaded.next_observations, dataset.next_observations)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"rewards": None}, "rewards are required"),
    ({"actions": np.zeros(8)}, r"actions must be \[N, A\]"),
    ({"rewards": REWARDS[:7]}, "rewards has 7 rows but observations has 8"),
    ({"next_observations": np.zeros((8, 2))}, "next_observations has shape"),
    ({"rewards": np.where(np.arange(8) == 4, np.nan, REWARDS)}, "non-finite.*row 4"),
    ({"actions": np.full((8, 1), 2.5)}, r"actions must lie in \[-2.0, 2.0\].*2.5"),
    ({"observations": np.zeros((8, 4)), "next_observations": np.zeros((8, 4))},
     "pendulum has .* dims"),
    ({"terminals": np.full(8, 0.5)}, "terminals must be bool or 0/1"),
])
def test_invalid_data_is_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny(**overrides)


def test_npz_without_rewards_or_file(tmp_path):
    arrays = {name: getattr(tiny(), name).numpy() for name in ("observations", "actions",
                                                               "terminals", "timeouts")}
    np.savez(tmp_path / "no_rewards.npz", **arrays)
    with pytest.raises(ValueError, match=r"lacks the required keys \['rewards'\].*required"):
        load_npz(tmp_path / "no_rewards.npz")
    with pytest.raises(FileNotFoundError, match="no offline data set"):
        load_npz(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable npz"):
        load_npz(tmp_path / "junk.npz")


def write_d4rl(path, dataset: OfflineDataset, next_observations: bool = True, drop=()):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as handle:
        for name in data.REQUIRED + (("next_observations",) if next_observations else ()):
            if name not in drop:
                handle[name] = getattr(dataset, name).numpy()
        handle["infos/qpos"] = np.zeros((len(dataset), 2))  # D4RL's extras are ignored


def test_d4rl_loader_with_next_observations(tmp_path):
    dataset = tiny()
    write_d4rl(tmp_path / "d4rl.hdf5", dataset)
    loaded = load_d4rl_hdf5(tmp_path / "d4rl.hdf5", spec="pendulum")
    for name in data.REQUIRED + ("next_observations",):
        assert torch.equal(getattr(loaded, name), getattr(dataset, name)), name
    assert loaded.episode_returns().tolist() == [6.0, 60.0]


def test_d4rl_loader_derives_next_observations(tmp_path):
    dataset = tiny()
    write_d4rl(tmp_path / "d4rl.hdf5", dataset, next_observations=False)
    loaded = load_d4rl_hdf5(tmp_path / "d4rl.hdf5")
    # The timeout row 5 and the last row 7 have no known s' and are dropped; row 4 now
    # ends the second episode as a timeout. A terminal's s' is the next row (D4RL's way).
    kept = [0, 1, 2, 3, 4, 6]
    assert torch.equal(loaded.observations, dataset.observations[kept])
    assert torch.equal(loaded.next_observations, dataset.observations[[1, 2, 3, 4, 5, 7]])
    assert loaded.timeouts.tolist() == [False, False, False, False, True, False]
    assert loaded.terminals.tolist() == [False, False, True, False, False, False]
    assert loaded.episode_returns().tolist() == [6.0, 30.0]


def test_d4rl_loader_errors(tmp_path):
    write_d4rl(tmp_path / "d4rl.hdf5", tiny(), drop=("rewards", "timeouts"))
    with pytest.raises(ValueError, match=r"\['rewards', 'timeouts'\].*rewards are required"):
        load_d4rl_hdf5(tmp_path / "d4rl.hdf5")
    with pytest.raises(FileNotFoundError, match="no D4RL HDF5 file"):
        load_d4rl_hdf5(tmp_path / "absent.hdf5")
    (tmp_path / "junk.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        load_d4rl_hdf5(tmp_path / "junk.hdf5")


def write_minari(folder, episodes, drop=()):
    """A Minari 0.5 data set folder: data/metadata.json and data/main_data.hdf5."""
    h5py = pytest.importorskip("h5py")
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "metadata.json").write_text(json.dumps({"data_format": "hdf5"}))
    with h5py.File(folder / "data" / "main_data.hdf5", "w") as handle:
        for index, episode in enumerate(episodes):
            group = handle.create_group(f"episode_{index}")
            for key, value in episode.items():
                if key not in drop:
                    group[key] = value


def minari_episodes():
    """Three episodes: terminated after 3 steps, truncated after 2, stopped after 2."""
    rng = np.random.default_rng(1)
    episodes = []
    for steps, terminated, truncated in ((3, True, False), (2, False, True), (2, False, False)):
        flags = np.zeros(steps, bool)
        episodes.append({"observations": rng.normal(size=(steps + 1, 3)),
                         "actions": rng.uniform(-1, 1, (steps, 1)),
                         "rewards": np.arange(1.0, steps + 1),
                         "terminations": flags | (np.arange(steps) == steps - 1) & terminated,
                         "truncations": flags | (np.arange(steps) == steps - 1) & truncated})
    return episodes


def test_minari_loader(tmp_path):
    episodes = minari_episodes()
    write_minari(tmp_path / "pendulum-v0", episodes)
    loaded = load_minari(tmp_path / "pendulum-v0", spec=PENDULUM)
    assert len(loaded) == 7
    expected_obs = np.concatenate([e["observations"][:-1] for e in episodes])
    expected_next = np.concatenate([e["observations"][1:] for e in episodes])
    assert torch.equal(loaded.observations, torch.as_tensor(expected_obs, dtype=torch.float32))
    assert torch.equal(loaded.next_observations,
                       torch.as_tensor(expected_next, dtype=torch.float32))
    assert loaded.terminals.tolist() == [False, False, True, False, False, False, False]
    # the stopped episode is marked as a timeout so it stays apart
    assert loaded.timeouts.tolist() == [False, False, False, False, True, False, True]
    assert loaded.episode_returns().tolist() == [6.0, 3.0, 3.0]
    same = load_minari(tmp_path / "pendulum-v0" / "data" / "main_data.hdf5")
    assert torch.equal(same.actions, loaded.actions)


def test_minari_loader_errors(tmp_path):
    write_minari(tmp_path / "no-rewards", minari_episodes(), drop=("rewards",))
    with pytest.raises(ValueError, match=r"episode_0 lacks .*\['rewards'\].*required"):
        load_minari(tmp_path / "no-rewards")
    with pytest.raises(FileNotFoundError, match="no Minari data set"):
        load_minari(tmp_path / "absent")
    (tmp_path / "arrow" / "data").mkdir(parents=True)
    (tmp_path / "arrow" / "data" / "metadata.json").write_text('{"data_format": "arrow"}')
    with pytest.raises(ValueError, match="'arrow'; only the hdf5 storage"):
        load_minari(tmp_path / "arrow")


def test_unknown_names():
    with pytest.raises(KeyError, match="unknown control environment 'cartpole'.*pendulum"):
        get_spec("cartpole")
    with pytest.raises(KeyError, match="unknown data set quality 'best'.*medium-replay"):
        load_dataset("pendulum", "best")
    with pytest.raises(KeyError, match="ships no expert data set for 'halfcheetah'.*make-data"):
        load_dataset("halfcheetah", "expert")


@pytest.fixture(scope="module")
def shipped() -> dict[str, OfflineDataset]:
    return {quality: load_dataset("pendulum", quality) for quality in QUALITIES}


def test_shipped_pendulum_sets(shipped):
    manifest = json.loads((assets_dir() / "manifest.json").read_text())
    means = {}
    for quality, dataset in shipped.items():
        assert dataset.spec == PENDULUM
        size = SHIPPED_SIZES[quality]
        assert len(dataset) == size
        entry = manifest[data.asset_name("pendulum", quality)]
        assert f"{len(dataset):,} transitions" in entry["description"]
        means[quality] = dataset.episode_returns().mean().item()
        assert f"mean return {means[quality]:.1f}" in entry["description"]
    assert means["random"] < means["medium"] < means["expert"]
    assert means["medium-replay"] < means["medium"]  # it holds SAC's worse early policies
    assert shipped["expert"].normalised_score() > 90


def test_corrupt_shipped_file_is_refused(tmp_path, monkeypatch):
    path, sha256 = data.shipped_asset(data.asset_name("pendulum", "medium"))
    damaged = tmp_path / path.name
    shutil.copy(path, damaged)
    with open(damaged, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    monkeypatch.setattr(data, "shipped_asset", lambda name: (damaged, sha256))
    with pytest.raises(CheckpointError, match="is corrupt: sha256"):
        load_dataset("pendulum", "medium")


def test_make_env_and_collect():
    pytest.importorskip("gymnasium")
    from rtb_lab.domains.control import datagen
    from rtb_lab.domains.control.envs import make_env

    env = make_env("pendulum", seed=0)
    assert env.observation_space.shape == (3,) and env.spec.max_episode_steps == 200
    env.close()
    policy = datagen.uniform_policy(PENDULUM, seed=0)
    collected = datagen.collect("pendulum", policy, 450, seed=0, progress=False)
    assert collected.episode_ends().tolist() == [199, 399, 449]
    assert collected.timeouts.sum() == 2 and not collected.terminals.any()
    inside = torch.ones(450, dtype=torch.bool)
    inside[collected.episode_ends()] = False
    assert torch.equal(collected.next_observations[:-1][inside[:-1]],
                       collected.observations[1:][inside[:-1]])
    again = datagen.collect("pendulum", datagen.uniform_policy(PENDULUM, seed=0), 450, seed=0,
                            progress=False)
    assert torch.equal(again.observations, collected.observations)  # seeded


def test_choose_medium():
    from rtb_lab.domains.control.datagen import Snapshot, choose_medium

    def chosen(*returns: float) -> int:  # random -1200, expert -200
        snaps = [Snapshot(step, value, {}) for step, value in enumerate(returns)]
        return choose_medium(snaps, -1200.0, -200.0).step

    assert chosen(-1000.0, -700.0, -650.0, -200.0) == 1  # half way is nearer 5/12 than 0.2
    assert chosen(-1000.0, -200.0) == 0
    assert chosen(-800.0, -200.0, -780.0) == 0  # stopped early: not after passing medium
    assert chosen(-100.0, -750.0) == 0


def test_make_data_command_parses():
    from rtb_lab.domains.control.datagen import data_commands

    command = data_commands()["make-data"]
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--env", "halfcheetah", "--out", "x", "--sac-steps", "5"])
    assert (args.env, args.sac_steps, args.transitions, args.seed) == ("halfcheetah", 5, None, 0)
