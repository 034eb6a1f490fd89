"""DATA_DIR of the evaluation suites is a path the user writes (#21): a URL is read through its filesystem, never
folded into a local directory; convert's and the leakage report's outputs, which need local files, refuse a URL in
one line naming the flag."""

from __future__ import annotations

import os
import pathlib

import pytest

from optiml_jax.testing.ram_filesystem import ram_tree, register_ram_filesystem


def _copy_to_ram(local: pathlib.Path, url: str, pick) -> None:
    import tensorflow as tf

    for f in sorted(local.rglob("*")):
        rel = f.relative_to(local)
        if f.is_file() and pick(rel):
            target = f"{url}/{rel.as_posix()}"
            tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
            tf.io.gfile.GFile(target, "wb").write(f.read_bytes())


def _summary(tasks):
    return [(t.info.name, [(e["input"], e["target"], tuple(e["options"])) for e in t.examples],
             len(t.demonstrations)) for t in tasks]


@pytest.mark.shared_data
def test_mmlu_bbh_and_raft_read_from_a_url_equal_the_local_read(shared_data, tmp_path, monkeypatch):
    from optiml_jax.evaluation.suites import build_suite

    monkeypatch.chdir(tmp_path)  # anything folded into a local `ram:` directory would appear here
    root = f"{register_ram_filesystem()}suites-{os.getpid()}/data"
    keep = {"mmlu": lambda r: r.name.startswith(("abstract_algebra", "anatomy")),
            "bbh": lambda r: r.stem in ("boolean_expressions", "navigate"),
            "raft": lambda r: r.parts[0] in ("ade_corpus_v2", "overruling")}
    local = tmp_path / "local"
    for suite, pick in keep.items():
        _copy_to_ram(shared_data / suite, f"{root}/{suite}", pick)
        for rel, data in ram_tree(f"{root}/{suite}").items():
            (local / suite / rel).parent.mkdir(parents=True, exist_ok=True)
            (local / suite / rel).write_bytes(data)
    for suite in keep:
        remote = build_suite(suite, root, max_examples=3)
        assert remote, suite
        assert _summary(remote) == _summary(build_suite(suite, local, max_examples=3)), suite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local"]  # no `ram:` directory appeared


def test_convert_refuses_a_url_out_dir_in_one_line(tmp_path, capsys, monkeypatch):
    from optiml_jax.cli import convert

    monkeypatch.chdir(tmp_path)
    code = convert.main(["orbax-to-hf", "--orbax_dir", str(tmp_path / "o"), "--out_dir", "gs://bucket/hf"])
    err = capsys.readouterr().err
    assert code == 2 and "--out_dir = 'gs://bucket/hf'" in err and "local" in err, err
    assert not any(tmp_path.iterdir())
