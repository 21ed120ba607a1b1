"""Offline RL data sets: transitions (s, a, r, s', terminal, timeout) as float32 tensors.

Three formats are read: rtb-lab's compact npz (the shipped Pendulum sets, and what
`datagen` writes), D4RL's HDF5 files and local Minari data sets (HDF5 storage). Nothing
here downloads: the loaders read files you already have. An episode ends at a row whose
`terminals` (the task ended) or `timeouts` (the time limit cut it) flag is set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rtb_lab.checkpoint import CheckpointError, sha256_of, shipped_asset
from rtb_lab.domains.control.envs import INSTALL_HINT, SPECS, EnvSpec, get_spec

QUALITIES = ("random", "medium", "medium-replay", "expert")
REQUIRED = ("observations", "actions", "rewards", "terminals", "timeouts")
MINARI_REQUIRED = ("observations", "actions", "rewards", "terminations", "truncations")
NPZ_FORMAT = "rtb-lab offline v1"


@dataclass(frozen=True)
class TransitionBatch:
    """A batch of B transitions (`OfflineDataset.sample`).

    Attributes:
        observations: [B, S]. actions: [B, A]. rewards: [B]. next_observations: [B, S].
        terminals: [B] bool (no bootstrapping past these). indices: [B] long, the rows.
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    next_observations: Tensor
    terminals: Tensor
    indices: Tensor


