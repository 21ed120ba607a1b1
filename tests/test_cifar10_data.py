"""CIFAR-10 real-data path: batch reading (restricted unpickling), the tarball cache, the
stand-in fallback, and the hub prior loader, all without a network."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from rtb_lab.config import CACHE_ENV
from rtb_lab.domains.cifar10 import data as cifar
from rtb_lab.domains.images.data import DatasetError

UNREACHABLE = "http://127.0.0.1:9/x.tar.gz"  # the discard port: refused at once


def _rows(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 32, 32, 3] -> the batch layout [N, 3072] (R, G, B planes)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def _batch(data: object, labels: object) -> dict:
    n = len(labels) if isinstance(labels, list) else 0
    return {b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def _write(path: Path, obj: object) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


def _python2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle writes the official files at protocol 2: str as
    (SHORT_)BINSTRING, the numpy.core spelling, and no _codecs.encode."""

    def string(value: bytes) -> bytes:
        if len(value) < 256:
            return b"U" + bytes([len(value)]) + value
        return b"T" + struct.pack("<I", len(value)) + value

    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
             + string(b"b") + b"\x87R(K\x01J" + struct.pack("<i", len(data))
             + b"M\x00\x0c\x86cnumpy\ndtype\n" + string(b"u1") + b"K\x00K\x01\x87R(K\x03"
             + string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
             + string(data.tobytes()) + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([y]) for y in labels) + b"e"
    return (b"\x80\x02}(" + string(b"batch_label") + string(b"testing batch 1 of 1")
            + string(b"data") + array + string(b"labels") + label_list + b"u.")


def test_read_batch_converts_channel_major_rows_to_hwc(tmp_path):
    data = np.zeros((2, 3072), np.uint8)
    data[0, 0] = 10                    # R of pixel (y=0, x=0)
    data[0, 1024 + 1] = 20             # G of (y=0, x=1)
    data[0, 2048 + 2 * 32 + 3] = 30    # B of (y=2, x=3)
    data[1, 31] = 40                   # R of (y=0, x=31)
    data[1, 1024 + 32] = 50            # G of (y=1, x=0)
    data[1, 3071] = 60                 # B of (y=31, x=31)
    images, labels = cifar.read_batch(_write(tmp_path / "b", _batch(data, [3, 9])))
    assert images.dtype == np.uint8 and images.shape == (2, 32, 32, 3)
    assert labels.dtype == np.int64 and labels.tolist() == [3, 9]
    expected = np.zeros((2, 32, 32, 3), np.uint8)
    expected[0, 0, 0, 0], expected[0, 0, 1, 1], expected[0, 2, 3, 2] = 10, 20, 30
    expected[1, 0, 31, 0], expected[1, 1, 0, 1], expected[1, 31, 31, 2] = 40, 50, 60
    np.testing.assert_array_equal(images, expected)


def test_read_batch_matches_the_layout_on_random_pixels(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (5, 3072), dtype=np.uint8)
    images, _ = cifar.read_batch(_write(tmp_path / "b", _batch(data, [0, 1, 2, 3, 4])))
    n, y, x, c = np.meshgrid(*map(np.arange, (5, 32, 32, 3)), indexing="ij")
    np.testing.assert_array_equal(images, data[n, c * 1024 + y * 32 + x])


