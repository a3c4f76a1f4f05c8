"""The levers of the THUNDER study: label degradation, data fraction, the loss's ramp and mouth-only
gradient; and the listener at inference: guided sampling, re-ranking, the audit."""

import json

import numpy as np
import pytest
import torch

from test_talker import corpus, m2s_path, make_task, rig, save_tiny_m2s  # noqa: F401  (the tiny corpus, M2S and fixtures)
from thunder3d.audio.phones import PHONES
from thunder3d.cli import main
from thunder3d.data.dataset import ClipDataset
from thunder3d.data.degrade import DegradeConfig, degrade_motion, parse_degrade
from thunder3d.errors import DataError, ThunderError, TrainError
from thunder3d.models.guidance import ListenerGuide, listener_scores, mouth_coefficients
from thunder3d.rigs import ARKIT_NAMES
from thunder3d.train.talker import TalkerData

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- degradation
def ramp_track(T=100, C=4):
    return np.stack([np.linspace(0, 1, T) * (c + 1) for c in range(C)], axis=1).astype(np.float32)


def test_degradation_is_a_function_of_the_clip_id():
    x = np.random.default_rng(0).random((80, 5)).astype(np.float32)
    cfg = parse_degrade("video")
    a, b = degrade_motion(x, None, "clip_a", cfg), degrade_motion(x, None, "clip_a", cfg)
    assert a.shape == x.shape and a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.allclose(a, degrade_motion(x, None, "clip_b", cfg))  # another clip, other draws
    assert not np.allclose(a, degrade_motion(x, None, "clip_a", DegradeConfig(**{**cfg.to_dict(), "seed": 1})))


def test_lag_shifts_the_motion_by_at_most_its_frames():
    x = ramp_track()
    y = degrade_motion(x, None, "c", DegradeConfig(lag=2.0))
    shift = (x[50:60] - y[50:60]) / (x[1] - x[0])  # a linear ramp: the shift in frames, the same everywhere
    assert np.allclose(shift, shift[0, 0], atol=1e-4) and 0 < abs(shift[0, 0]) <= 2.0


def test_closure_degradation_weakens_bilabial_closures_only():
    T = 100
    x = np.zeros((T, 2), np.float32)
    x[40:43, 0] = 1.0  # a closing gesture on the bilabial frames
    x[70:73, 1] = 1.0  # the same gesture on a vowel
    phones = np.zeros(T, np.int64)
    phones[40:43] = PHONES.index("M")
    phones[70:73] = PHONES.index("AA")
    y = degrade_motion(x, phones, "c", DegradeConfig(closure=1.0))
    assert y[40:43, 0].max() < 0.5 * x[40:43, 0].max()
    assert np.array_equal(y[70:73, 1], x[70:73, 1])


def test_amplitude_and_smoothing_stay_in_range():
    x = np.random.default_rng(1).random((60, 3)).astype(np.float32)
    y = degrade_motion(x, None, "c", DegradeConfig(amplitude=0.2))
    gain = y / np.where(x == 0, 1, x)
    assert np.allclose(gain, gain[0, 0], atol=1e-5) and 0.8 <= gain[0, 0] <= 1.2
    s = degrade_motion(x, None, "c", DegradeConfig(smooth=2.0))
    assert np.abs(np.diff(s, axis=0)).mean() < 0.5 * np.abs(np.diff(x, axis=0)).mean()


@pytest.mark.parametrize("spec, match", [("lag=-1", ">= 0"), ("closure=2", "at most 1"), ("wobble=1", "KEY=VALUE"),
                                         ("lag=x", "not a number"), ("lag", "preset")])
def test_bad_degradations_are_refused_with_the_valid_keys(spec, match):
    with pytest.raises(DataError, match=match):
        parse_degrade(spec)


def test_presets_and_none():
    assert parse_degrade("none") is None and parse_degrade("") is None and parse_degrade("lag=0") is None
    assert parse_degrade("video,lag=1").lag == 1.0


