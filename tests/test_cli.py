"""The command line as a whole: every option documented, defaults from the configs, old names hidden
but working, devices and full disks reported in one line before or without half-written output."""

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from thunder3d.audio.io import save_audio
from thunder3d.audio.tts import synthesize
from thunder3d.cli import build_parser, main
from thunder3d.cli.options import OLD_NAMES
from thunder3d.train.loop import TrainConfig


def parsers(parser=None, path=()):
    """``(command path, parser)`` of every command."""
    parser = parser or build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from parsers(sub, (*path, name))


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    wav = tmp_path_factory.mktemp("speech") / "speech.wav"
    save_audio(wav, synthesize("Bob made a map of Paris.", voice="en-us").wav)
    return wav


def test_every_option_has_help_without_markup():
    seen = 0
    for path, parser in parsers():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            seen += 1
            name = f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and len(action.help) > 3, f"{name} has no help"
            assert "``" not in action.help and ":class:" not in action.help, f"{name}: raw markup in its help"
        assert "``" not in (parser.description or "")
    assert seen > 100


def test_old_names_work_but_are_not_shown():
    for path, parser in parsers():
        text = parser.format_help()
        for old in OLD_NAMES:
            assert old not in text.replace("--output", ""), f"{' '.join(path)} shows {old}"
    args = build_parser().parse_args(["animate", "x.wav", "--out", "o", "--talker", "m", "--audio-scale", "2",
                                      "--cond-scale", "0.5"])
    assert (str(args.output), args.model, args.guidance, args.cond_guidance) == ("o", "m", 2.0, 0.5)
    args = build_parser().parse_args(["eval", "talker", "--checkpoint", "run", "--corpus", "c"])
    assert str(args.model) == "run"


def test_training_defaults_are_the_config_defaults():
    """One place for a default: the dataclass."""
    args = build_parser().parse_args(["train", "talker", "--corpus", "c", "-o", "run"])
    defaults = TrainConfig()
    for field in ("steps", "batch_size", "lr", "warmup_steps", "eval_every", "save_every", "ema_decay"):
        assert getattr(args, field) == getattr(defaults, field), field
    assert args.device == "auto" == defaults.device
    from thunder3d.train.talker import TalkerData

    from thunder3d.models.denoiser import DenoiserConfig
    from thunder3d.models.m2s import M2SConfig

    assert args.dim == DenoiserConfig(coeff_dim=1, audio_dim=1).conformer.dim
    m2s = build_parser().parse_args(["train", "m2s", "--corpus", "c", "-o", "run"])
    conformer = M2SConfig(input="exp2s", in_dim=1).conformer
    assert (m2s.dim, m2s.layers, m2s.heads, m2s.conv_kernel) == (conformer.dim, conformer.layers, conformer.heads,
                                                                 conformer.conv_kernel)
    data = TalkerData(corpus="c")
    for field in dataclasses.fields(TalkerData):
        if hasattr(args, field.name) and field.name not in ("corpus", "audio", "oversample"):
            assert getattr(args, field.name) == getattr(data, field.name), field.name


def test_one_name_per_concept():
    for path, parser in parsers():
        flags = {s for a in parser._actions for s in a.option_strings}
        assert not flags & {"--talker", "--checkpoint", "--audio-scale", "--cond-scale", "--out"} - OLD_NAMES
        if "--output" in flags:
            assert "-o" in flags, path
    assert ("sample",) not in dict(parsers())  # folded into animate


@pytest.mark.parametrize("device, message", [("foo", "unknown device 'foo'"), ("mps", "unknown device 'mps'"),
                                             ("cuda:7", "not available")])
@pytest.mark.parametrize("command", ["animate", "demo"])
def test_bad_device_is_one_line_before_any_work(command, device, message, speech, tmp_path, capsys):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    out = tmp_path / "out"
    args = [command, *([str(speech)] if command == "animate" else []), "-o", str(out), "--device", device]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()  # refused before any work


def test_auto_device_works(speech, tmp_path):
    assert main(["animate", str(speech), "-o", str(tmp_path), "--device", "auto", "--no-progress", "--steps", "2"]) == 0
    assert (tmp_path / "speech.npz").is_file()