def test_read_batch_reads_the_python2_format_of_the_official_files(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, (3, 3072), dtype=np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(_python2_pickle(data, [7, 0, 9]))
    images, labels = cifar.read_batch(path)
    np.testing.assert_array_equal(_rows(images), data)
    assert labels.tolist() == [7, 0, 9]


def test_read_batch_rejects_a_truncated_file(tmp_path):
    blob = pickle.dumps(_batch(np.zeros((4, 3072), np.uint8), [0, 1, 2, 3]), protocol=2)
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match=r"data_batch_1 is not a readable CIFAR-10 batch "
                                           r"\(truncated or corrupt"):
        cifar.read_batch(path)
    with pytest.raises(DatasetError, match="not found"):
        cifar.read_batch(tmp_path / "absent")


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_read_batch_refuses_forbidden_globals_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path / "evil", {b"data": _RunsShell(marker), b"labels": [0]})
    with pytest.raises(DatasetError, match=r"evil names the global (posix|nt|os)\.system"):
        cifar.read_batch(path)
    assert not marker.exists()

    path = _write(tmp_path / "other", {b"data": OrderedDict(), b"labels": [0]})
    with pytest.raises(DatasetError, match="collections.OrderedDict, which a CIFAR-10 batch"):
        cifar.read_batch(path)

    # The protocol-2 bytes encoder is allowed for latin-1 only, not for other codecs.
    blob = pickle.dumps({b"data": b"x"}, protocol=2).replace(b"latin1", b"zlib__")
    (tmp_path / "codec").write_bytes(blob)
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        cifar.read_batch(tmp_path / "codec")
    # bytes() is allowed without arguments only (b"" at protocol 2), not bytes(n).
    (tmp_path / "alloc").write_bytes(b"\x80\x02c__builtin__\nbytes\nJ\x00\xca\x9a\x3b\x85R.")
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        cifar.read_batch(tmp_path / "alloc")


@pytest.mark.parametrize(("batch", "message"), [
    (_batch(np.zeros((2, 3072), np.uint8), [0, 10]), r"labels must be in 0\.\.9, found 0\.\.10"),
    (_batch(np.zeros((2, 3072), np.uint8), [-1, 2]), r"labels must be in 0\.\.9"),
    (_batch(np.zeros((2, 3000), np.uint8), [0, 1]), r"uint8 \[N, 3072\].*found uint8 \[2, 3000\]"),
    (_batch(np.zeros((2, 3072), np.int64), [0, 1]), r"found int64"),
    (_batch(np.zeros((0, 3072), np.uint8), []), r"N > 0"),
    (_batch(np.zeros((3, 3072), np.uint8), [0, 1]), r"has 3 images but 2 labels"),
    (_batch(np.zeros((2, 3072), np.uint8), ["a", "b"]), r"b'labels' must be a list of ints"),
    ({b"data": np.zeros((1, 3072), np.uint8)}, r"expected a dict with b'data' and b'labels'"),
    ([1, 2, 3], r"found list"),
])
def test_read_batch_rejects_malformed_batches(tmp_path, batch, message):
    path = _write(tmp_path / "test_batch", batch)
    with pytest.raises(DatasetError, match=message) as info:
        cifar.read_batch(path)
    assert str(path) in str(info.value)


def test_offline_uses_the_balanced_standin(capsys):
    data = cifar.load_cifar10("test", "offline")
    assert data.images.shape == (2000, 32, 32, 3) and data.images.dtype == np.uint8
    assert np.bincount(data.labels, minlength=10).tolist() == [200] * 10
    assert "CIFAR-10: using the generated CIFAR-10 stand-in" in capsys.readouterr().out


def test_unknown_split_or_source():
    with pytest.raises(ValueError, match="split"):
        cifar.load_cifar10("valid", "offline")
    with pytest.raises(ValueError, match="source"):
        cifar.load_cifar10("train", "hub")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty rtb-lab cache, and a download URL that cannot be reached."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cifar, "CIFAR10_URL", UNREACHABLE)
    return tmp_path / "cache"


def test_full_without_a_network_names_the_offline_source(cache):
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=r"could not download .*127\.0\.0\.1:9.*"
                                           r"source='offline' \(the generated stand-in"):
        cifar.load_cifar10("test", "full", timeout=2.0, verbose=False)
    assert time.perf_counter() - start < 10
    assert not (cache / "cifar10" / "cifar-10-python.tar.gz").exists()
    # "auto" with nothing cached falls back to the stand-in, without a download attempt.
    assert "stand-in" in cifar.load_cifar10("test", "auto", verbose=False).source


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _official_tarball(path: Path, sizes: dict[str, int], extra: bool = True
                      ) -> dict[str, tuple[np.ndarray, list[int]]]:
    """A tar.gz in the official layout with tiny batches; returns each batch's rows/labels."""
    rng = np.random.default_rng(2)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        if extra:  # members the loader must leave alone, one of them escaping the cache
            _add(tar, "cifar-10-batches-py/readme.html", b"<html></html>")
            _add(tar, "cifar-10-batches-py/../../escaped", b"should never be written")
        for name, size in sizes.items():
            rows = rng.integers(0, 256, (size, 3072), dtype=np.uint8)
            labels = rng.integers(0, 10, size).tolist()
            batches[name] = (rows, labels)
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(_batch(rows, labels), 2))
    return batches


