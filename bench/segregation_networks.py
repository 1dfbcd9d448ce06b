"""Train and package the networks of the functional-segregation contrasts (shipped in netphys/data/variants).

* ``tanh``: the Tanh twin of the default model, trained from scratch with the default recipe
  (``netphys train imagenette-64/train --val-dir imagenette-64/val --activation tanh``).
* ``pgd0, pgd1, pgd2, pgd4, pgd8``: the robustness ladder: the shipped default model fine-tuned for 2
  epochs (one-cycle, peak lr 0.02, the default recipe's augmentation, label smoothing and weight decay)
  on L-infinity PGD examples at epsilon 0, 1, 2, 4, 8 / 255 (2 steps of 1.25 epsilon from a random
  start, crafted in eval mode); ``pgd0`` is the same fine-tuning on clean images, so the rungs differ
  only in epsilon.

Each network is stored as float16 (half the bytes; the accuracies in the manifest are measured on the
stored, rounded weights), with its training manifest, clean validation top-1 and PGD-10 robust top-1 at
2/255 and 4/255 on 500 seeded validation images.

    python bench/segregation_networks.py --work /tmp/np_models        # trains what is missing, packages all
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imagenette-64"
OUT = ROOT / "src" / "netphys" / "data" / "variants"
LADDER = (0, 1, 2, 4, 8)


def commands(work: Path) -> dict:
    base = ["netphys", "train", str(DATA / "train"), "--val-dir", str(DATA / "val"), "--no-progress", "--threads", "2"]
    cmds = {f"pgd{e}": base + ["--out", str(work / f"pgd{e}"), "--init", "default", "--epochs", "2", "--lr", "0.02",
                               "--epsilon", str(e), "--attack-steps", "2", "--seed", "1"] for e in LADDER}
    cmds["tanh"] = base + ["--out", str(work / "tanh"), "--activation", "tanh", "--seed", "0"]
    return cmds


def package(name: str, src: Path, cmd: list) -> dict:
    from netphys.models import load_model
    from netphys.stimuli import Preprocess, StimulusSet
    from netphys.training import evaluate
    from netphys.training.adversarial import robust_accuracy

    man = json.loads((src / "manifest.json").read_text())
    state = torch.load(src / man["weights_file"], map_location="cpu", weights_only=True)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    dst = OUT / name
    dst.mkdir(parents=True, exist_ok=True)
    tmp = dst / "weights.pt.tmp"
    torch.save(half, tmp)
    os.replace(tmp, dst / "weights.pt")
    man_out = {k: v for k, v in man.items() if k not in ("sha256", "weights_file")}
    man_out.update(weights_file="weights.pt", storage="float16", command=" ".join(cmd[:1] + cmd[1:]),
                   val_top1_float32=man.get("val_top1"), sha256=hashlib.sha256((dst / "weights.pt").read_bytes()).hexdigest(),
                   epsilon=(man["config"]["epsilon"] / 255 if man["config"].get("epsilon") else 0.0),
                   activation=man["architecture"].get("activation", "relu"))
    (dst / "manifest.json").write_text(json.dumps(man_out, indent=2))
    model = load_model("netphys_vgg16", str(dst))
    val = StimulusSet.from_folder(DATA / "val", preprocess=Preprocess(resize=64, crop=64))
    man_out["val_top1"] = float(evaluate(model, val)["top1"])
    rob = robust_accuracy(model, val, [2 / 255, 4 / 255], steps=10, n=500, random_state=0)
    man_out["robust_top1"] = {"pgd10_eps2/255": rob[2 / 255], "pgd10_eps4/255": rob[4 / 255], "n": rob["n"]}
    tmp = dst / "manifest.json.tmp"
    tmp.write_text(json.dumps(man_out, indent=2))
    os.replace(tmp, dst / "manifest.json")
    return {"name": name, "val_top1": man_out["val_top1"], "val_top1_float32": man.get("val_top1"),
            **man_out["robust_top1"], "train_seconds": man.get("train_seconds")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="netphys-segregation-networks", help="training output folder")
    ap.add_argument("--only", nargs="*", default=None)
    a = ap.parse_args(argv)
    work = Path(a.work)
    rows = []
    torch.set_num_threads(2)
    for name, cmd in commands(work).items():
        if a.only and name not in a.only:
            continue
        if not (work / name / "manifest.json").is_file():
            subprocess.run(cmd, check=True)
        rows.append(package(name, work / name, cmd))
        print(json.dumps(rows[-1]), flush=True)
    res = ROOT / "bench" / "results" / "segregation_networks.json"
    old = json.loads(res.read_text()) if res.is_file() else {}
    old.update({r["name"]: r for r in rows})
    res.write_text(json.dumps(old, indent=2))


if __name__ == "__main__":
    sys.exit(main())
