"""The Animator API on a tiny talker trained here: shapes, seeds, silence, bad input, rigs, long audio."""

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

import thunder3d
from thunder3d.audio.io import load_audio, save_audio
from thunder3d.audio.tts import synthesize
from thunder3d.cli import main
from thunder3d.constants import SAMPLES_PER_FRAME
from thunder3d.errors import AudioError, CheckpointError, RigError, ThunderError
from thunder3d.inference import animator as animator_module
from thunder3d.inference.animator import Animation, Animator
from thunder3d.rigs import ARKIT_NAMES

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tiny_talker):
    return tiny_talker


@pytest.fixture(scope="module")
def animator(run):
    return Animator.from_pretrained(run)


@pytest.fixture(scope="module")
def speech():
    return synthesize("Bob made a map of Paris.", voice="en-us").wav  # ~1.3 s at 16 kHz


def test_animate_gives_samples_in_the_rig_layout(animator, speech):
    anims = animator.animate(speech, samples=2, emotion="Happy", intensity="2", steps=3, seed=4)
    frames = math.ceil(speech.size / SAMPLES_PER_FRAME)
    assert len(anims) == 2 and all(isinstance(a, Animation) for a in anims)
    for i, anim in enumerate(anims):
        assert anim.coeffs.shape == (frames, 52) and anim.coeffs.dtype == np.float32
        assert anim.fps == 25 and anim.names == ARKIT_NAMES == animator.names
        assert anim.rig is animator.rig and anim.audio is anims[0].audio
        assert (anim.sample, anim.seed, anim.emotion, anim.intensity) == (i, 4 + i, "happy", 2)
        assert anim.duration == pytest.approx(frames / 25)
    np.testing.assert_array_equal(anims[0].audio, speech)
    verts = anims[0].vertices()
    assert verts.shape == (frames, animator.rig.num_vertices, 3)
    chunks = list(anims[0].iter_vertices(chunk=10))
    assert [len(c) for c in chunks] == [10] * (frames // 10) + ([frames % 10] if frames % 10 else [])
    np.testing.assert_allclose(np.concatenate(chunks), verts, atol=1e-5)


def test_same_seed_same_animation_other_seeds_differ(animator, speech):
    a = animator.animate(speech, samples=2, steps=3, seed=1)
    b = animator.animate(speech, samples=2, steps=3, seed=1)
    c = animator.animate(speech, samples=1, steps=3, seed=2)
    assert not animator.deterministic
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.coeffs, y.coeffs)
    assert np.abs(a[0].coeffs - a[1].coeffs).max() > 1e-3  # samples differ
    np.testing.assert_allclose(c[0].coeffs, a[1].coeffs, atol=1e-5)  # sample i is seed + i


def test_a_file_an_array_and_a_rate_pair_give_the_same_animation(animator, speech, tmp_path, capsys):
    path = tmp_path / "speech.wav"
    save_audio(path, speech)
    from_file = animator.animate(path, steps=2, progress=True)[0]
    assert "animating speech.wav" in capsys.readouterr().err  # the progress bar
    assert from_file.source == str(path)
    wav = load_audio(path)
    np.testing.assert_array_equal(from_file.coeffs, animator.animate(wav, steps=2)[0].coeffs)
    np.testing.assert_array_equal(from_file.coeffs, animator.animate((wav, 16000), steps=2)[0].coeffs)


def test_silence_gives_a_still_face_at_rest(animator):
    for wav in (np.zeros(16000, np.float32),
                np.random.default_rng(0).normal(0, 1e-5, 16000).astype(np.float32)):  # -100 dBFS
        with pytest.warns(UserWarning, match="silent"):
            anims = animator.animate(wav, samples=2, emotion="angry", intensity=3)
        for anim in anims:
            assert anim.coeffs.shape == (25, 52)
            assert not anim.coeffs.any()  # exactly the rest pose, not model noise


def test_bad_input_is_refused_with_the_valid_choices(animator, speech, tmp_path):
    with pytest.raises(ThunderError, match="unknown emotion 'furious'; valid: neutral, happy.*contempt"):
        animator.animate(speech, emotion="furious")
    with pytest.raises(ThunderError, match="valid: 1, 2, 3"):
        animator.animate(speech, intensity=7)
    with pytest.raises(ThunderError, match="unknown style 'nobody'; valid: spk"):
        animator.animate(speech, style="nobody")
    for kwargs in ({"samples": 0}, {"steps": 0}, {"guidance": float("nan")}):
        with pytest.raises(ThunderError):
            animator.animate(speech, **kwargs)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    for bad, match in ((tmp_path / "missing.wav", "not found"), (corrupt, "cannot read"),
                       (np.full(16000, np.nan, np.float32), "non-finite"),
                       (np.ones(100, np.float32) * 0.1, "at least 40 ms")):
        with pytest.raises(AudioError, match=match):
            animator.animate(bad)
    with pytest.raises(ThunderError, match=r"\[N\]"):
        animator.animate(np.zeros((2, 16000), np.float32))