def test_fractions_are_nested_subsets_and_degradation_reaches_training_motion(corpus):
    full = ClipDataset(corpus, "train", 2.0)
    ids = {f: set(ClipDataset(corpus, "train", 2.0, fraction=f).ids) for f in (0.5, 0.8)}
    assert ids[0.5] <= ids[0.8] <= set(full.ids)
    with pytest.raises(DataError, match="fraction"):
        ClipDataset(corpus, "train", 2.0, fraction=0.0)
    degraded = ClipDataset(corpus, "train", 2.0, degrade=DegradeConfig(amplitude=0.5, lag=2))
    assert not torch.allclose(degraded[0]["coeffs"], full[0]["coeffs"])
    assert torch.equal(degraded[0]["audio"], full[0]["audio"])  # the speech stays clean


# --------------------------------------------------------------------------- the loss's levers
def test_talker_data_checks_and_stores_the_levers(corpus):
    data = TalkerData(corpus=str(corpus), degrade="closure=0.5", train_fraction=0.5, m2s_ramp=10)
    assert data.degrade == {**DegradeConfig().to_dict(), "closure": 0.5}
    for bad in ({"m2s_coeffs": "eyes"}, {"m2s_ramp": -1}, {"train_fraction": 1.5}, {"degrade": "lag=-2"}):
        with pytest.raises(TrainError):
            TalkerData(corpus=str(corpus), **bad)
    task = make_task(corpus)
    stored = task.checkpoint_config()["data"]
    assert not {"m2s_ramp", "m2s_coeffs", "degrade", "train_fraction"} & set(stored)  # unset: not stored


def test_mouth_coefficients_of_the_builtin_head(rig):
    mouth = dict(zip(rig.coeff_names, mouth_coefficients(rig)))
    assert mouth["jawOpen"] and mouth["mouthClose"] and mouth["mouthPucker"]
    assert not mouth["eyeBlinkLeft"] and not mouth["browInnerUp"]


def test_the_ramp_scales_lambda_and_mouth_only_stops_other_gradients(corpus, m2s_path):
    task = make_task(corpus, m2s_path, m2s_ramp=10, m2s_coeffs="mouth", w_coeff=0.0, w_vertex=0.0, w_velocity=0.0)
    assert task.lambda_at(0) == 0.0 and task.lambda_at(5) == 0.5 and task.lambda_at(50) == 1.0
    assert task.lambda_at(-1) == 1.0  # evaluation: the full weight
    raw = torch.zeros(2, 50, len(ARKIT_NAMES), requires_grad=True)
    keep = task.mouth_mask
    heard = torch.where(keep, raw, raw.detach())
    batch = {"audio": torch.randn(2, 50 * 640) * 0.1, "mask": torch.ones(2, 50, dtype=torch.bool),
             "phones": torch.zeros(2, 50, dtype=torch.long)}
    logs = {}
    task.thunder_loss(heard, batch, None, logs).backward()
    eye = ARKIT_NAMES.index("eyeBlinkLeft")
    assert float(raw.grad[..., eye].abs().sum()) == 0.0
    assert float(raw.grad[..., ARKIT_NAMES.index("jawOpen")].abs().sum()) > 0


def test_train_talker_takes_the_levers_from_the_command_line(corpus, m2s_path, tmp_path):
    run = tmp_path / "run"
    args = ["train", "talker", "--corpus", str(corpus), "-o", str(run), "--steps", "2", "--batch-size", "2",
            "--dim", "16", "--layers", "1", "--heads", "2", "--window", "2", "--eval-every", "2", "--warmup", "1",
            "--eval-windows", "2", "--eval-steps", "2", "--audio-dim", "16", "--no-progress", "--m2s", str(m2s_path),
            "--lambda-m2s", "0.3", "--m2s-ramp", "1", "--m2s-coeffs", "mouth", "--degrade", "video",
            "--train-fraction", "0.9"]
    assert main(args) == 0
    data = json.loads((run / "last" / "config.json").read_text())["data"]
    assert data["degrade"]["closure"] == 0.6 and data["m2s_coeffs"] == "mouth" and data["train_fraction"] == 0.9
    assert main(args + ["--resume"]) == 0  # the stored levers are the same on resume