@dataclass
class OfflineDataset:
    """N transitions of one environment, validated on construction.

    Numpy arrays are accepted and stored as torch tensors (float32; flags bool).

    Attributes:
        observations: [N, S] float32, the state s of each transition.
        actions: [N, A] float32, within [-spec.action_bound, spec.action_bound] when a
            spec is given.
        rewards: [N] float32.
        next_observations: [N, S] float32, s'.
        terminals: [N] bool, the task ended at s' (its value is 0).
        timeouts: [N] bool, the time limit cut the episode at s' (s' still has a value).
        spec: the environment, when known: dimensions and action bound are checked
            against it, and scores normalised with it.
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    next_observations: Tensor
    terminals: Tensor
    timeouts: Tensor
    spec: EnvSpec | None = None

    def __post_init__(self) -> None:
        for name in ("observations", "actions", "rewards", "next_observations"):
            setattr(self, name, _float_tensor(name, getattr(self, name)))
        for name in ("terminals", "timeouts"):
            setattr(self, name, _flag_tensor(name, getattr(self, name)))
        _check_shapes(self)
        for name in ("observations", "actions", "rewards", "next_observations"):
            bad = ~torch.isfinite(getattr(self, name))
            if bad.any():
                row = int(bad.nonzero()[0, 0])
                raise ValueError(f"{name} has {int(bad.sum())} non-finite values "
                                 f"(NaN or inf; the first in row {row})")
        if self.spec is not None:
            _check_against_spec(self, self.spec)

    def __len__(self) -> int:
        return self.observations.shape[0]

    @property
    def states(self) -> Tensor:
        """The states s [N, S] that condition the behaviour prior mu(a | s)."""
        return self.observations

    @property
    def normalised_actions(self) -> Tensor:
        """Actions [N, A] divided by the env's bound, in [-1, 1] (what the networks see)."""
        if self.spec is None:
            raise ValueError("normalising actions needs the data set's EnvSpec (spec=None)")
        return self.actions / self.spec.action_bound

    def episode_ends(self) -> Tensor:
        """Rows [E] (long) that end a stretch of one episode: every terminal or timeout,
        and the last row (which ends an incomplete episode when it has neither flag)."""
        return _episode_ends(self.terminals, self.timeouts)

    def episode_returns(self) -> Tensor:
        """Undiscounted returns [E] (float64) of the complete episodes, i.e. those that end
        in a terminal or a timeout; a trailing incomplete episode is left out."""
        ends = self.episode_ends()
        totals = torch.cumsum(self.rewards.double(), 0)[ends]
        returns = torch.diff(totals, prepend=totals.new_zeros(1))
        complete = (self.terminals | self.timeouts)[ends]
        return returns[complete]

    def normalised_score(self) -> float:
        """The mean complete-episode return, D4RL-normalised with the spec (0 random,
        100 expert). ValueError without a spec or a complete episode."""
        if self.spec is None:
            raise ValueError("normalising a score needs the data set's EnvSpec (spec=None)")
        returns = self.episode_returns()
        if len(returns) == 0:
            raise ValueError("the data set has no complete episode to score")
        return float(self.spec.normalised_score(returns.mean().item()))

    def batch(self, indices: Tensor) -> TransitionBatch:
        """The transitions at `indices` [B] (long)."""
        return TransitionBatch(self.observations[indices], self.actions[indices],
                               self.rewards[indices], self.next_observations[indices],
                               self.terminals[indices], indices)

    def sample(self, n: int, generator: torch.Generator | None = None) -> TransitionBatch:
        """`n` transitions drawn uniformly with replacement."""
        indices = torch.randint(len(self), (n,), generator=generator,
                                device=self.observations.device)
        return self.batch(indices)

    def to(self, device: torch.device | str) -> OfflineDataset:
        """A copy on `device`."""
        tensors = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                   if f.name != "spec"}
        return OfflineDataset(**tensors, spec=self.spec)

    def save_npz(self, path: str | Path) -> Path:
        """Write the compressed npz that `load_npz` reads back exactly.

        next_observations is not stored where it equals the next row's observation
        (inside an episode); only each episode's final next observation is. When some
        row breaks that rule the full array is stored instead, so the round trip stays
        exact either way.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name).cpu().numpy() for name in REQUIRED}
        ends = self.episode_ends()
        rebuilt = _next_observations(self.observations, ends,
                                     self.next_observations[ends])
        if _bitwise_equal(rebuilt, self.next_observations):
            arrays["final_next_observations"] = self.next_observations[ends].cpu().numpy()
        else:
            arrays["next_observations"] = self.next_observations.cpu().numpy()
        arrays["format"] = np.array(NPZ_FORMAT)
        arrays["env"] = np.array(self.spec.key if self.spec is not None else "")
        with open(path, "wb") as handle:  # a file handle keeps numpy from adding ".npz"
            np.savez_compressed(handle, **arrays)
        return path


def load_npz(path: str | Path) -> OfflineDataset:
    """A data set written by `OfflineDataset.save_npz` (its spec when its environment is
    registered in `envs.SPECS`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an rtb-lab offline npz, or a required array is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no offline data set at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable npz file: {error}") from error
    if (found := str(arrays.get("format", NPZ_FORMAT))) != NPZ_FORMAT:
        raise ValueError(f"{path} is in format {found!r}; this rtb-lab reads {NPZ_FORMAT!r}")
    _require(arrays, REQUIRED, str(path))
    if "next_observations" not in arrays and "final_next_observations" not in arrays:
        raise ValueError(f"{path} has neither next_observations nor final_next_observations; "
                         "it was not written by OfflineDataset.save_npz")
    next_observations = arrays.get("next_observations")
    if next_observations is None:
        observations = _float_tensor("observations", arrays["observations"])
        ends = _episode_ends(_flag_tensor("terminals", arrays["terminals"]),
                             _flag_tensor("timeouts", arrays["timeouts"]))
        final = _float_tensor("final_next_observations", arrays["final_next_observations"])
        if final.shape != (len(ends), *observations.shape[1:]):
            raise ValueError(f"{path}: final_next_observations has shape {tuple(final.shape)}; "
                             f"expected one row per episode end, {len(ends)} rows")
        next_observations = _next_observations(observations, ends, final)
    return OfflineDataset(arrays["observations"], arrays["actions"], arrays["rewards"],
                          next_observations, arrays["terminals"], arrays["timeouts"],
                          spec=SPECS.get(str(arrays.get("env", ""))))


def load_d4rl_hdf5(path: str | Path, spec: EnvSpec | str | None = None) -> OfflineDataset:
    """A D4RL HDF5 file (datasets observations, actions, rewards, terminals, timeouts and,
    optionally, next_observations).

    Without next_observations, s' is the next row's observation, as in D4RL's
    `qlearning_dataset`, and rows whose s' is unknown (a timeout that is not also a
    terminal, and the last row) are dropped; the row before a dropped timeout then ends
    its episode as a timeout.

    Raises:
        FileNotFoundError: no such file. ImportError: h5py is missing.
        ValueError: not an HDF5 file, a required dataset missing, or invalid values.
    """
    h5py = _import_h5py()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no D4RL HDF5 file at {path}")
    names = REQUIRED + ("next_observations",)
    with _open_hdf5(h5py, path) as handle:
        arrays = {name: np.asarray(handle[name]) for name in names if name in handle}
    _require(arrays, REQUIRED, str(path))
    for name in ("rewards", "terminals", "timeouts"):
        arrays[name] = arrays[name].reshape(len(arrays[name]), -1).squeeze(1)
    terminals, timeouts = arrays["terminals"].astype(bool), arrays["timeouts"].astype(bool)
    if "next_observations" not in arrays:
        observations = arrays["observations"]
        arrays["next_observations"] = np.concatenate([observations[1:], observations[-1:]])
        known = ~(timeouts & ~terminals)
        known[-1] = False
        before_dropped = np.flatnonzero(~known[1:] & timeouts[1:])  # rows before a dropped timeout
        timeouts = timeouts.copy()
        timeouts[before_dropped] |= ~terminals[before_dropped]
        arrays = {name: value[known] for name, value in arrays.items()}
        terminals, timeouts = terminals[known], timeouts[known]
    return OfflineDataset(arrays["observations"], arrays["actions"], arrays["rewards"],
                          arrays["next_observations"], terminals, timeouts,
                          spec=_as_spec(spec))


def load_minari(path: str | Path, spec: EnvSpec | str | None = None) -> OfflineDataset:
    """A local Minari data set stored as HDF5 (Minari 0.5: ``<dataset>/data/main_data.hdf5``
    with one group ``episode_<i>`` per episode: observations [T + 1, S], actions [T, A],
    rewards, terminations and truncations [T]). `path` is the data set folder, its
    ``data`` folder or the HDF5 file. An episode whose last step has neither flag (the
    collector stopped it) is marked as a timeout there, so episodes stay apart.

    Raises:
        FileNotFoundError: no such data set. ImportError: h5py is missing.
        ValueError: another storage format, a missing key, dict observations, bad values.
    """
    h5py = _import_h5py()
    file = _minari_file(Path(path))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in REQUIRED + ("next_observations",)}
    with _open_hdf5(h5py, file) as handle:
        episodes = sorted((key for key in handle if key.startswith("episode_")),
                          key=lambda key: int(key.split("_", 1)[1]))
        if not episodes:
            raise ValueError(f"{file} has no episode_<i> groups; is it a Minari data set?")
        for key in episodes:
            group = handle[key]
            _require(group, MINARI_REQUIRED, f"{file} {key}")
            if not isinstance(group["observations"], h5py.Dataset):
                raise ValueError(f"{file} {key}: observations is a group (a dict observation "
                                 "space); only flat Box observations are supported")
            observations = np.asarray(group["observations"])
            steps = len(group["rewards"])
            if len(observations) != steps + 1:
                raise ValueError(f"{file} {key}: {len(observations)} observations for {steps} "
                                 "steps; Minari stores T + 1 (the final one included)")
            terminals = np.asarray(group["terminations"]).astype(bool)
            timeouts = np.asarray(group["truncations"]).astype(bool)
            timeouts[-1] |= not terminals[-1]
            for name, value in (("observations", observations[:-1]),
                                ("next_observations", observations[1:]),
                                ("actions", np.asarray(group["actions"])),
                                ("rewards", np.asarray(group["rewards"])),
                                ("terminals", terminals), ("timeouts", timeouts)):
                parts[name].append(value)
    arrays = {name: np.concatenate(values) for name, values in parts.items()}
    return OfflineDataset(arrays["observations"], arrays["actions"], arrays["rewards"],
                          arrays["next_observations"], arrays["terminals"],
                          arrays["timeouts"], spec=_as_spec(spec))