def test_a_model_producing_nan_is_an_error(animator, speech):
    import copy

    import torch

    broken = copy.deepcopy(animator.model)
    with torch.no_grad():
        for weight in broken.parameters():
            weight.fill_(float("nan"))  # what a diverged checkpoint holds
    nan_animator = Animator(broken, animator.trained_rig, animator.normalizer, animator.config)
    with pytest.raises(ThunderError, match="non-finite"):
        nan_animator.animate(speech, steps=2)


def test_from_pretrained_builtin_names_and_paths(run, monkeypatch, tmp_path):
    monkeypatch.setattr(animator_module, "PRETRAINED_DIR", tmp_path / "not-installed")
    with pytest.raises(CheckpointError, match="built-in model is not installed"):
        Animator.from_pretrained()
    monkeypatch.setattr(animator_module, "PRETRAINED_DIR", run / "best")
    for name in (None, "builtin", "thunder3d-builtin"):
        assert Animator.from_pretrained(name).path == run / "best"
    with pytest.raises(CheckpointError, match="no model 'no-such-model'"):
        Animator.from_pretrained("no-such-model")
    assert thunder3d.Animator is Animator and thunder3d.Animation is Animation


def test_a_rig_the_model_cannot_drive_is_refused(run, tmp_path):
    from test_flame import synthetic_flame, write_npz

    flame = write_npz(tmp_path / "flame.npz", synthetic_flame())
    with pytest.raises(RigError, match="incompatible with the checkpoint"):
        Animator.from_pretrained(run, rig=f"flame:{flame}")


def test_drives_the_ict_rig(run, animator, speech, ict_rig):
    on_ict = Animator.from_pretrained(run, rig=ict_rig)  # same ARKit layout, another face
    assert on_ict.rig is ict_rig and on_ict.trained_rig.spec == "builtin"
    ict = on_ict.animate(speech, steps=2, seed=3)[0]
    np.testing.assert_array_equal(ict.coeffs, animator.animate(speech, steps=2, seed=3)[0].coeffs)
    assert ict.rig is ict_rig and ict.vertices(0, 2).shape == (2, ict_rig.num_vertices, 3)


def test_retargets_by_arkit_name_to_a_rig_with_its_own_names(run, animator, speech, tmp_path):
    from test_blendshapes import face_mesh, face_shapes, quiet_load, write_obj_folder

    vertices, faces = face_mesh()
    folder = write_obj_folder(tmp_path / "shapes", vertices, faces, face_shapes(vertices))
    rig = quiet_load(folder, names="native")  # JawOpen, browInnerUp_L, mouthSmile_L, viseme_aa, ...
    with pytest.warns(UserWarning, match="viseme_aa"):  # no ARKit shape feeds it
        native = Animator.from_pretrained(run, rig=rig)
    assert native.names == rig.coeff_names
    got = native.animate(speech, steps=2, seed=3)[0]
    ref = animator.animate(speech, steps=2, seed=3)[0]
    column = {name: got.coeffs[:, i] for i, name in enumerate(got.names)}
    for name, arkit in (("JawOpen", "jawOpen"), ("mouthSmile_L", "mouthSmileLeft"),
                        ("browInnerUp_R", "browInnerUp"), ("eyeBlink.R", "eyeBlinkRight")):
        np.testing.assert_allclose(column[name], ref.coeffs[:, ARKIT_NAMES.index(arkit)], atol=1e-6)
    assert not column["viseme_aa"].any()


