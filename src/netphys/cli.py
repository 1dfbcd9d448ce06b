"""Command-line interface: thin wrappers that parse, call one library function and write files."""
from __future__ import annotations

import argparse
import logging
import sys


def _cmd_layers(a):
    from .models import list_layers, load_model

    m = load_model(a.model, a.weights, random_state=a.seed)
    df = list_layers(m)
    print(df.to_string(index=False))
    return 0


def _cmd_train(a):
    from .train import TrainConfig, train

    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, random_state=a.seed,
                      width=a.width, size=a.size, threads=a.threads, activation=a.activation,
                      epsilon=a.epsilon, attack_steps=a.attack_steps, init=a.init,
                      label_smoothing=a.label_smoothing)
    _, man = train(a.train_dir, a.val_dir, config=cfg, out=a.out, device=a.device, progress=not a.no_progress)
    print(f"validation top-1: {man.get('val_top1')}  ({man['train_seconds']:.0f} s); written to {a.out}")
    return 0


def _cmd_demo(a):
    from .experiments.demo import run_demo

    path = run_demo(a.out, random_state=a.seed, progress=not a.no_progress, quick=a.quick)
    print(f"report: {path}")
    return 0


def _parse_sets(items, func: str = "netphys run --set") -> dict:
    """``["key=value", ...]`` -> dict, values read as YAML (``bins=4``, ``layers=[conv1_1, fc6]``)."""
    import yaml

    from ._validation import param_error

    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise param_error("set", func, "key=value (e.g. --set bins=4)", item)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise param_error("set", func, "key=value with a YAML value", item, str(exc).replace("\n", " ")) from None
    return out


def _cmd_run(a):
    from .experiments.registry import experiment_names, get_experiment

    if a.list:
        return _cmd_list(a)
    if a.experiment is None:
        from ._validation import param_error

        raise param_error("experiment", "netphys run", "one of " + ", ".join(experiment_names()), None,
                          "name one, or see netphys run --list")
    overrides = _parse_sets(a.set)
    if a.print_config:
        import yaml

        from .experiments.config import config_to_dict, load_config

        cfg = load_config(get_experiment(a.experiment).Config, a.config, **overrides)
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    from .experiments.runner import run_experiment

    run = run_experiment(a.experiment, config=a.config, out=a.out, progress=not a.no_progress,
                         backend=a.backend, max_workers=a.workers, **overrides)
    done = ", ".join(f"{k}: {v['computed']} computed / {v['reused']} reused" for k, v in run.cache.items())
    print(f"report: {run.report}" + (f"  ({done})" if done else ""))
    return 0


def _cmd_list(a):
    from .experiments.registry import experiment_names, get_experiment

    for name in experiment_names():
        cls = get_experiment(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{name:28s} {doc[0] if doc else cls.title}")
    return 0


def _cmd_describe(a):
    from .experiments.runner import describe

    print(describe(a.experiment))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="netphys", description="In-silico neurophysiology of deep networks.")
    p.add_argument("--version", action="version", version=f"netphys {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the main job on the shipped default model and demo images")
    d.add_argument("--out", default="netphys-demo", help="output folder (default: netphys-demo)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quick", action="store_true", help="a small smoke run (200 images, 50 units)")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=_cmd_demo)

    l = sub.add_parser("layers", help="list the recordable layers of a model (aliases and module names)")
    l.add_argument("model", help="model name, e.g. vgg16, alexnet, netphys_vgg16, hed_vgg16")
    l.add_argument("--weights", default="random", help="random (default), default, imagenet or a file")
    l.add_argument("--seed", type=int, default=0)
    l.set_defaults(func=_cmd_layers)

    t = sub.add_parser("train", help="train the netphys default model on an image folder")
    t.add_argument("train_dir")
    t.add_argument("--val-dir", default=None)
    t.add_argument("--out", default="netphys-model")
    t.add_argument("--epochs", type=int, default=24)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=0.2)
    t.add_argument("--width", type=float, default=0.25)
    t.add_argument("--size", type=int, default=64)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--device", default="cpu")
    t.add_argument("--activation", default="relu", choices=("relu", "tanh"),
                   help="nonlinearity (tanh: the Tanh twin of the functional-segregation paper)")
    t.add_argument("--epsilon", type=float, default=0.0,
                   help="adversarial training: L-inf PGD radius in grey levels (2 = 2/255); 0 = clean")
    t.add_argument("--attack-steps", type=int, default=3, help="PGD steps per minibatch (default 3)")
    t.add_argument("--init", default=None,
                   help="fine-tune from these weights: 'default' (the shipped model) or a netphys train folder")
    t.add_argument("--label-smoothing", type=float, default=0.1)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_cmd_train)

    from .experiments.registry import experiment_names

    names = experiment_names()
    r = sub.add_parser("run", help="run an experiment from a config file (YAML/TOML/JSON)")
    r.add_argument("experiment", nargs="?", default=None, help="one of: " + ", ".join(names))
    r.add_argument("--list", action="store_true", help="list the experiments with one-line descriptions")
    r.add_argument("--config", default=None, help="config file; omitted: the paper defaults")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one config field (YAML value; repeatable), e.g. --set bins=4")
    r.add_argument("--print-config", action="store_true",
                   help="print the resolved config (defaults + file + --set) as YAML and exit")
    r.add_argument("--out", default=None, help="output folder (default: runs/<experiment>)")
    r.add_argument("--backend", default="serial", choices=("serial", "process", "ray"),
                   help="executor for independent pieces (results identical to serial)")
    r.add_argument("--workers", type=int, default=None, help="worker processes for --backend process/ray")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=_cmd_run)

    ls = sub.add_parser("list", help="list the registered experiments")
    ls.set_defaults(func=_cmd_list)
    de = sub.add_parser("describe", help="show an experiment's config fields and their paper defaults")
    de.add_argument("experiment", help="one of: " + ", ".join(names))
    de.set_defaults(func=_cmd_describe)
    return p


def main(argv=None) -> int:
    from ._validation import NetphysError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except NetphysError as exc:
        print(f"netphys: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
