"""Checkpoints as directories of safetensors + JSON, written atomically, never pickled.

Layout of a checkpoint directory::

    config.json                  everything needed to rebuild the model: format_version, task,
                                 model (the model config), rig, normalizer, train config, ...
                                 plus "files": size and sha256 of every file below
    model.safetensors            the model's state_dict (training weights)
    ema.safetensors              EMA weights, when training kept them
    training_state.safetensors   tensors of the training state (optimizer moments, RNG states)
    training_state.json          the rest of it: optimizer param groups, LR scheduler, step,
                                 epoch, best metric, sampler position; tensors appear there as
                                 {"__tensor__": "<key in training_state.safetensors>"}

Only ``config.json`` and ``model.safetensors`` are needed for inference; the two
``training_state`` files exist in checkpoints meant for resuming.

:func:`save_checkpoint` builds the directory under a temporary name beside the target, fsyncs
every file, then renames it into place (an existing checkpoint is first renamed aside, then
removed once the new one is in place), so a crash leaves either the old or the new checkpoint,
never a mix. What a killed save leaves behind is tidied up: a ``.NAME.old-*`` copy of a checkpoint
that is missing is renamed back into place by :func:`load_checkpoint` (and :func:`recover_checkpoint`),
and :func:`clean_stale` removes ``.NAME.tmp-*`` folders of saves that died (the training loop calls it
when it resumes and when a run ends). :func:`load_checkpoint` checks file sizes and hashes, the format
version and, with ``expect``, that the checkpoint was trained for what the caller asks for::

    ckpt = load_checkpoint("runs/m2s/best", expect={"task": "m2s", "rig.spec": "builtin",
                                                    "model.input": "mouth2s"})
    model = M2S(M2SConfig.from_dict(dict(**ckpt.config["model"])))
    ckpt.load_into(model)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from thunder3d.errors import CheckpointError

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_TENSORS_FILE = "training_state.safetensors"
STATE_JSON_FILE = "training_state.json"

_TENSOR, _NDARRAY, _TUPLE, _ITEMS = "__tensor__", "__ndarray__", "__tuple__", "__items__"

# what save_checkpoint leaves beside NAME while it works: .NAME.tmp-XXXXXXXX (mkdtemp) while the
# folder is built, .NAME.old-XXXXXXXX (the previous NAME) between the two renames
_TMP = re.compile(r"^\.(?P<name>.+)\.tmp-[A-Za-z0-9_]+$")
_OLD = re.compile(r"^\.(?P<name>.+)\.old-[0-9a-f]+$")
_PROCESS_START = time.time()  # tmp folders older than this cannot be this process's saves
_WRITING: set[Path] = set()  # tmp folders this process's save_checkpoint calls are building
_WRITING_LOCK = threading.Lock()


# --------------------------------------------------------------------------- result
@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: the checkpoint directory.
        config: the parsed ``config.json``.
        state_dict: model weights (CPU tensors unless another ``map_location`` was given).
        ema_state_dict: EMA weights, or None.
        training_state: ``{"optimizer", "scheduler", "state"}`` decoded from the
            ``training_state`` files, or None for an inference-only checkpoint.
    """

    path: Path
    config: dict[str, Any]
    state_dict: dict[str, Tensor]
    ema_state_dict: dict[str, Tensor] | None = None
    training_state: dict[str, Any] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """A config value by dotted key (``"rig.spec"``), or ``default``."""
        found, value = _lookup(self.config, key)
        return value if found else default

    @property
    def task(self) -> str | None:
        return self.config.get("task")

    @property
    def step(self) -> int | None:
        """Optimizer steps done when saved (from the training state, else the config)."""
        if self.training_state is not None:
            return self.training_state.get("state", {}).get("step")
        return self.config.get("step")

    def weights(self, ema: bool | None = None) -> dict[str, Tensor]:
        """Weights for use: the EMA ones when present (``ema=None``) or asked for (``ema=True``)."""
        if ema is None:
            ema = self.ema_state_dict is not None
        if ema:
            if self.ema_state_dict is None:
                raise CheckpointError(f"checkpoint {self.path} has no EMA weights ({EMA_FILE})")
            return self.ema_state_dict
        return self.state_dict

    def load_into(self, model: nn.Module, *, ema: bool | None = None, strict: bool = True,
                  optional: Sequence[str] = ()) -> nn.Module:
        """Copy :meth:`weights` into ``model`` (unwrapping DDP); clear error on a layout mismatch.

        ``optional``: key prefixes the checkpoint may lack even when ``strict`` (those parameters
        keep the model's own initialisation).
        """
        model = getattr(model, "module", model)
        result = model.load_state_dict(self.weights(ema), strict=False)
        problems = []
        missing = [k for k in result.missing_keys if not k.startswith(tuple(optional))]
        if missing and strict:
            problems.append(f"missing {_few(missing)}")
        if result.unexpected_keys and strict:
            problems.append(f"unexpected {_few(result.unexpected_keys)}")
        if problems:
            raise CheckpointError(f"checkpoint {self.path} does not fit this model: "
                                  + "; ".join(problems) + " (was it built with another model config?)")
        return model


