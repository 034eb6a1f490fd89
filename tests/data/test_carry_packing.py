"""No drawn example is lost and the packed shares are the mixture rates, at any row length (issue 23)."""

import collections

import numpy as np
import pytest
from optiml_jax.data import carry_packer
from optiml_jax.data.stream import TrainStream
from optiml_jax.testing.length_mixtures import register_two_length_mixture, remove_two_length_mixture

LONG, SHORT, MIXTURE = "test_two_length_long", "test_two_length_short", "test_two_length_mixture"


@pytest.fixture(scope="module")
def two_length_mixture():
    """A seqio mixture at 1:1 of a task of ~130-token examples and one of ~10-token examples (the issue's)."""
    yield register_two_length_mixture(MIXTURE, LONG, SHORT)
    remove_two_length_mixture(MIXTURE, LONG, SHORT)


def _lengths(stream, task):
    return stream._tokens(task, 0).lengths


@pytest.mark.parametrize("length,batch,steps", [(256, 8, 20), (2048, 2, 12)])
def test_two_length_mixture_packs_every_draw_at_the_rates(two_length_mixture, length, batch, steps):
    stream = TrainStream(two_length_mixture, length, batch, seed=0)
    long_len, short_len = _lengths(stream, LONG).mean(), _lengths(stream, SHORT).mean()
    assert 110 < long_len < 150 and 5 < short_len < 15, (long_len, short_len)
    drawn, placed, tokens = collections.Counter(), collections.Counter(), collections.Counter()
    for step in range(steps):
        _, st = stream.get_batch_with_stats(step)
        drawn.update(st.drawn)
        placed.update(st.per_task)
        tokens.update(st.placed_tokens)
        assert st.unplaced <= stream.max_carry * stream.num_groups
    # every draw is placed once or still carried: drawn - placed is exactly the carry after the last step, per task
    carried = collections.Counter()
    for g, state in zip(stream.groups, stream._states[steps]):
        for k in state.carry:
            carried[stream.task_names[stream._draw(g, k)[0]]] += 1
    assert drawn - placed == carried and not placed - drawn
    n_carried = sum(carried.values())
    assert n_carried <= stream.max_carry * stream.num_groups
    n = sum(placed.values())
    share, sigma = placed[LONG] / n, (0.25 / n) ** 0.5
    assert n > 300
    assert abs(share - 0.5) < 3 * sigma + n_carried / n, (share, n, sigma)
    # token shares are what the rates are not: the long task holds most of the tokens
    assert tokens[LONG] / sum(tokens.values()) > 0.85


def test_each_draw_is_placed_exactly_once_and_waits_at_most_max_carry_steps():
    rng = np.random.default_rng(0)
    lengths = rng.choice([3, 40, 61, 64], size=10_000)
    state, seen, step_of = carry_packer.GroupState(), [], {}
    for step in range(300):
        done = carry_packer.pack_step(state, lambda k: (np.zeros(lengths[k], np.int32), np.ones(lengths[k])), 2, 64, 3)
        for k in done.new_draws:
            step_of[k] = step
        for k, ex, r in done.placed:
            seen.append(k)
            assert step - step_of[k] <= 3
        free = np.full(2, 64)
        for _, ex, r in done.placed:
            free[r] -= len(ex[0])
        assert (free >= 0).all()
        assert len(done.state.carry) <= 3
        state = done.state
    assert sorted(seen) == sorted(set(seen))  # never twice
    assert sorted(seen + list(state.carry)) == list(range(state.cursor))  # none lost


def test_resume_from_state_and_replay_give_the_same_batches(two_length_mixture):
    ref = TrainStream(two_length_mixture, 256, 4, seed=5, packing_group_rows=2)
    batches = [ref.get_batch(s) for s in range(6)]
    ref.get_batch(2)  # out of order: recomputed from the remembered state, the same batch
    saved = TrainStream(two_length_mixture, 256, 4, seed=5, packing_group_rows=2)
    for s in range(3):
        saved.get_batch(s)
    state = saved.state()
    # a second host count: two hosts, each restoring its own groups from the same state
    for hosts in (1, 2):
        parts = []
        for h in range(hosts):
            resumed = TrainStream(two_length_mixture, 256, 4, seed=5, packing_group_rows=2, shard_index=h,
                                  num_shards=hosts)
            assert resumed.restore(state, 3)
            parts.append([resumed.get_batch(s) for s in (3, 4, 5)])
        for i, s in enumerate((3, 4, 5)):
            for k in batches[s]:
                np.testing.assert_array_equal(np.concatenate([p[i][k] for p in parts]), batches[s][k])
    replayed = TrainStream(two_length_mixture, 256, 4, seed=5, packing_group_rows=2)
    assert not replayed.restore({}, 5)
    for k in batches[5]:
        np.testing.assert_array_equal(replayed.get_batch(5)[k], batches[5][k])


def test_tasks_report_flags_a_share_off_by_3_sigma_and_prints_token_shares(two_length_mixture, capsys):
    import argparse

    from optiml_jax.cli.tasks import report_command

    # the numbers from the packer that dropped what did not fit: 0.09 of 1,770 packed examples for 0.5
    assert report_command.share_is_off(0.09, 0.5, 1770)
    assert not report_command.share_is_off(0.49, 0.5, 1770)
    assert report_command.share_is_off(0.45, 0.5, 1770) and not report_command.share_is_off(0.45, 0.5, 1770, 100)
    import gin

    gin.clear_config()  # the command reads bound macros: one left by an earlier test in this worker would disagree
    report_command.run(argparse.Namespace(name=two_length_mixture, length=256, batch_size=8, steps=6, seed=0,
                                          split="train", gin_file=None))
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("test_two_length_")}
    assert set(rows) == {LONG, SHORT}
    assert float(rows[LONG][4]) > 0.7 > float(rows[LONG][3])  # the long task holds most of the tokens
    assert "!" not in rows[LONG] and "!" not in rows[SHORT]
    assert "shares of examples" in out


def test_a_vocabulary_without_bos_packs_by_the_positions_its_examples_occupy():
    """Without a bos an example's first id is input only (its segment is one shorter): two 5-id examples fill an
    8-position row together, which they cannot with a bos."""
    import numpy as np

    from optiml_jax.data import carry_packer

    def example(k):
        return np.arange(5, dtype=np.int32), np.ones(5, np.float32)

    start = carry_packer.GroupState(0, ())
    with_bos = carry_packer.pack_step(start, example, num_rows=1, length=8, max_carry=1)
    no_bos = carry_packer.pack_step(start, example, num_rows=1, length=8, max_carry=1, occupies=lambda n: n - 1)
    assert [k for k, _, _ in with_bos.placed] == [0] and with_bos.state.carry == (1,)
    assert [k for k, _, _ in no_bos.placed] == [0, 1]