def asset_name(env_name: str, quality: str) -> str:
    """The shipped file of one data set, e.g. "control_pendulum_medium-replay.npz"."""
    return f"control_{env_name}_{quality}.npz"


def load_dataset(env_name: str, quality: str) -> OfflineDataset:
    """A shipped data set (sha256-checked), e.g. ``load_dataset("pendulum", "medium")``.

    Raises:
        KeyError: unknown environment or quality, or no shipped set for them.
        CheckpointError: the shipped file is missing or corrupt.
    """
    get_spec(env_name)
    if quality not in QUALITIES:
        raise KeyError(f"unknown data set quality {quality!r}; choose one of {list(QUALITIES)}")
    name = asset_name(env_name, quality)
    try:
        path, sha256 = shipped_asset(name)
    except CheckpointError as error:
        raise KeyError(f"rtb-lab ships no {quality} data set for {env_name!r} ({name}); make "
                       f"one with `rtb-lab make-data control --env {env_name} --out DIR` and "
                       "read it with load_npz") from error
    if not path.is_file():
        raise CheckpointError(f"the shipped data set {path} is missing; reinstall rtb-lab")
    if (found := sha256_of(path)) != sha256:
        raise CheckpointError(f"{path} is corrupt: sha256 {found[:12]}... does not match the "
                              f"recorded {sha256[:12]}...; reinstall rtb-lab")
    return load_npz(path)


