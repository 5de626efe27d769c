"""Record what real trainers print, as the pod's agent receives it, into tests/fixtures/transcripts/.

    python scripts/capture_transcripts.py [--venv /tmp/podtui-capture] [--only NAME ...] [--skip-install]

It installs tqdm, torch (CPU wheels), lightning, transformers (+ accelerate) and keras (torch backend) into a
scratch virtual environment, runs a tiny training with each, and records the raw bytes they write: stdout and
stderr as two pipes, read as they arrive (the pod's agent sees pipes, not a terminal), `\\r`, `\\b` and escape
codes included. Keras is recorded a second time with its stdout on a pseudo-terminal, where it redraws its
progress bar with backspaces (`unbuffer`, `script -q` or a notebook bridge give it one).

Each transcript is `<name>.jsonl`: one `["stdout"|"stderr", "text"]` chunk per line, in arrival order, so a
test can hand the agent the same chunks in the same order. `versions.json` names the library and Python
versions that made them. The transcripts are checked in; run this again only to refresh them. The tqdm-only
ones need no torch: `--venv .venv --skip-install --only tqdm_eval tqdm_eval_hf ...` with the test extras.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import selectors
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "transcripts"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PACKAGES = ["tqdm", "lightning", "transformers", "accelerate", "keras"]

TQDM_POSTFIX = """
import time
from tqdm import tqdm

bar = tqdm(range(200))
for i in bar:
    time.sleep(0.01)
    bar.set_postfix(loss=round(2.0 / (i + 1), 4), lr=1e-4)
print("done")
"""

TQDM_EPOCHS = """
import time
from tqdm import tqdm

step = 0
for epoch in range(1, 4):
    bar = tqdm(range(50), desc=f"Epoch {epoch}")
    for i in bar:
        step += 1
        time.sleep(0.01)
        bar.set_postfix(loss=round(1.0 / step, 4))
    bar.close()
    print(f"epoch {epoch} finished")
"""

LIGHTNING = """
import torch
import lightning as L
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)

class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)

x = torch.randn(160, 8)
y = x.sum(dim=1, keepdim=True)
train = DataLoader(TensorDataset(x, y), batch_size=8)
val = DataLoader(TensorDataset(x[:40], y[:40]), batch_size=8)
callbacks = [L.pytorch.callbacks.TQDMProgressBar()] if "{bar}" == "tqdm" else []  # rich when installed
trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, callbacks=callbacks)
trainer.fit(Tiny(), train, val)
"""

KERAS = """
import os
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np
import keras

np.random.seed(0)
x = np.random.randn(640, 8).astype("float32")
y = (x.sum(axis=1) > 0).astype("float32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=3, batch_size=16, validation_split=0.2)
"""

HF_TRAINER = """
import tempfile
import torch
from transformers import Trainer, TrainingArguments

torch.manual_seed(0)

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)

    def forward(self, x, labels=None):
        out = self.layer(x)
        return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}

xs = torch.randn(160, 8)
rows = [{"x": xs[i], "labels": xs[i].sum().reshape(1)} for i in range(160)]
args = TrainingArguments(output_dir=tempfile.mkdtemp(), num_train_epochs=3, per_device_train_batch_size=8,
                         per_device_eval_batch_size=8, logging_steps=5, eval_strategy="epoch",
                         save_strategy="no", report_to=[], use_cpu=True, learning_rate=0.01)
trainer = Trainer(model=Tiny(), args=args, train_dataset=rows, eval_dataset=rows[:40])
trainer.train()
"""

RANKS = """
import os, time
import torch.distributed as dist
from tqdm import tqdm

dist.init_process_group("gloo")
rank = dist.get_rank()
bar = tqdm(range(30), desc="Epoch 0")
for i in bar:
    time.sleep(0.02)
    bar.set_postfix(loss=round((rank + 1) / (i + 1), 4))
    if i % 10 == 9:
        print(f"step={i + 1} loss={(rank + 1) / (i + 1):.4f}", flush=True)