def test_train_m2s_takes_a_degradation(corpus, tmp_path, capsys):
    run = tmp_path / "m2s"
    assert main(["train", "m2s", "--corpus", str(corpus), "-o", str(run), "--steps", "1", "--batch-size", "2",
                 "--dim", "16", "--layers", "1", "--heads", "2", "--window", "2", "--eval-every", "1",
                 "--no-progress", "--degrade", "lag=1,closure=0.5"]) == 0
    assert json.loads((run / "last" / "config.json").read_text())["data"]["degrade"]["lag"] == 1.0
    assert main(["train", "m2s", "--corpus", str(corpus), "-o", str(tmp_path / "bad"), "--steps", "1",
                 "--degrade", "lag=oops"]) == 2
    assert "not a number" in capsys.readouterr().err


# --------------------------------------------------------------------------- the listener at inference
def test_guidance_lowers_the_listeners_loss(rig, m2s_path):
    from thunder3d.checkpoints import load_m2s

    m2s, _ = load_m2s(m2s_path)
    C = rig.num_coeffs
    guide = ListenerGuide(m2s, rig, np.zeros(C), np.full(C, 0.2), strength=0.02)
    wav = torch.randn(50 * 640) * 0.1
    guide.set_speech(wav)
    x0 = torch.randn(2, 50, C) * 0.3
    before = guide.loss(x0 * 0.2)
    moved = guide(x0, torch.tensor([10, 10]))
    after = guide.loss(moved * 0.2)
    assert moved.shape == x0.shape and bool((after < before).all())
    eyes = ~torch.as_tensor(mouth_coefficients(rig))
    assert torch.equal(moved[..., eyes], x0[..., eyes])  # only the mouth coefficients move
    off = ListenerGuide(m2s, rig, np.zeros(C), np.ones(C), strength=0.0)
    assert torch.equal(off(x0, torch.tensor([10, 10])), x0)


def test_listen_generate_reranks_and_guides(tiny_talker, rig):
    from thunder3d.checkpoints import load_m2s, load_talker
    from thunder3d.inference.listening import listen_generate
    from thunder3d.inference.sampling import generate

    model, trig, _, _ = load_talker(tiny_talker)
    path = save_tiny_m2s(tiny_talker.parent / "m2s_for_listening", trig)
    m2s, _ = load_m2s(path)
    wav = np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32) * 0.1
    plain = generate(model, wav, samples=4, seed=3, steps=2)
    kept, scores = listen_generate(model, wav, m2s, trig, samples=2, seed=3, candidates=2, steps=2)
    assert kept.shape == (2, *plain.shape[1:]) and scores.shape == (4,)
    best = np.sort(np.argsort(scores)[:2])
    assert np.allclose(kept, plain[best], atol=1e-5)  # the kept ones are the best-heard draws, in seed order
    assert np.allclose(scores, listener_scores(m2s, trig, torch.from_numpy(plain), torch.from_numpy(wav)).numpy(),
                       atol=1e-5)
    guided, none = listen_generate(model, wav, m2s, trig, samples=1, seed=3, strength=0.3, steps=2)
    assert none is None and not np.allclose(guided, plain[:1])
    again, _ = listen_generate(model, wav, m2s, trig, samples=1, seed=3, strength=0.3, steps=2)
    assert np.array_equal(guided, again)  # the same seed, the same output
    with pytest.raises(ThunderError, match="candidates"):
        listen_generate(model, wav, m2s, trig, candidates=0)
    with pytest.raises(ThunderError, match="strength"):
        listen_generate(model, wav, m2s, trig, strength=-1.0)


# --------------------------------------------------------------------------- audit
def audit_case(tmp_path, corpus):
    """A clip of the (espeak) tiny corpus as a speech file with its transcript beside it."""
    from thunder3d.audio.io import save_audio
    from thunder3d.data.clip import load_clip

    clip = load_clip(corpus, _split_ids(corpus, "train")[0])
    speech = tmp_path / "speech.wav"
    save_audio(speech, clip.audio)
    (tmp_path / "speech.txt").write_text(clip.text + "\n")
    return clip, speech


