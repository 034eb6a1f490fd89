"""The path layer (optiml_jax.paths): a URL a user writes stays that URL, a local path becomes absolute, and a
scheme nothing here serves, a URL pathlib already folded, or a filesystem that cannot be reached is one error
naming the setting."""

import os
import pathlib

import pytest

from optiml_jax.paths import (PathSettingError, check_reachable, folded_url, is_url, local_only, supported_schemes,
                              user_path)
from optiml_jax.testing.ram_filesystem import register_ram_filesystem


@pytest.fixture(scope="module", autouse=True)
def _ram():
    register_ram_filesystem()


@pytest.mark.parametrize("url", ["gs://bucket/run", "gs://bucket/run/", "s3://bucket/a/b", "az://c/d",
                                 "ram://bucket/run"])
def test_a_url_is_never_folded(url):
    p = user_path(url, "MODEL_DIR")
    assert os.fspath(p) == url.rstrip("/")
    assert os.fspath(p / "checkpoints" / "10") == url.rstrip("/") + "/checkpoints/10"
    assert os.fspath(p.parent) == url.rstrip("/").rsplit("/", 1)[0]
    assert is_url(p) and is_url(p / "x")
    assert os.fspath(user_path(p, "MODEL_DIR")) == os.fspath(p)  # idempotent on an epath.Path
    # what the layer exists to prevent: pathlib gives a local relative path `gs:/bucket/run`
    assert os.fspath(pathlib.Path(url)) != url.rstrip("/")


def test_a_local_path_is_absolute_and_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert os.fspath(user_path("runs/a", "MODEL_DIR")) == str(tmp_path / "runs" / "a")
    assert os.fspath(user_path("~/x", "MODEL_DIR")) == os.path.expanduser("~/x")
    assert os.fspath(user_path("file:///tmp/y", "MODEL_DIR")) == "/tmp/y"
    assert not is_url(user_path("runs/a", "MODEL_DIR"))


@pytest.mark.parametrize("value,message", [
    ("nosuch://x/y", "MODEL_DIR = 'nosuch://x/y': no filesystem for nosuch:// is available here (supported: "),
    ("gs:/bucket/run", "MODEL_DIR = 'gs:/bucket/run' is a URL with one slash folded away (pathlib does this); "
                       "write 'gs://bucket/run'"),
    (pathlib.Path("gs://bucket/run"), "write 'gs://bucket/run'"),
    ("", "MODEL_DIR = '': expected a directory or file path"),
    (None, "MODEL_DIR = None: expected a directory or file path"),
])
def test_what_cannot_be_a_path_is_one_line_naming_the_setting(value, message):
    with pytest.raises(PathSettingError) as e:
        user_path(value, "MODEL_DIR")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)  # the commands map ValueError to exit 2


def test_supported_schemes_and_folded_urls():
    assert {"gs", "s3", "ram"} <= set(supported_schemes())
    assert folded_url("gs:/b/x") == "gs://b/x" and folded_url("/tmp/gs:/b") is None and folded_url("rel/x") is None


def test_local_only_names_what_needs_a_local_file():
    with pytest.raises(PathSettingError, match=r"CHECKPOINT_PATH = 'gs://b/hf': the HF loader reads local files only"):
        local_only("gs://b/hf", "CHECKPOINT_PATH", "the HF loader")


def test_ram_filesystem_round_trip_creates_nothing_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = user_path("ram://paths_test/run", "MODEL_DIR")
    (p / "sub").mkdir(parents=True, exist_ok=True)
    (p / "sub" / "f.txt").write_text("hello")
    assert (p / "sub" / "f.txt").read_text() == "hello"
    assert check_reachable(p, "MODEL_DIR") is p
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_bucket_is_one_error_naming_the_setting():
    """This machine has no network: gfile's GCS client fails at once (measured 0.01 s after TensorFlow loads)."""
    with pytest.raises(PathSettingError) as e:
        check_reachable(user_path("gs://optiml-no-such-bucket/run", "EVAL_OUTPUT_DIR"), "EVAL_OUTPUT_DIR")
    msg = str(e.value)
    assert msg.startswith("EVAL_OUTPUT_DIR = 'gs://optiml-no-such-bucket/run': ") and "\n" not in msg