bar.close()
dist.destroy_process_group()
"""

# Metrics printed between per-epoch bars (a custom loop): the eval must land on the loss's global step.
TQDM_EVAL = """
import time
from tqdm import tqdm

step = 0
for epoch in range(2):
    bar = tqdm(range(120), desc=f"Epoch {epoch}")
    for i in bar:
        step += 1
        time.sleep(0.005)
        bar.set_postfix(train_loss=round(1.0 / step, 5))
    tqdm.write(str({'eval_loss': round(0.5 / (epoch + 1), 4), 'epoch': epoch}))
"""

# Hugging Face-style dicts: one written mid-epoch beside the bar (tqdm clears and redraws it), one printed
# between the bars on the other stream.
TQDM_EVAL_HF = """
import time
from tqdm import tqdm

step = 0
for epoch in range(1, 4):
    bar = tqdm(range(40), desc=f"Epoch {epoch}")
    for i in bar:
        step += 1
        time.sleep(0.01)
        bar.set_postfix(loss=round(1.0 / step, 5))
        if i == 19:
            bar.write(str({'loss': round(1.0 / step, 5), 'learning_rate': 0.001, 'epoch': round(step / 40, 2)}))
    bar.close()
    print({'eval_loss': round(0.5 / epoch, 4), 'eval_runtime': 0.01, 'epoch': float(epoch)})
"""

# Keras-style end-of-epoch lines (` - name: value`, no step) and JSON lines without a step between the bars.
TQDM_EVAL_LINES = """
import json, time
from tqdm import tqdm

step = 0
for epoch in range(1, 3):
    bar = tqdm(range(60), desc=f"Epoch {epoch}/2")
    for i in bar:
        step += 1
        time.sleep(0.005)
        bar.set_postfix(loss=round(1.0 / step, 5))
    bar.close()
    print(f"Epoch {epoch}/2 - val_loss: {0.5 / epoch:.4f} - val_accuracy: {0.6 + 0.1 * epoch:.4f}")
    print(json.dumps({"val_f1": round(0.5 + 0.1 * epoch, 3), "epoch": epoch}))
"""

# A bar that is not drawn at its last step: it redraws at most every 0.3 s and is cleared at its end
# (leave=False), so its last drawing stops short of the end of the epoch.
TQDM_EVAL_UNFINISHED = """
import time
from tqdm import tqdm

step = 0
for epoch in range(2):
    bar = tqdm(range(120), desc=f"Epoch {epoch}", leave=False, mininterval=0.3, miniters=1)
    for i in bar:
        step += 1
        time.sleep(0.004)
        bar.set_postfix(train_loss=round(1.0 / step, 5), refresh=False)
    bar.close()
    tqdm.write(str({'eval_loss': round(0.5 / (epoch + 1), 4), 'epoch': epoch}))
