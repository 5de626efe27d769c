"""podtui demo trainer: linear regression by minibatch SGD with momentum, on the demo dataset.

Python standard library only, so it runs on any pod. It reads the CSV at $PODTUI_DATASET_PATH, prints one
`step=N loss=X lr=Y` line per step and a JSON eval line every 25 steps, and takes about a minute
(DEMO_STEPS and DEMO_STEP_SECONDS change that). Into $PODTUI_OUTPUT_DIR it writes a checkpoint every
DEMO_CHECKPOINT_EVERY steps (default 50; `checkpoint.json`, overwritten) and the model at the end (`model.json`),
which podtui brings home. A run launched with --retries that lost its pod resumes from
`$PODTUI_RESUME_DIR/checkpoint.json` (the outputs home before the pod was lost) and says so.
"""

import csv
import json
import math
import os
import random
import sys
import time


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    xs = [[float(v) for v in row[:-1]] for row in body]
    ys = [float(row[-1]) for row in body]
    return header, xs, ys


def mse(w, b, xs, ys):
    total = 0.0
    for x, y in zip(xs, ys):
        err = sum(wi * xi for wi, xi in zip(w, x)) + b - y
        total += err * err
    return total / len(xs)


def save(folder, name, step, w, b, header, state=None):
    """Write the weights as JSON (a model file small enough for any disk); a checkpoint adds what resuming needs
    (momentum, the sampler's state). Written to a temporary name and renamed: a copy never sees half a file."""
    if not folder:
        return
    os.makedirs(folder, exist_ok=True)
    body = {"step": step, "features": header[:-1], "weights": w, "bias": b}
    body.update(state or {})
    tmp = os.path.join(folder, "." + name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(body, f)
    os.replace(tmp, os.path.join(folder, name))


def resume_point():
    """The checkpoint an earlier attempt left in $PODTUI_RESUME_DIR, or None."""
    folder = os.environ.get("PODTUI_RESUME_DIR", "")
    path = os.path.join(folder, "checkpoint.json") if folder else ""
    if not path or not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def main():
    path = os.environ.get("PODTUI_DATASET_PATH")
    if not path or not os.path.exists(path):
        sys.exit(f"demo trainer: no dataset at PODTUI_DATASET_PATH={path!r}")
    steps = int(os.environ.get("DEMO_STEPS", "240"))
    pause = float(os.environ.get("DEMO_STEP_SECONDS", "0.25"))
    header, xs, ys = load(path)
    split = int(len(xs) * 0.8)
    train_x, train_y, eval_x, eval_y = xs[:split], ys[:split], xs[split:], ys[split:]
    print(f"demo trainer: {len(train_x)} train rows, {len(eval_x)} eval rows, features {header[:-1]}", flush=True)
    rng = random.Random(0)
    w = [0.0] * len(header[:-1])
    b = 0.0
    vw = [0.0] * len(w)
    vb = 0.0
    batch = 32
    outputs = os.environ.get("PODTUI_OUTPUT_DIR", "")
    every = int(os.environ.get("DEMO_CHECKPOINT_EVERY", "50"))
    first = 1
    ckpt = resume_point()
    if ckpt is not None and "momentum" in ckpt:
        w, b, vw, vb = ckpt["weights"], ckpt["bias"], ckpt["momentum"], ckpt["momentum_bias"]
        version, internal, gauss = ckpt["rng"]
        rng.setstate((version, tuple(internal), gauss))
        first = int(ckpt["step"]) + 1
        print(f"demo trainer: resuming from step {ckpt['step']} ($PODTUI_RESUME_DIR/checkpoint.json, attempt "
              f"{os.environ.get('PODTUI_ATTEMPT', '?')})", flush=True)
    for step in range(first, steps + 1):
        lr = 0.02 * 0.5 * (1 + math.cos(math.pi * step / steps)) + 1e-4
        idx = [rng.randrange(len(train_x)) for _ in range(batch)]
        gw = [0.0] * len(w)
        gb = 0.0
        loss = 0.0
        for i in idx:
            x, y = train_x[i], train_y[i]
            err = sum(wi * xi for wi, xi in zip(w, x)) + b - y
            loss += err * err
            for j, xj in enumerate(x):
                gw[j] += 2 * err * xj / batch
            gb += 2 * err / batch
        vw = [0.9 * v + g for v, g in zip(vw, gw)]
        vb = 0.9 * vb + gb
        w = [wi - lr * v for wi, v in zip(w, vw)]
        b -= lr * vb
        print(f"step={step} loss={loss / batch:.6f} lr={lr:.6g}", flush=True)
        if step % 25 == 0 or step == steps:
            print(json.dumps({"step": step, "eval_loss": round(mse(w, b, eval_x, eval_y), 6)}), flush=True)
        if every > 0 and step % every == 0:
            save(outputs, "checkpoint.json", step, w, b, header,
                 {"momentum": vw, "momentum_bias": vb, "rng": list(rng.getstate())})
        time.sleep(pause)
    save(outputs, "model.json", steps, w, b, header)
    print(f"demo trainer: done, weights {[round(v, 3) for v in w]}", flush=True)


if __name__ == "__main__":
    main()