def test_video_size_zero_is_refused_before_anything_is_written(speech, tmp_path, capsys):
    assert main(["animate", str(speech), "-o", str(tmp_path / "out"), "--format", "npz,mp4", "--size", "0"]) == 2
    assert "video size" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 kB filesystem (tmpfs); skipped where this process may not mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_is_one_line_and_leaves_no_partial_files(speech, tiny_disk):
    out = tiny_disk / "out"
    done = subprocess.run([sys.executable, "-m", "thunder3d", "animate", str(speech), "-o", str(out), "--format",
                           "npz,glb,obj", "--no-progress", "--steps", "2"], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("thunder3d: error: ") and "space" in lines[-1]
    assert "Traceback" not in done.stderr
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers


def test_usage_errors_name_the_command_and_the_new_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "m2s", "--corpus", "c", "-o", "run", "--bogus", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "thunder3d train m2s: error: unrecognized arguments: --bogus 1" in err
    with pytest.raises(SystemExit):
        main(["animate", "speech.wav"])
    assert "required: -o/--output\n" in capsys.readouterr().err  # not the hidden --out
    with pytest.raises(SystemExit):
        main(["sample", "speech.wav"])
    assert "thunder3d animate SPEECH -o FOLDER --format npz" in capsys.readouterr().err


def test_paths_of_the_wrong_kind_are_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for args in (["rig", "show", "-o", str(tmp_path)], ["rig", "show", "-o", str(tmp_path / "afile" / "x.png")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("thunder3d: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert main(["eval", "talker", "--ground-truth", "--corpus", str(tmp_path), "--clips", "-1"]) == 2
    assert ">= 0" in capsys.readouterr().err


def test_pack_never_replaces_what_is_not_a_checkpoint(tiny_talker, tmp_path, capsys):
    victim = tmp_path / "notes"
    victim.mkdir()
    (victim / "todo.txt").write_text("keep me")
    assert main(["pack", str(tiny_talker), "-o", str(victim)]) == 2
    assert "not a checkpoint" in capsys.readouterr().err and (victim / "todo.txt").read_text() == "keep me"
    copy = tmp_path / "run"
    import shutil

    shutil.copytree(tiny_talker, copy)
    assert main(["pack", str(copy), "-o", str(copy)]) == 2 and (copy / "best" / "model.safetensors").is_file()
    packed = tmp_path / "packed"
    assert main(["pack", str(copy), "-o", str(packed)]) == 0
    assert main(["pack", str(copy), "-o", str(packed)]) == 0  # a checkpoint may be replaced
    assert "best" in capsys.readouterr().out  # a run folder packs best/, what --model loads


def test_the_command_line_imports_no_heavy_module_it_does_not_need():
    """Every command pays for what ``import thunder3d.cli`` loads: no scipy.signal (a second), no speech
    recogniser or synthesiser, no TensorBoard."""
    code = ("import sys, thunder3d.cli; thunder3d.cli.build_parser(); heavy = ('scipy.signal', 'scipy.ndimage', "
            "'pocketsphinx', 'onnxruntime', 'tensorboard', 'espeakng_loader'); "
            "print([m for m in heavy if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize("collecting", [True, False])
def test_main_leaves_garbage_collection_as_it_found_it(collecting, capsys):
    """main() pauses the collector while the command modules import (a library caller's setting is kept)."""
    import gc

    (gc.enable if collecting else gc.disable)()
    try:
        assert main(["rig", "info", "builtin"]) == 0
        assert gc.isenabled() is collecting
    finally:
        gc.enable()
    assert "coefficients" in capsys.readouterr().out


def test_the_process_entry_point_exits_with_the_commands_code(tmp_path):
    """``python -m thunder3d`` (run(): main, then a quick exit) keeps main's exit codes and its output."""
    ok = subprocess.run([sys.executable, "-m", "thunder3d", "rig", "info", "builtin"], capture_output=True, text=True)
    assert ok.returncode == 0 and "coefficients" in ok.stdout and ok.stderr == ""
    (tmp_path / "afile").write_text("x")
    bad = subprocess.run([sys.executable, "-m", "thunder3d", "rig", "show", "-o", str(tmp_path)], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("thunder3d: error: ") and bad.stderr.count("\n") == 1