def test_audit_scores_a_shifted_and_a_still_track_below_the_true_one(tmp_path, rig):
    """A real clip of the synthetic corpus (aligned phones known), its ground-truth motion, the same
    motion 240 ms late and a still face, judged with the shipped listener (which never heard this voice:
    the tiny corpus is made here)."""
    from thunder3d.data.synth import synthesize_corpus
    from thunder3d.data.clip import load_clip
    from thunder3d.eval.audit import audit_track
    from thunder3d.checkpoints import load_listener

    root = tmp_path / "corpus"
    synthesize_corpus(root, hours=0.01, seed=11, workers=1, progress=False, max_clips=2)
    listener, lrig = load_listener("builtin")
    ids = [c for split in ("train", "val", "test") for c in _split_ids(root, split)]
    assert ids
    for cid in ids:
        clip = load_clip(root, cid)
        gt = clip.coeffs
        late = np.concatenate([np.repeat(gt[:1], 6, axis=0), gt[:-6]])
        reports = {name: audit_track(lrig, x, clip.audio, clip.phones, listener=listener)
                   for name, x in (("true", gt), ("late", late), ("still", np.zeros_like(gt)))}
        assert reports["true"]["score"] > reports["late"]["score"] > 0
        assert reports["true"]["score"] > reports["still"]["score"]
        assert 0 <= reports["still"]["score"] <= 1 and reports["still"]["terms"]["listener"] == 0.0


def _split_ids(root, split):
    from thunder3d.data.clip import corpus_clips

    try:
        return corpus_clips(root, split)
    except DataError:
        return []


def test_audit_command_writes_a_report_and_refuses_bad_tracks(tmp_path, tiny_corpus, capsys):
    clip, speech = audit_case(tmp_path, tiny_corpus)
    track = tmp_path / "track.npz"
    np.savez(track, coeffs=clip.coeffs, coeff_names=np.array(clip.coeff_names), fps=25.0)
    out = tmp_path / "audit.json"
    assert main(["audit", str(speech), str(track), "--json", str(out), "--listener", "none"]) == 0
    report = json.loads(out.read_text())
    assert 0.5 < report["score"] <= 1 and report["phones_from"] == "alignment" and report["listener"] is None
    assert report["checks"]["bilabial"]["segments"] + report["checks"]["open"]["segments"] > 0
    np.savez(tmp_path / "track50.npz", coeffs=clip.coeffs[::1].repeat(2, axis=0), fps=50.0)  # another rate
    assert main(["audit", str(speech), str(tmp_path / "track50.npz"), "--listener", "none",
                 "--json", str(tmp_path / "a50.json")]) == 0
    assert json.loads((tmp_path / "a50.json").read_text())["frames"] == len(clip.coeffs)
    assert "score" in capsys.readouterr().out
    np.savez(tmp_path / "short.npz", coeffs=clip.coeffs[:5])
    assert main(["audit", str(speech), str(tmp_path / "short.npz"), "--listener", "none"]) == 2
    assert "do not belong together" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert main(["audit", str(speech), str(tmp_path / "bad.npz")]) == 2
    assert "not a readable npz" in capsys.readouterr().err
    assert main(["audit", str(speech), str(tmp_path / "track.txt")]) == 2
    assert "track not found" in capsys.readouterr().err


def test_pack_half_stores_float16_that_loads_as_float32(m2s_path, tmp_path):
    from safetensors.torch import load_file

    from thunder3d.checkpoints import load_m2s

    out = tmp_path / "half"
    assert main(["pack", str(m2s_path), "-o", str(out), "--half"]) == 0
    assert all(v.dtype == torch.float16 for v in load_file(out / "model.safetensors").values() if v.is_floating_point())
    full, _ = load_m2s(m2s_path)
    half, _ = load_m2s(out)
    assert next(half.parameters()).dtype == torch.float32
    x = torch.randn(1, 20, full.cfg.in_dim)
    assert torch.allclose(full(x).mel, half(x).mel, atol=1e-2)
    assert json.loads((out / "config.json").read_text())["packed_from"]["weights"].endswith("float16")


def test_the_shipped_listener_is_packaged_and_hears_the_builtin_rig(tmp_path):
    from thunder3d.checkpoints import LISTENER_DIR, load_listener
    from thunder3d.errors import CheckpointError

    m2s, rig = load_listener("builtin")
    assert (LISTENER_DIR / "config.json").is_file() and rig.spec == "builtin" and m2s.cfg.input == "mouth2s"
    with pytest.raises(CheckpointError):
        load_listener(tmp_path / "no_such_run")