SIZES = {"data_batch_1": 3, "data_batch_2": 2, "data_batch_3": 1, "data_batch_4": 2,
         "data_batch_5": 4, "test_batch": 5}


def test_full_reads_a_cached_tarball_and_then_its_extracted_batches(cache, monkeypatch, capsys):
    archive = cache / "cifar10" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True)
    batches = _official_tarball(archive, SIZES)
    # The cached tarball is verified by `download` against the pinned sha256: pin ours.
    monkeypatch.setattr(cifar, "CIFAR10_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())

    train = cifar.load_cifar10("train", "full")
    rows = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert train.images.shape == (12, 32, 32, 3) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(_rows(train.images), rows)
    assert train.labels.tolist() == labels
    assert "CIFAR-10: using the full CIFAR-10 train set (12 images)" in capsys.readouterr().out

    extracted = cache / "cifar10" / "cifar-10-batches-py"
    assert sorted(p.name for p in extracted.iterdir()) == sorted(SIZES)
    assert not list(cache.parent.rglob("escaped"))

    # Once extracted, the tarball is not needed: "auto" reads the batches.
    archive.unlink()
    test = cifar.load_cifar10("test", "auto", verbose=False)
    np.testing.assert_array_equal(_rows(test.images), batches["test_batch"][0])
    assert test.labels.tolist() == batches["test_batch"][1]


def test_full_rejects_a_cached_tarball_with_the_wrong_checksum(cache):
    archive = cache / "cifar10" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True)
    _official_tarball(archive, SIZES)  # the official sha256 stays pinned: a mismatch
    with pytest.raises(DatasetError, match="could not download"):  # so it refetches
        cifar.load_cifar10("train", "full", timeout=2.0, verbose=False)
    assert not (cache / "cifar10" / "cifar-10-batches-py" / "data_batch_1").exists()


def test_full_rejects_incomplete_or_linked_tarballs(cache, monkeypatch):
    archive = cache / "cifar10" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True)
    _official_tarball(archive, {"data_batch_1": 1, "test_batch": 1}, extra=False)
    monkeypatch.setattr(cifar, "CIFAR10_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    with pytest.raises(DatasetError, match="lacks cifar-10-batches-py/data_batch_2"):
        cifar.load_cifar10("test", "full", verbose=False)
    shutil.rmtree(cache / "cifar10" / "cifar-10-batches-py")  # what it did extract

    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    monkeypatch.setattr(cifar, "CIFAR10_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    with pytest.raises(DatasetError, match="data_batch_1 is not a regular file"):
        cifar.load_cifar10("test", "full", verbose=False)


# --- the hub prior, offline -------------------------------------------------------------


@pytest.fixture
def hub_offline(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 and an empty hub cache. huggingface_hub reads both at import,
    so its constants are patched too."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


def test_load_hub_prior_reads_a_local_pipeline_repo(tmp_path, hub_offline):
    from diffusers import UNet2DModel

    from rtb_lab.domains.images.prior import load_hub_prior

    torch.manual_seed(0)
    # google/ddpm-cifar10-32's architecture, shrunk.
    unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3,
                       block_out_channels=(32, 64), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8).eval()
    unet.save_pretrained(tmp_path / "repo" / "unet")
    net = load_hub_prior(str(tmp_path / "repo"), "load_prior()")
    assert net.image_shape == (3, 32, 32)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10.0, 900.0])
    with torch.no_grad():
        torch.testing.assert_close(net(x, t), unet(x, t).sample, rtol=0, atol=1e-6)


def test_load_hub_prior_offline_names_the_alternative(hub_offline):
    from rtb_lab.domains.images.prior import load_hub_prior

    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"Offline, use load_prior\(\) \(the stand-in prior"):
        load_hub_prior("google/ddpm-cifar10-32",
                       "load_prior() (the stand-in prior shipped with rtb-lab)")
    assert time.perf_counter() - start < 10
