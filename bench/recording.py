"""Benchmark: the cost of recording over a bare forward pass, and the memory of a long recording.

Two modes.

Speed (default): for each configuration, ``record()`` and a bare forward pass of the same model on the
same images, interleaved and repeated; prints the best time of each, their ratio (goal <= 1.10x) and the
peak RSS. The images are decoded once beforehand (an in-memory StimulusSet), so that the ratio measures
the recording machinery (hooks, unit gathering, bookkeeping), not JPEG decoding shared by both.

    python bench/recording.py                                  # both configurations below
    python bench/recording.py --config small --n-images 1000   # netphys_vgg16, demo images, 64 px
    python bench/recording.py --config vgg16 --n-images 200    # torchvision VGG-16 (random), 224 px

Memory (``--memory-check``): streams N synthetic 224-px JPEGs, written once to a folder (default
``/tmp/netphys-bench-224``), from disk through VGG-16 with ``record()`` (16 layers x 250 units) and
reports the peak RSS (goal: 10,000 stimuli under 3 GB). Run it in its own process: ``ru_maxrss`` is a
high-water mark for the whole process.

    python bench/recording.py --memory-check --n-images 10000
    python bench/recording.py --memory-check --n-images 10000 --layers conv1_1   # streaming only, fast on CPU

Everything is seeded; nothing is downloaded (random weights unless the shipped default model exists).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def bare_forward(model, stimuli, batch_size, device):
    """(wall s, process CPU s) of a plain forward pass over the stimuli (same batching as record)."""
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for _, x in stimuli.batches(batch_size, device=device):
            model(x)
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def timed_record(model, stimuli, batch_size, device, units):
    """(wall s, process CPU s, recording) of ``record()`` on all conv and FC layers."""
    from netphys.recording import record

    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    rec = record(model, stimuli, units=units, batch_size=batch_size, device=device, allow_fewer=True,
                 random_state=0)
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, rec


def in_memory(stimuli):
    """Decode once: the same images as an in-memory set (preprocessing kept)."""
    from netphys.stimuli import StimulusSet

    return StimulusSet.from_arrays(stimuli.load_images(), stimuli.labels, class_names=stimuli.class_names,
                                   preprocess=stimuli.preprocess, name=stimuli.name)


def small_config(n_images):
    """netphys_vgg16 (shipped weights if present, else random) on the shipped demo images, 64 px."""
    from netphys.models import load_model
    from netphys.models.loading import default_model_dir
    from netphys.stimuli import demo_stimuli

    weights = "default" if (default_model_dir() / "manifest.json").is_file() else "random"
    model = load_model("netphys_vgg16", weights, random_state=0)
    st = demo_stimuli()
    if n_images < len(st):
        st = st.subsample(n_images, random_state=0)
    return f"netphys_vgg16 ({weights}) @64px", model, st


def vgg16_config(n_images, data_root=None):
    """torchvision VGG-16 with random weights at 224 px: Imagenette-224 images if present, else synthetic."""
    from netphys.models import load_model
    from netphys.stimuli import Preprocess, StimulusSet

    model = load_model("vgg16", "random", random_state=0)
    pre = Preprocess.imagenet(224)
    root = Path(data_root) if data_root else Path(__file__).resolve().parents[2] / "shared" / "data" / \
        "imagenette-224-val" / "val"
    if root.is_dir():
        st = StimulusSet.from_folder(root, preprocess=pre, n=n_images, random_state=0)
        src = "imagenette-224-val"
    else:
        rng = np.random.default_rng(0)
        st = StimulusSet.from_arrays(rng.integers(0, 256, (n_images, 224, 224, 3), dtype=np.uint8),
                                     preprocess=pre)
        src = "synthetic"
    return f"vgg16 (random) @224px, {src}", model, st


def speed(args) -> list[dict]:
    results = []
    configs = {"small": lambda: small_config(args.n_images or 1000),
               "vgg16": lambda: vgg16_config(args.n_images or 200, args.data_root)}
    names = list(configs) if args.config == "all" else [args.config]
    for key in names:
        label, model, st = configs[key]()
        device = args.device
        model.to(device)
        t0 = time.perf_counter()
        st = in_memory(st)
        decode = time.perf_counter() - t0
        # warm-up (allocator, oneDNN / cuDNN kernel selection) on one batch of each
        warm = st.take(np.arange(min(len(st), args.batch_size)))
        for _ in range(2):
            bare_forward(model, warm, args.batch_size, device)
            timed_record(model, warm, args.batch_size, device, args.units)
        t_bare, t_rec, c_bare, c_rec = [], [], [], []
        for _ in range(args.repeat):  # interleaved, so that a change in machine load hits both
            w, c = bare_forward(model, st, args.batch_size, device)
            t_bare.append(w)
            c_bare.append(c)
            w, c, rec = timed_record(model, st, args.batch_size, device, args.units)
            t_rec.append(w)
            c_rec.append(c)
        res = {"config": label, "n_images": len(st), "n_units": int(rec.sizes["unit"]),
               "layers": int(len(set(rec.layer.values))), "batch_size": args.batch_size, "device": str(device),
               "threads": torch.get_num_threads(),
               "bare_s": min(t_bare), "record_s": min(t_rec), "ratio": min(t_rec) / min(t_bare),
               "ratio_median": float(np.median(t_rec) / np.median(t_bare)),
               "cpu_ratio": min(c_rec) / min(c_bare),
               "bare_all_s": [round(t, 3) for t in t_bare], "record_all_s": [round(t, 3) for t in t_rec],
               "bare_cpu_s": [round(t, 3) for t in c_bare], "record_cpu_s": [round(t, 3) for t in c_rec],
               "decode_once_s": round(decode, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}
        results.append(res)
        print(f"{label}: {res['n_images']} images, {res['n_units']} units in {res['layers']} layers, "
              f"batch {args.batch_size} on {device}, {res['threads']} threads\n"
              f"  bare forward {res['bare_s']:.3f} s   record {res['record_s']:.3f} s   "
              f"ratio {res['ratio']:.3f}x (best of {args.repeat}; median {res['ratio_median']:.3f}x; "
              f"CPU-time ratio {res['cpu_ratio']:.3f}x)   peak RSS {res['peak_rss_mb']:.0f} MiB\n"
              f"  wall bare {res['bare_all_s']} record {res['record_all_s']}", flush=True)
        del model, st, rec
    return results


def write_jpegs(folder: Path, n: int, size: int = 224, seed: int = 0) -> Path:
    """``n`` synthetic smooth-noise JPEGs (``folder/synthetic/NNNNN.jpg``), written once and re-used."""
    from PIL import Image

    cls = folder / "synthetic"
    cls.mkdir(parents=True, exist_ok=True)
    have = len(list(cls.glob("*.jpg")))
    if have >= n:
        return folder
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for i in range(have, n):
        low = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        im = Image.fromarray(low).resize((size, size), Image.BILINEAR)
        im.save(cls / f"{i:05d}.jpg", quality=85)
    print(f"wrote {n - have} JPEGs to {cls} in {time.perf_counter() - t0:.1f} s", flush=True)
    return folder


def memory_check(args) -> dict:
    from netphys.models import load_model
    from netphys.recording import record
    from netphys.stimuli import Preprocess, StimulusSet

    n = args.n_images or 10000
    folder = write_jpegs(Path(args.folder), n)
    rss_start = peak_rss_mb()
    st = StimulusSet.from_folder(folder, preprocess=Preprocess.imagenet(224))
    st = st.take(np.arange(n))
    model = load_model("vgg16", "random", random_state=0)
    rss_model = peak_rss_mb()
    t0 = time.perf_counter()
    layers = args.layers.split(",") if args.layers else None
    rec = record(model, st, layers, units=args.units, batch_size=args.batch_size, device=args.device,
                 allow_fewer=True, progress=args.progress)
    seconds = time.perf_counter() - t0
    res = {"mode": "memory-check", "model": "vgg16 (random) @224px", "n_images": n,
           "layers": args.layers or "all conv + FC",
           "n_units": int(rec.sizes["unit"]), "batch_size": args.batch_size, "device": str(args.device),
           "seconds": round(seconds, 1), "images_per_s": round(n / seconds, 1),
           "recording_mb": round(rec.nbytes / 2**20, 1), "rss_before_model_mb": round(rss_start, 1),
           "rss_after_model_mb": round(rss_model, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
           "goal_mb": 3 * 1024}
    res["ok"] = res["peak_rss_mb"] < res["goal_mb"]
    print(f"memory check: {n} JPEGs at 224 px streamed through VGG-16 ({res['layers']}), {res['n_units']} "
          f"units, batch "
          f"{args.batch_size}: {seconds:.1f} s ({res['images_per_s']} img/s); recording {res['recording_mb']} MiB; "
          f"peak RSS {res['peak_rss_mb']:.0f} MiB (after loading the model {rss_model:.0f} MiB; goal < 3072 MiB: "
          f"{'OK' if res['ok'] else 'OVER'})", flush=True)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=["all", "small", "vgg16"], default="all")
    p.add_argument("--n-images", type=int, default=None,
                   help="images per configuration (default: small 1000, vgg16 200, memory check 10000)")
    p.add_argument("--units", type=int, default=250, help="units per layer (all 16 conv + FC layers)")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 (speed), 32 (memory check)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--data-root", default=None, help="folder of 224-px images for the vgg16 configuration")
    p.add_argument("--memory-check", action="store_true")
    p.add_argument("--folder", default="/tmp/netphys-bench-224", help="where the memory check's JPEGs live")
    p.add_argument("--layers", default=None,
                   help="memory check: comma-separated layers (default all conv + FC; 'conv1_1,conv1_2' holds "
                        "VGG-16's two largest activations at once and stops the forward pass there)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch_size is None:
        args.batch_size = 32 if args.memory_check else 64
    import netphys

    print(f"netphys {netphys.__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads", flush=True)
    out = memory_check(args) if args.memory_check else speed(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