# --------------------------------------------------------------------------- saving
def save_checkpoint(path: str | os.PathLike, *, model: nn.Module | Mapping[str, Tensor],
                    config: Mapping[str, Any], optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, state: Mapping[str, Any] | None = None,
                    ema: Any = None, write_extra: Callable[[Path], None] | None = None) -> Path:
    """Write a checkpoint directory at ``path`` atomically (module docstring for the layout).

    Args:
        path: the directory to create or replace.
        model: a module (a DDP wrapper is unwrapped) or a state dict.
        config: JSON-serialisable; ``format_version`` and ``files`` are added.
        optimizer, scheduler: saved into the training state when given.
        state: other training state (step, epoch, best metric, RNG states, sampler position...):
            nested dicts/lists/tuples of JSON scalars, tensors and numpy arrays.
        ema: EMA weights: a state dict or an object with ``state_dict()``.
        write_extra: called with the temporary directory to add files of the caller's own.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    target = Path(path)
    if target.exists() and not (target.is_dir() and (target / CONFIG_FILE).is_file()):
        raise CheckpointError(f"{target} exists and is not a checkpoint: refusing to replace it (choose a new folder)")
    target.parent.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    for reserved in ("format_version", "files"):
        config.pop(reserved, None)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    key = tmp.resolve()
    with _WRITING_LOCK:
        _WRITING.add(key)
    try:
        files = [MODEL_FILE]
        _save_tensors(tmp / MODEL_FILE, _state_dict_of(model))
        if ema is not None:
            _save_tensors(tmp / EMA_FILE, dict(ema.state_dict() if hasattr(ema, "state_dict") else ema))
            files.append(EMA_FILE)
        if optimizer is not None or scheduler is not None or state is not None:
            tree = {"format_version": FORMAT_VERSION,
                    "optimizer": optimizer.state_dict() if optimizer is not None else None,
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "state": dict(state) if state is not None else {}}
            tensors: dict[str, Tensor] = {}
            encoded = _encode(tree, "", tensors)
            _save_tensors(tmp / STATE_TENSORS_FILE, tensors)
            _write_text(tmp / STATE_JSON_FILE, json.dumps(encoded, indent=1))
            files += [STATE_TENSORS_FILE, STATE_JSON_FILE]
        if write_extra is not None:
            write_extra(tmp)
        config = {"format_version": FORMAT_VERSION, **config,
                  "files": {name: _file_record(tmp / name) for name in files}}
        try:
            text = json.dumps(config, indent=2, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint config is not plain JSON ({exc})") from exc
        _write_text(tmp / CONFIG_FILE, text)  # written last: a config.json means a complete dir
        os.chmod(tmp, 0o777 & ~_umask())
        _fsync_dir(tmp)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        with _WRITING_LOCK:
            _WRITING.discard(key)
    return target


def resolve_run(path: str | Path) -> Path:
    """A checkpoint directory from a run folder (``best`` first, then ``last``) or itself.

    A ``best``/``last`` that an interrupted save left renamed aside is put back first
    (:func:`recover_checkpoint`)."""
    path = Path(path)
    if path.is_dir() and not (path / "config.json").is_file():
        for name in ("best", "last"):
            if not (path / name).exists():
                recover_checkpoint(path / name)
    if (path / "best" / CONFIG_FILE).is_file():
        return path / "best"
    if (path / "last" / CONFIG_FILE).is_file() and not (path / CONFIG_FILE).is_file():
        return path / "last"
    return path


def check_sampling(sampling: Mapping[str, Any] | None, where: str = "sampling") -> dict[str, Any]:
    """The sampling defaults of a talker config (``guidance``: a finite number, 1 without;
    ``steps``: an integer >= 1, when given), checked; else CheckpointError naming ``where``."""
    sampling = {"guidance": 1.0, **dict(sampling or {})}
    guidance, steps = sampling["guidance"], sampling.get("steps", 1)
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance):
        raise CheckpointError(f"{where}.guidance must be a finite number, got {guidance!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise CheckpointError(f"{where}.steps must be an integer >= 1, got {steps!r}")
    return sampling


def pack_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, ema: bool | None = None,
                    note: Mapping[str, Any] | None = None, sampling: Mapping[str, Any] | None = None,
                    half: bool = False) -> Path:
    """An inference-only copy of a checkpoint (or of a run folder's ``best/``, else ``last/``):
    ``dst/config.json`` + ``dst/model.safetensors`` holding the weights for use (EMA when present, see
    :meth:`Checkpoint.weights`), no optimizer, no training state. The config records where it came from (``packed_from``: source, step,
    weights) plus ``note``, and ``sampling`` (e.g. ``{"guidance": 2.0, "steps": 5}``: defaults that samplers
    use when their caller gives none) is merged into its ``sampling``. Written atomically. Returns ``dst``."""
    guidance = check_sampling(sampling)["guidance"]
    src = resolve_run(src)  # a run folder: its best/, else its last/ (what load_talker reads)
    out = Path(dst).resolve()
    if out == src.resolve() or out in src.resolve().parents:
        raise CheckpointError(f"cannot pack {src} into {dst}: the output would replace its own source")
    if guidance < 0:
        raise CheckpointError(f"sampling guidance must be >= 0, got {guidance!r}")
    ckpt = load_checkpoint(src)
    config = dict(ckpt.config)
    if sampling:
        config["sampling"] = {**(config.get("sampling") or {}), **dict(sampling)}
    use_ema = ckpt.ema_state_dict is not None if ema is None else ema
    config["packed_from"] = {"source": str(Path(src)), "step": ckpt.step,
                             "weights": ("ema" if use_ema else "model") + (", float16" if half else ""),
                             **dict(note or {})}
    weights = ckpt.weights(use_ema)
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    return save_checkpoint(dst, model=weights, config=config)


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` onto ``target``; an existing ``target`` (a checkpoint) goes aside first, then is removed."""
    aside = None
    if target.exists():
        aside = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except BaseException:
        if aside is not None:
            os.rename(aside, target)
        raise
    _fsync_dir(target.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _state_dict_of(model: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    if isinstance(model, nn.Module):
        return getattr(model, "module", model).state_dict()
    return dict(model)


def _save_tensors(path: Path, tensors: Mapping[str, Tensor]) -> None:
    from safetensors.torch import save_file

    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        if not isinstance(tensor, Tensor):
            raise CheckpointError(f"{path.name}: {name!r} is a {type(tensor).__name__}, not a tensor")
        t = tensor.detach().cpu().contiguous()
        storage = t.untyped_storage()
        # safetensors refuses tensors sharing memory (tied weights, views): give those their own copy
        if storage.data_ptr() in seen or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    save_file(out, str(path), metadata={"format": "pt"})
    os.chmod(path, 0o666 & ~_umask())  # safetensors creates 0600 files: give the usual permissions
    _fsync_file(path)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _file_record(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- loading
def load_checkpoint(path: str | os.PathLike, *, expect: Mapping[str, Any] | None = None,
                    map_location: str | torch.device = "cpu", verify: bool = True,
                    training_state: bool = True) -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint`.

    Args:
        path: the directory (a path to its ``config.json`` or ``model.safetensors`` also works).
        expect: dotted config keys and the values the caller needs, e.g.
            ``{"task": "m2s", "rig.spec": "builtin", "model.input": "mouth2s"}``; dict values are
            compared leaf by leaf.
        map_location: device of the loaded tensors.
        verify: check each file's size and sha256 against ``config.json``.
        training_state: also read the training state when the checkpoint has one.

    Raises:
        CheckpointError: missing directory or file, truncated or corrupt file, invalid JSON,
            unsupported format version, or a mismatch with ``expect`` naming both values.
    """
    root = Path(path)
    if root.is_file() and root.name in (CONFIG_FILE, MODEL_FILE):
        root = root.parent
    if not root.is_dir():
        recover_checkpoint(root)  # a save killed between its two renames: put the old copy back
        if not root.is_dir():
            raise CheckpointError(_missing_message(root))
    config = _read_json(root / CONFIG_FILE, what="checkpoint config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{root / CONFIG_FILE}: expected a JSON object, got {type(config).__name__}")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {root} has format version {version!r}; this thunder3d "
                              f"reads version {FORMAT_VERSION} (re-save it with a matching version)")
    if expect:
        check_expected(config, expect, where=f"checkpoint {root}")
    records = config.get("files") or {}
    if verify:
        for name, record in records.items():
            _verify_file(root, name, record)
    state_dict = _load_tensors(root / MODEL_FILE, map_location)
    ema = _load_tensors(root / EMA_FILE, map_location) if (root / EMA_FILE).exists() \
        or EMA_FILE in records else None
    state = None
    if training_state and ((root / STATE_JSON_FILE).exists() or STATE_JSON_FILE in records):
        tensors = _load_tensors(root / STATE_TENSORS_FILE, map_location)
        encoded = _read_json(root / STATE_JSON_FILE, what="training state")
        try:
            state = _decode(encoded, tensors)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{root / STATE_JSON_FILE}: does not match "
                                  f"{STATE_TENSORS_FILE} ({exc})") from exc
        if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{root / STATE_JSON_FILE}: unsupported training state format")
    if verify:  # the checkpoint is proven whole: copies an interrupted save left aside are not needed
        _remove_all(_aside_copies(root))
    return Checkpoint(root, config, state_dict, ema, state)


def load_training_state(ckpt: Checkpoint, optimizer: torch.optim.Optimizer | None = None,
                        scheduler: Any = None) -> dict[str, Any]:
    """Restore ``optimizer`` and ``scheduler`` from ``ckpt``; return the rest of the state
    (``step``, ``epoch``, ``best_metric``, RNG states, sampler position, ... as saved)."""
    if ckpt.training_state is None:
        raise CheckpointError(f"checkpoint {ckpt.path} has no training state ({STATE_JSON_FILE}); "
                              "it can be used for inference or fine-tuning but not resumed")
    saved = ckpt.training_state
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is None:
            continue
        if saved.get(name) is None:
            raise CheckpointError(f"checkpoint {ckpt.path} holds no {name} state")
        try:
            obj.load_state_dict(saved[name])
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {ckpt.path}: cannot restore the {name} "
                                  f"({exc}); were the trainable parameters changed?") from exc
    return dict(saved.get("state") or {})


def _missing_message(root: Path) -> str:
    leftovers = _aside_copies(root)
    msg = f"no checkpoint at {root} (expected a directory with {CONFIG_FILE} and {MODEL_FILE})"
    if leftovers:
        msg += (f"; an interrupted save left an incomplete earlier copy at {leftovers[0]} (its files "
                f"do not match its {CONFIG_FILE}), which cannot be used")
    return msg


# --------------------------------------------------------------------------- interrupted saves
def _aside_copies(target: Path) -> list[Path]:
    """The ``.NAME.old-*`` folders beside ``target`` (``NAME`` = its name), newest save first."""
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return []
    found = [p for p in entries if (m := _OLD.match(p.name)) and m["name"] == target.name and p.is_dir()]
    return sorted(found, key=_saved_at, reverse=True)


def _saved_at(folder: Path) -> float:
    """When a checkpoint folder was written: its config.json's mtime (renames keep it)."""
    for p in (folder / CONFIG_FILE, folder):
        try:
            return p.stat().st_mtime
        except OSError:
            continue
    return 0.0


def _is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a config.json listing its files and every listed file has the
    size and sha256 recorded there."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        records = config.get("files") if isinstance(config, dict) else None
        if not isinstance(records, dict) or MODEL_FILE not in records:
            return False
        for name, record in records.items():
            _verify_file(folder, name, record)
    except (OSError, UnicodeDecodeError, ValueError, TypeError, CheckpointError):
        return False
    return True


def _remove_all(paths: Sequence[Path]) -> list[Path]:
    removed = []
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append(p)
    return removed


def recover_checkpoint(path: str | os.PathLike) -> bool:
    """Undo what a save killed between its two renames left beside checkpoint ``path``.

    :func:`save_checkpoint` renames an existing checkpoint aside to ``.NAME.old-*`` before it
    renames the new one into place. When ``path`` is missing and such a copy is complete (its
    ``config.json`` present and every file's size and hash as recorded), the newest complete copy is
    renamed back to ``path`` (with a warning) and the other copies are removed. When ``path`` exists
    and is complete, leftover copies are removed. Returns True when ``path`` was recovered.

    Raises:
        CheckpointError: a complete copy exists but cannot be renamed back (e.g. a read-only folder).
    """
    return _tidy(Path(path))[0]


def _tidy(target: Path) -> tuple[bool, list[Path]]:
    """:func:`recover_checkpoint`: ``(recovered, the copies removed)``."""
    copies = _aside_copies(target)
    if not copies:
        return False, []
    if target.exists():
        return False, (_remove_all(copies) if _is_complete(target) else [])
    for copy in copies:
        if not _is_complete(copy):
            continue
        try:
            os.rename(copy, target)
        except OSError as exc:
            raise CheckpointError(f"no checkpoint at {target}; an interrupted save left the previous one at "
                                  f"{copy}, and renaming it back failed ({exc.strerror or exc}): rename it "
                                  f"to {target} to use it") from None
        _fsync_dir(target.parent)
        warnings.warn(f"checkpoint {target} was missing (a save was interrupted between its two renames); "
                      f"recovered the previous copy from {copy.name}", stacklevel=3)
        return True, _remove_all([c for c in copies if c != copy])
    return False, []


def clean_stale(parent: str | os.PathLike, *, before: float | None = None) -> list[Path]:
    """Tidy what killed :func:`save_checkpoint` calls left in the folder ``parent``; returns what
    was removed.

    - ``.NAME.tmp-*`` folders (a save killed while it built ``NAME``) are removed, except those
      this process is writing and those changed at or after ``before`` (default: when this process
      started), so a save in progress in another process is left alone;
    - ``.NAME.old-*`` copies are handled by :func:`recover_checkpoint`: renamed back when ``NAME``
      is missing, removed when ``NAME`` is complete.

    The training loop calls it on the run folder when it resumes and when a run ends.
    """
    folder = Path(parent)
    cutoff = _PROCESS_START if before is None else float(before)
    try:
        entries = sorted(folder.iterdir())
    except OSError:  # no folder (yet), or unreadable: nothing to tidy
        return []
    with _WRITING_LOCK:
        writing = set(_WRITING)
    stale = [p for p in entries if _TMP.match(p.name) and p.is_dir() and not p.is_symlink()
             and p.resolve() not in writing and _last_change(p) < cutoff]
    removed = _remove_all(stale)
    names = sorted({m["name"] for p in entries if (m := _OLD.match(p.name)) and p.is_dir()})
    for name in names:
        removed += _tidy(folder / name)[1]
    return removed


def _last_change(folder: Path) -> float:
    """The newest mtime of ``folder`` and the files in it (a save in progress keeps touching them)."""
    try:
        paths = [folder, *folder.iterdir()]
    except OSError:
        paths = [folder]
    newest = 0.0
    for p in paths:
        try:
            newest = max(newest, p.stat().st_mtime)
        except OSError:
            continue
    return newest


def _read_json(path: Path, *, what: str) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{what} {path} is missing (incomplete or not a thunder3d checkpoint)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{what} {path} is not valid JSON ({exc})") from exc


def _verify_file(root: Path, name: str, record: Mapping[str, Any]) -> None:
    file = root / name
    if not file.is_file():
        raise CheckpointError(f"checkpoint {root} lacks {name} (listed in {CONFIG_FILE})")
    size = file.stat().st_size
    if "bytes" in record and size != record["bytes"]:
        raise CheckpointError(f"{file} has {size} bytes, {record['bytes']} were written: the file "
                              "is truncated or was replaced")
    if "sha256" in record and _sha256(file) != record["sha256"]:
        raise CheckpointError(f"{file} is corrupt (sha256 differs from the one recorded at save)")


def _load_tensors(path: Path, map_location: str | torch.device) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return load_file(str(path), device=str(map_location))
    except Exception as exc:  # safetensors raises its own error type for bad headers and sizes
        raise CheckpointError(f"{path} is truncated or corrupt ({exc})") from exc


# --------------------------------------------------------------------------- expectations
def check_expected(config: Mapping[str, Any], expect: Mapping[str, Any], *,
                   where: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` when ``config`` differs from ``expect`` (dotted keys)."""
    problems = config_differences(config, expect)
    if not problems:
        return
    if len(problems) == 1:
        raise CheckpointError(f"{where} was trained for {problems[0]}")
    raise CheckpointError(f"{where} differs from what was asked for: was trained for "
                          + "; for ".join(problems))


def config_differences(config: Mapping[str, Any], expect: Mapping[str, Any]) -> list[str]:
    """Readable differences between ``config`` and the dotted-key ``expect`` (empty if none)."""
    problems = []
    for key, wanted in _leaves(expect):
        found, saved = _lookup(config, key)
        if not found:
            problems.append(f"no {key!r} (the config lacks it) but {_show(wanted)} was asked for")
        elif _plain(saved) != _plain(wanted):
            problems.append(f"{_label(key)} {_show(saved)} but {_show(wanted)} was asked for")
    return problems


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_leaves(value, full + "."))
        else:
            out.append((full, value))
    return out


def _lookup(tree: Any, key: str) -> tuple[bool, Any]:
    if isinstance(tree, Mapping) and key in tree:  # keys that contain dots themselves
        return True, tree[key]
    node = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _label(key: str) -> str:
    """``rig.spec`` -> ``rig``, ``model.input`` -> ``input``, ``model.enc.depth`` -> itself."""
    parts = key.split(".")
    if len(parts) > 1 and parts[-1] in ("spec", "name", "type", "kind"):
        parts = parts[:-1]
    if len(parts) == 2 and parts[0] == "model":
        parts = parts[1:]
    return ".".join(parts)


def _plain(value: Any) -> Any:
    """JSON round trip, so tuples equal lists and numpy scalars equal floats."""
    try:
        return json.loads(json.dumps(value, default=_json_default))
    except (TypeError, ValueError):
        return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, Tensor)):
        return value.tolist()
    raise TypeError(type(value).__name__)


def _show(value: Any) -> str:
    text = repr(_plain(value))
    return text if len(text) <= 80 else text[:77] + "..."


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


# --------------------------------------------------------------------------- tree <-> JSON + tensors
def _encode(value: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    """Nested state -> JSON-able tree; tensors and arrays are moved into ``tensors``."""
    if isinstance(value, Tensor):
        name = _unique_name(path, tensors)
        tensors[name] = value
        return {_TENSOR: name}
    if isinstance(value, np.ndarray):
        name = _unique_name(path, tensors)
        data = value.astype(np.int64) if value.dtype in (np.uint32, np.uint16) else value
        tensors[name] = torch.from_numpy(np.ascontiguousarray(data))
        return {_NDARRAY: name, "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, f"{path}.{k}" if path else k, tensors) for k, v in value.items()}
        return {_ITEMS: [[_encode(k, f"{path}.key{i}", tensors),
                          _encode(v, f"{path}.{k}" if path else str(k), tensors)]
                         for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"training state {path!r}: cannot store a {type(value).__name__} "
                          "(use tensors, arrays, numbers, strings, lists and dicts)")


def _unique_name(path: str, tensors: Mapping[str, Tensor]) -> str:
    name, n = path or "value", 1
    while name in tensors:
        name, n = f"{path or 'value'}#{n}", n + 1
    return name


def _decode(value: Any, tensors: Mapping[str, Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if _TENSOR in value:
        return tensors[value[_TENSOR]]
    if _NDARRAY in value:
        return tensors[value[_NDARRAY]].numpy().astype(np.dtype(value["dtype"]))
    if _TUPLE in value:
        return tuple(_decode(v, tensors) for v in value[_TUPLE])
    if _ITEMS in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value[_ITEMS]}
    if "__float__" in value:
        return float(value["__float__"])
    return {k: _decode(v, tensors) for k, v in value.items()}


__all__ = [
    "Checkpoint", "FORMAT_VERSION", "check_expected", "check_sampling", "clean_stale", "config_differences",
    "load_checkpoint", "load_training_state", "pack_checkpoint", "recover_checkpoint", "resolve_run",
    "save_checkpoint",
]