"""

# name: (script, how it is launched, whether stdout is a pseudo-terminal)
SCENARIOS: dict[str, tuple[str, list[str], bool]] = {
    "tqdm_postfix": (TQDM_POSTFIX, [], False),
    "tqdm_epochs": (TQDM_EPOCHS, [], False),
    "lightning": (LIGHTNING.replace("{bar}", "tqdm"), [], False),
    "lightning_rich": (LIGHTNING.replace("{bar}", "rich"), [], False),
    "keras_pipe": (KERAS, [], False),
    "keras_tty": (KERAS, [], True),
    "hf_trainer": (HF_TRAINER, [], False),
    "tqdm_eval": (TQDM_EVAL, [], False),
    "tqdm_eval_hf": (TQDM_EVAL_HF, [], False),
    "tqdm_eval_lines": (TQDM_EVAL_LINES, [], False),
    "tqdm_eval_unfinished": (TQDM_EVAL_UNFINISHED, [], False),
    "torchrun_ranks": (RANKS, ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--tee", "3"], False),
}


def install(venv: Path) -> None:
    """A scratch venv with the libraries; torch from the CPU index when it answers, else from the default."""
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    try:  # pip retries an unreachable index for minutes per package: ask once, briefly
        urllib.request.urlopen(TORCH_CPU_INDEX + "/torch/", timeout=10).close()
        subprocess.run([*pip, "--index-url", TORCH_CPU_INDEX, "--extra-index-url", "https://pypi.org/simple",
                        "torch"], check=True)
    except OSError:
        print("the CPU wheel index did not answer; installing torch from the default index", file=sys.stderr)
        subprocess.run([*pip, "torch"], check=True)
    subprocess.run([*pip, *PACKAGES], check=True)


def versions(venv: Path) -> dict[str, str]:
    """The versions of the libraries installed in the venv (a venv with tqdm alone records the tqdm ones)."""
    code = ("import json, sys, importlib.metadata as m\n"
            f"names = {['torch', *PACKAGES]!r}\n"
            "def version(n):\n"
            "    try:\n"
            "        return m.version(n)\n"
            "    except m.PackageNotFoundError:\n"
            "        return None\n"
            "print(json.dumps({'python': sys.version.split()[0], **{n: version(n) for n in names}}))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    return {k: v for k, v in json.loads(out.stdout).items() if v is not None}


def record(python: Path, script: str, launch: list[str], tty: bool, workdir: Path) -> list[list[str]]:
    """Run one script and return its output chunks as [stream, text], in the order they arrived."""
    path = workdir / "train.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PODTUI_", "COLUMNS", "LINES"))}
    env.update(PYTHONUNBUFFERED="1", TERM="xterm-256color", KERAS_BACKEND="torch", TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="warning", OMP_NUM_THREADS="1")
    master = slave = -1
    stdout: int = subprocess.PIPE
    if tty:
        master, slave = pty.openpty()
        stdout = slave
    proc = subprocess.Popen([str(python), *launch, str(path)], stdout=stdout, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, cwd=workdir, env=env)
    sources = {proc.stderr.fileno(): "stderr"}  # type: ignore[union-attr]
    if tty:
        os.close(slave)
        sources[master] = "stdout"
    else:
        sources[proc.stdout.fileno()] = "stdout"  # type: ignore[union-attr]
    chunks: list[list[str]] = []
    selector = selectors.DefaultSelector()
    for fd in sources:
        selector.register(fd, selectors.EVENT_READ)
    open_fds = set(sources)
    while open_fds:
        for key, _ in selector.select(timeout=1.0):
            try:
                data = os.read(key.fd, 65536)
            except OSError:  # a pty's master reads EIO once the child closed it
                data = b""
            if not data:
                selector.unregister(key.fd)
                open_fds.discard(key.fd)
                continue
            text = data.decode("utf-8", "replace")
            if tty:  # the terminal turns \n into \r\n; the pipe the agent reads has none of that
                text = text.replace("\r\n", "\n")
            chunks.append([sources[key.fd], text])
    code = proc.wait()
    if master >= 0:
        os.close(master)
    if code != 0:
        tail = "".join(c[1] for c in chunks[-20:])
        raise SystemExit(f"the script exited with {code}:\n{tail}")
    return chunks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "podtui-capture")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS))
    parser.add_argument("--skip-install", action="store_true")
    args = parser.parse_args()
    if not args.skip_install:
        install(args.venv)
    OUT.mkdir(parents=True, exist_ok=True)
    old = OUT / "versions.json"
    made = {**(json.loads(old.read_text()) if old.exists() else {}), **versions(args.venv)}
    for name in args.only or SCENARIOS:
        script, launch, tty = SCENARIOS[name]
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as workdir:
            chunks = record(args.venv / "bin" / "python", script, launch, tty, Path(workdir))
        with open(OUT / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(json.dumps(chunk, ensure_ascii=False) + "\n")
        print(f"{name}: {len(chunks)} chunks in {time.monotonic() - started:.1f} s")
    (OUT / "versions.json").write_text(json.dumps(made, indent=2, sort_keys=True) + "\n")
    print(json.dumps(made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