@pytest.mark.slow
def test_long_audio_animates_with_bounded_memory(run, tmp_path):
    """Two minutes of 44.1 kHz stereo speech in a fresh process: every frame animated, peak RSS far
    below what holding the decoded file several times over would need."""
    phrase = synthesize("The quick brown fox jumps over the lazy dog.", voice="en-us").wav
    from scipy.signal import resample_poly

    phrase = resample_poly(phrase, 441, 160).astype(np.float32)
    seconds, rate = 120, 44100
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", rate, 2, "PCM_16") as f:
        for _ in range(math.ceil(seconds * rate / phrase.size)):
            f.write(np.stack([phrase, phrase], 1))
    frames = math.ceil(sf.info(path).frames * 16000 / rate / SAMPLES_PER_FRAME)
    script = textwrap.dedent(f"""
        import re, torch
        torch.set_num_threads(1)
        from thunder3d.inference import Animator
        [anim] = Animator.from_pretrained({str(run)!r}).animate({str(path)!r}, steps=2)
        # VmHWM: this process's own peak (ru_maxrss of a forked child counts the parent's pages)
        status = open("/proc/self/status").read()
        print(anim.num_frames, int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    got_frames, peak_mb = map(int, out.stdout.split())
    assert got_frames == frames
    assert peak_mb < 1500, f"peak RSS {peak_mb} MB"


def test_packed_checkpoint_animates_like_its_run(run, tmp_path, capsys):
    """``thunder3d pack`` keeps the weights for use (EMA) and drops the training state; the packed
    model samples exactly what the run's last checkpoint samples."""
    from thunder3d.checkpoints import load_checkpoint

    packed = tmp_path / "packed"
    assert main(["pack", str(run), "-o", str(packed)]) == 0
    assert sorted(p.name for p in packed.iterdir()) == ["config.json", "model.safetensors"]
    ckpt, source = load_checkpoint(packed), load_checkpoint(run / "last")
    assert ckpt.training_state is None and ckpt.config["packed_from"]["step"] == source.step
    for k, v in source.weights().items():
        assert torch.equal(ckpt.state_dict[k], v)
    wav = synthesize("Bob made a map.", voice="en-us").wav
    a = Animator.from_pretrained(packed).animate(wav, seed=1, steps=2)[0].coeffs
    b = Animator.from_pretrained(run / "last").animate(wav, seed=1, steps=2)[0].coeffs
    np.testing.assert_array_equal(a, b)
    assert main(["pack", str(tmp_path / "nope"), "-o", str(tmp_path / "x")]) == 2


def test_packed_guidance_is_the_default(run, tmp_path):
    """``pack --guidance`` stores the audio guidance scale the model is meant to be sampled with;
    the Animator and ``generate`` use it unless told otherwise."""
    from thunder3d.checkpoints import load_talker
    from thunder3d.inference import generate

    packed = tmp_path / "guided"
    assert main(["pack", str(run), "-o", str(packed), "--guidance", "2.5"]) == 0
    animator = Animator.from_pretrained(packed)
    assert animator.default_guidance == 2.5 and Animator.from_pretrained(run).default_guidance == 1.0
    wav = synthesize("Bob made a map.", voice="en-us").wav
    default = animator.animate(wav, seed=1, steps=2)[0].coeffs
    np.testing.assert_array_equal(default, animator.animate(wav, seed=1, steps=2, guidance=2.5)[0].coeffs)
    assert not np.array_equal(default, animator.animate(wav, seed=1, steps=2, guidance=1.0)[0].coeffs)
    model = load_talker(packed)[0]  # torch; the Animator runs the denoiser with onnxruntime
    np.testing.assert_allclose(generate(model, wav, seed=1, steps=2)[0], default, atol=1e-5)
    assert main(["pack", str(run), "-o", str(tmp_path / "bad"), "--guidance", "nan"]) == 2


def test_packed_steps_are_the_default(run, tmp_path):
    """``pack --steps`` stores the DDIM step count the model is meant to be sampled with (10 without)."""
    from thunder3d.checkpoints import load_talker
    from thunder3d.inference import generate

    packed = tmp_path / "fast"
    assert main(["pack", str(run), "-o", str(packed), "--steps", "3"]) == 0
    animator = Animator.from_pretrained(packed)
    assert animator.default_steps == 3 and Animator.from_pretrained(run).default_steps == 10
    wav = synthesize("Bob made a map.", voice="en-us").wav
    default = animator.animate(wav, seed=1)[0].coeffs
    np.testing.assert_array_equal(default, animator.animate(wav, seed=1, steps=3)[0].coeffs)
    assert not np.array_equal(default, animator.animate(wav, seed=1, steps=2)[0].coeffs)
    np.testing.assert_allclose(generate(load_talker(packed)[0], wav, seed=1)[0], default, atol=1e-5)
    for bad in ("0", "-2"):
        assert main(["pack", str(run), "-o", str(tmp_path / "bad"), "--steps", bad]) == 2
    assert not (tmp_path / "bad").exists()
