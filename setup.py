"""optiml_jax: OPT-IML instruction tuning reproduced in JAX (SeqIO + T5X conventions + Flax + Pallas)."""

import os
import shutil

import setuptools
from setuptools.command.build_py import build_py

# One line run at interpreter start-up (site.py executes .pth lines that begin with "import"); it makes
# the plain `lm_eval --model optiml_jax` command find our backend. Why and how: optiml_jax/_lm_eval_hook.py.
LM_EVAL_PTH = ("optiml_jax_lm_eval.pth", "import optiml_jax._lm_eval_hook\n")


class BuildPyWithPth(build_py):
    """build_py that also writes the .pth file where it lands at the root of site-packages, and copies the
    repository's top-level gin/ folder into the package as `optiml_jax/gin/` (so `--gin_file=gin/runs/x.gin`
    resolves in a wheel install; `optiml_jax.cli.gin_setup.gin_search_paths` looks there first).

    Regular installs: the root of build_lib. Editable installs (PEP 660): build_lib is discarded, so the
    file goes to the editable wheel's root, which setuptools passes as `install_lib`; gin/ is then read from
    the checkout itself.
    """

    def run(self):
        super().run()
        root = self.build_lib
        if getattr(self, "editable_mode", False):
            root = self.get_finalized_command("install").install_lib
        else:
            here = os.path.dirname(os.path.abspath(__file__))
            shutil.copytree(os.path.join(here, "gin"), os.path.join(self.build_lib, "optiml_jax", "gin"),
                            dirs_exist_ok=True)
        name, content = LM_EVAL_PTH
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, name), "w") as f:
            f.write(content)


# Core: what `optiml_jax.models` and `optiml_jax.kernels` need (importable on GPU boxes without TF).
CORE = [
    "jax>=0.10,<0.12",
    "flax>=0.12,<0.13",
    "optax>=0.2.6,<0.3",
    "orbax-checkpoint>=0.12,<0.13",
    "etils[epath]>=1.7",  # optiml_jax.paths: every user path (orbax-checkpoint needs it too)
    "numpy>=1.26",
    "safetensors>=0.4",
    "tokenizers>=0.21",
    "tqdm>=4.66",
]
# Data, training and evaluation: SeqIO/TF/gin stack (not needed by models/kernels).
PIPELINE = [
    "seqio>=0.0.19",
    "tensorflow>=2.16",
    "tensorflow-datasets>=4.9",
    "importlib_resources>=6",  # tfds dataset preparation needs it (through etils)
    "gin-config>=0.5",
    "tensorboard>=2.15",
    "rouge-score>=0.1.2",
    "pyyaml>=6",
    "jinja2>=3",
]
# Parity and notebook tests. torch is pinned: any other spec pulls GBs of CUDA wheels.
TEST = [
    "pytest>=8",
    "pytest-xdist>=3.5",  # pytest.ini runs the suite on 2 workers
    "regex>=2023.0",
    "import-linter==2.16",  # the layer contract (.importlinter, tests/test_layers.py)
    "torch==2.13.0",
    "transformers>=5,<6",
    "nbclient>=0.10",
    "nbformat>=5.10",
    "ipykernel>=6",
    "matplotlib>=3.8",
    "lm-eval==0.4.13",
    "accelerate>=1.0",  # lm-eval's Hugging Face backend (the parity peer of our adapter)
]

setuptools.setup(
    name="optiml_jax",
    version="0.1.0",
    description="OPT-IML instruction meta-learning reproduced in JAX: SeqIO tasks, T5X-style pjit training, Pallas attention.",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["optiml_jax", "optiml_jax.*"]),
    # Data files the code reads at run time: the OPT-IML Bench catalog, the mini-benchmark's counts and BPE.
    package_data={
        "optiml_jax.tasks.catalog": ["*.tsv", "*.txt", "*.gin", "*.md"],
        "optiml_jax.tasks.mini_bench": ["counts.json", "families.json", "bpe/*"],
    },
    install_requires=CORE + PIPELINE,
    extras_require={
        "test": TEST,
        "gpu": ["jax[cuda12]>=0.10,<0.12"],
        "tpu": ["jax[tpu]>=0.10,<0.12"],
        "gcs": ["google-cloud-storage"],  # Orbax lists and deletes gs:// checkpoint steps through it
    },
    cmdclass={"build_py": BuildPyWithPth},
    entry_points={"console_scripts": [
        "optiml-train=optiml_jax.cli.train:console_main",
        "optiml-eval=optiml_jax.cli.eval:console_main",
        "optiml-infer=optiml_jax.cli.infer:console_main",
        "optiml-tasks=optiml_jax.cli.tasks:console_main",
        "optiml-convert=optiml_jax.cli.convert:console_main",
        "optiml-plan=optiml_jax.cli.plan:console_main",
        "optiml-lm-eval=optiml_jax.cli.lm_eval:main",
    ]},
)