def _float_tensor(name: str, value: Any) -> Tensor:
    if value is None:
        raise ValueError(f"{name} {'are' if name.endswith('s') else 'is'} required: an "
                         "offline data set needs (s, a, r, s') for every transition")
    if isinstance(value, Tensor):
        return value.detach().to(torch.float32)
    return torch.as_tensor(np.asarray(value, dtype=np.float32))


def _flag_tensor(name: str, value: Any) -> Tensor:
    if value is None:
        raise ValueError(f"{name} are required (bool [N])")
    flags = value.detach() if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    if flags.dtype != torch.bool:
        if not ((flags == 0) | (flags == 1)).all():
            raise ValueError(f"{name} must be bool or 0/1, got other values")
        flags = flags != 0
    return flags


def _check_shapes(dataset: OfflineDataset) -> None:
    expected = {"observations": 2, "actions": 2, "rewards": 1, "next_observations": 2,
                "terminals": 1, "timeouts": 1}
    for name, ndim in expected.items():
        shape = tuple(getattr(dataset, name).shape)
        if len(shape) != ndim:
            want = {1: "[N]", 2: "[N, S]" if "obs" in name else "[N, A]"}[ndim]
            raise ValueError(f"{name} must be {want}, got shape {shape}")
    n = len(dataset)
    if n == 0:
        raise ValueError("the data set is empty (0 transitions)")
    for name in expected:
        if (rows := getattr(dataset, name).shape[0]) != n:
            raise ValueError(f"{name} has {rows} rows but observations has {n}: every array "
                             "needs one row per transition")
    if dataset.next_observations.shape != dataset.observations.shape:
        raise ValueError(f"next_observations has shape {tuple(dataset.next_observations.shape)}"
                         f", observations {tuple(dataset.observations.shape)}; they must match")


def _check_against_spec(dataset: OfflineDataset, spec: EnvSpec) -> None:
    found = (dataset.observations.shape[1], dataset.actions.shape[1])
    if found != (spec.observation_dim, spec.action_dim):
        raise ValueError(f"{spec.key} has (observation, action) dims "
                         f"{(spec.observation_dim, spec.action_dim)}, the data set {found}")
    largest = dataset.actions.abs().max()
    if largest > spec.action_bound:
        row = int((dataset.actions.abs() > spec.action_bound).any(1).nonzero()[0, 0])
        raise ValueError(f"actions must lie in [-{spec.action_bound}, {spec.action_bound}] for "
                         f"{spec.key}; found |a| = {largest.item():.4g} (first in row {row})")


def _episode_ends(terminals: Tensor, timeouts: Tensor) -> Tensor:
    """Rows [E] that end an episode's stretch: each flag, and the last row."""
    ends = terminals | timeouts
    if len(ends):
        ends[-1] = True
    return ends.nonzero().squeeze(1)


def _next_observations(observations: Tensor, ends: Tensor, final: Tensor) -> Tensor:
    """s' [N, S]: the next row's s inside an episode, `final` [E, S] at the `ends` [E]."""
    rebuilt = torch.cat([observations[1:], observations[-1:]])
    rebuilt[ends] = final
    return rebuilt


def _bitwise_equal(a: Tensor, b: Tensor) -> bool:
    """Equal bit for bit (torch.equal would let -0.0 stand for 0.0, which is not exact)."""
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def _require(container: Any, keys: tuple[str, ...], source: str) -> None:
    missing = [key for key in keys if key not in container]
    if missing:
        why = " (rewards are required: offline RL learns Q from them)" if "rewards" in missing \
            else ""
        raise ValueError(f"{source} lacks the required keys {missing}{why}")


def _as_spec(spec: EnvSpec | str | None) -> EnvSpec | None:
    return get_spec(spec) if isinstance(spec, str) else spec


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as error:
        raise ImportError(f"reading HDF5 data sets needs h5py: {INSTALL_HINT}") from error
    return h5py


def _open_hdf5(h5py: Any, path: Path) -> Any:
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 file: {error}") from error


def _minari_file(path: Path) -> Path:
    """main_data.hdf5 of a Minari data set folder, its data folder, or the file itself."""
    if path.is_file():
        return path
    for folder in (path / "data", path):
        if (folder / "main_data.hdf5").is_file():
            return folder / "main_data.hdf5"
        metadata = folder / "metadata.json"
        if metadata.is_file():
            data_format = json.loads(metadata.read_text()).get("data_format")
            raise ValueError(f"{folder} stores a Minari data set as {data_format!r}; only the "
                             "hdf5 storage is supported (no main_data.hdf5 there)")
    raise FileNotFoundError(f"no Minari data set at {path} (expected "
                            f"{path / 'data' / 'main_data.hdf5'})")
