"""The launcher flags every command takes, so one launch script works for train, eval and infer alike.

  --distributed / --multiprocess_gpu     call jax.distributed.initialize() (TPU pod slices, SLURM, Open MPI and
                                         Kubernetes are auto-detected); T5X's spelling is accepted
  --coordinator_address, --num_processes / --process_count, --process_id / --process_index
                                         explicit multi-process setup (also OPTIML_COORDINATOR_ADDRESS, ...)
  --cpu_collectives=gloo                 multi-process CPU runs
  --alsologtostderr / --logtostderr      absl's flags, which every T5X launcher passes: our log lines already go to
                                         stderr, so these select exactly what happens (they are not ignored: without
                                         them the behaviour is the same, and it is documented here)
"""

from __future__ import annotations

import argparse
import os


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--distributed", "--multiprocess_gpu", dest="distributed", action="store_true",
                        help="call jax.distributed.initialize() (multi-host)")
    parser.add_argument("--coordinator_address", default=os.environ.get("OPTIML_COORDINATOR_ADDRESS"))
    parser.add_argument("--num_processes", "--process_count", dest="num_processes", type=int,
                        default=_env_int("OPTIML_NUM_PROCESSES"))
    parser.add_argument("--process_id", "--process_index", dest="process_id", type=int,
                        default=_env_int("OPTIML_PROCESS_ID"))
    parser.add_argument("--cpu_collectives", default=None, help="e.g. 'gloo' for multi-process CPU runs")
    parser.add_argument("--alsologtostderr", "--logtostderr", dest="log_to_stderr", action="store_true",
                        help="log to stderr (absl/T5X flag; this is where every command logs)")


def command_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The parser every run command (train, eval, infer) starts from: documented exit codes, the gin flags,
    --verbose and the launcher flags above; the command adds its own."""
    from optiml_jax.cli import errors, gin_setup

    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    errors.with_exit_codes(parser)
    gin_setup.add_gin_arguments(parser)
    errors.add_verbose_argument(parser)
    add_launcher_arguments(parser)
    return parser


def init_distributed(args: argparse.Namespace) -> None:
    """jax.distributed.initialize() when the flags ask for it (before any other JAX call)."""
    import jax

    if args.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", args.cpu_collectives)
    if args.distributed or args.coordinator_address:
        jax.distributed.initialize(coordinator_address=args.coordinator_address, num_processes=args.num_processes,
                                   process_id=args.process_id)
