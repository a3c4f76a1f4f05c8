"""The talker task at tiny size: losses, the THUNDER gradient path, training, resume, loading."""

import itertools
import json

import numpy as np
import pytest
import torch

from thunder3d.audio.phones import Phone
from thunder3d.data.clip import Clip, manifest_entry, save_clip, write_manifest
from thunder3d.data.dataset import collate
from thunder3d.errors import CheckpointError
from thunder3d.models.m2s import M2S, M2SConfig
from thunder3d.rigs import ARKIT_NAMES, load_rig
from thunder3d.checkpoints import save_checkpoint
from thunder3d.train.loop import TrainConfig, TrainError, train
from thunder3d.checkpoints import load_talker
from thunder3d.models.talker import TalkerModel
from thunder3d.train.talker import TalkerData, TalkerTask, VertexLoss

TINY = {"dim": 16, "layers": 1, "heads": 2, "conv_kernel": 3, "dropout": 0.0}
TINY_AUDIO = {"kind": "mel", "out_dim": 16, "hidden": 16, "layers": 1}
PHONES = ("AA", "M", "IY", "SIL", "B", "OW")


def make_corpus(root, n_train=6, n_val=2, frames=60, seed=0):
    """Clips whose speech loudness follows jawOpen (so audio predicts the mouth)."""
    rng = np.random.default_rng(seed)
    jaw = ARKIT_NAMES.index("jawOpen")
    clips = []
    for k in range(n_train + n_val):
        x = np.arange(frames) / 25
        freq, phase = rng.uniform(0.5, 1.2, 52), rng.uniform(0, 6, 52)
        coeffs = (0.15 * (1 + np.sin(2 * np.pi * x[:, None] * freq + phase))).astype(np.float32)
        coeffs[:, jaw] = 0.5 * (1 + np.sin(2 * np.pi * x * (2 + freq[0]) + phase[0]))
        t = np.arange(frames * 640) / 16000
        audio = (np.repeat(coeffs[:, jaw], 640) * 0.3 * np.sin(2 * np.pi * 180 * t)
                 + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        cuts = np.linspace(0, frames / 25, 7)
        phones = [Phone(float(a), float(b), PHONES[(i + k) % 6]) for i, (a, b) in enumerate(itertools.pairwise(cuts))]
        clip = Clip(id=f"c{k}", audio=audio, coeffs=coeffs, coeff_names=ARKIT_NAMES, rig="builtin",
                    phones=phones, emotion=["happy", "sad", None][k % 3], intensity=[2, 1, None][k % 3],
                    style=f"spk{k % 2}", split="train" if k < n_train else "val")
        save_clip(root, clip, subtype="FLOAT")
        clips.append(clip)
    write_manifest(root, [manifest_entry(c) for c in clips])
    return root


def save_tiny_m2s(path, rig, seed=0, rig_config=None):
    torch.manual_seed(seed)
    cfg = M2SConfig.for_rig(rig, "mouth2s", dim=16, layers=1, heads=2)
    save_checkpoint(path, model=M2S(cfg), config={"task": "m2s", "model": cfg.to_dict(),
                                                  "rig": rig_config or rig.config()})
    return path


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rig():
    return load_rig("builtin")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("talker_corpus"))


@pytest.fixture(scope="module")
def m2s_path(tmp_path_factory, rig):
    return save_tiny_m2s(tmp_path_factory.mktemp("m2s") / "m2s", rig)


def make_task(corpus, m2s_path=None, **kw):
    data = {"corpus": str(corpus), "window_seconds": 2.0, "audio": TINY_AUDIO, "eval_steps": 3}
    if m2s_path is not None:
        data.update(m2s=str(m2s_path), lambda_m2s=1.0, phone_weight=0.1)
    data.update(kw)
    return TalkerTask(TalkerData(**data), model=TINY, diffusion={"num_train_timesteps": 100})


def batch_of(task, n=4):
    return collate([task.train_dataset()[i] for i in range(n)])


def seeded_loss(task, model, batch, seed=0):
    torch.manual_seed(seed)
    return task.loss(model, batch, 0)


@pytest.mark.parametrize("deterministic", [False, True])
def test_a_few_steps_reduce_the_loss(corpus, m2s_path, deterministic):
    task = make_task(corpus, m2s_path, deterministic=deterministic)
    torch.manual_seed(0)
    model = task.build_model()
    assert isinstance(model, TalkerModel) and model.deterministic == deterministic
    batch = batch_of(task)
    before, logs = seeded_loss(task, model, batch)
    before = float(before.detach())
    assert {"loss_coeff", "loss_vertex", "loss_velocity", "loss_m2s", "m2s_mel_l1", "loss_phone"} <= set(logs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(12):
        loss, _ = seeded_loss(task, model, batch, seed=step)  # the same noise levels every step
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, _ = seeded_loss(task, model, batch)
    assert float(after.detach()) < 0.8 * before


def test_thunder_loss_reaches_the_denoiser_not_the_m2s(corpus, m2s_path):
    task = make_task(corpus, m2s_path, w_coeff=0.0, w_vertex=0.0, w_velocity=0.0)
    torch.manual_seed(0)
    model = task.build_model()
    # the frozen M2S and the rig live outside the trained module
    assert not any(m is task.m2s or m is task.rig for m in model.modules())
    assert not any(p.requires_grad for p in task.m2s.parameters())
    batch = batch_of(task)
    loss, logs = seeded_loss(task, model, batch)
    assert torch.allclose(loss, logs["loss_m2s"] + 0.1 * logs["loss_phone"])
    loss.backward()
    grads = [p.grad for p in model.net.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in task.m2s.parameters())
    assert not task.m2s.training  # model.train() elsewhere never switches the M2S's dropout on
    # lambda scales the term (same seed: the same timesteps and noise)
    one, logs = seeded_loss(task, model, batch)
    task.data.lambda_m2s = 2.5
    more, _ = seeded_loss(task, model, batch)
    assert float(more.detach()) == pytest.approx(2.5 * float(one.detach()), rel=1e-5)
    task.data.lambda_m2s = 0.0
    none, logs0 = seeded_loss(task, model, batch)
    assert float(none.detach()) == 0.0 and "loss_m2s" not in logs0


def test_m2s_timestep_weighting(corpus, m2s_path):
    task = make_task(corpus, m2s_path, m2s_weighting="tmax", m2s_t_max=30)
    t = torch.tensor([0, 30, 31, 99])
    assert task.m2s_weights(t, 4, torch.device("cpu")).tolist() == [1.0, 1.0, 0.0, 0.0]
    task.data.m2s_weighting, task.data.m2s_t_max = "snr", 0
    w = task.m2s_weights(t, 4, torch.device("cpu"))
    assert 0.99 < w[0] <= 1 and bool((w[1:] < w[:-1]).all()) and w[3] < 0.01
    with pytest.raises(TrainError, match="valid: none, tmax, snr"):
        TalkerData(corpus=str(corpus), m2s_weighting="later")
    with pytest.raises(TrainError, match="needs an M2S"):
        TalkerData(corpus=str(corpus), lambda_m2s=1.0)


def test_m2s_rig_must_match(corpus, rig, tmp_path):
    other = save_tiny_m2s(tmp_path / "m2s_ict", rig, rig_config={"spec": "ict:/elsewhere.npz", "options": {}})
    with pytest.raises(CheckpointError, match="trained for rig 'ict:/elsewhere.npz', not 'builtin'"):
        make_task(corpus, other, rig="builtin")


def test_vertex_loss_matches_the_mesh(rig):
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, rig.num_coeffs) * 0.3, torch.rand(2, 3, rig.num_coeffs) * 0.3
    fast = VertexLoss(rig, mouth_weight=4.0)
    w = torch.ones(rig.num_vertices)
    w[rig.region("mouth")] = 4.0
    d = (rig(a) - rig(b)) * rig.mm_per_unit
    slow = (d.square().sum(-1) * w).sum(-1) / w.sum()
    assert torch.allclose(fast.per_frame(a, b), slow, rtol=1e-3)


def test_train_resume_evaluate_and_load(corpus, m2s_path, tmp_path):
    task = make_task(corpus, m2s_path)
    out = tmp_path / "run"
    cfg = {"out": str(out), "batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "eval_every": 3,
           "save_every": 3, "best_metric": "val_lve", "progress": False, "log_every": 1, "ema_decay": 0.9}
    result = train(task, TrainConfig(steps=3, **cfg))
    assert result.step == 3 and result.best == out / "best" and result.best_step == 3
    assert result.best_metric == result.metrics["val_lve"] and np.isfinite(result.best_metric)
    # two differently seeded samples per window (eval_samples=2): the upper face differs between them
    assert result.metrics["val_sdiv_u"] > 0
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["step"] == 3 and config["metrics"] == pytest.approx(result.metrics)
    assert config["task"] == "talker" and config["rig"]["spec"] == "builtin"
    assert config["styles"] == ["spk0", "spk1"] and len(config["normalizer"]["mean"]) == 52
    # "killed" after step 3: a new process resumes from last/ and continues at step 4
    resumed = train(make_task(corpus, m2s_path), TrainConfig(steps=5, resume=True, **cfg))
    assert resumed.step == 5
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5]
    state = json.loads((out / "last" / "training_state.json").read_text())
    assert state["state"]["step"] == 5
    model, loaded_rig, normalizer, config = load_talker(out, "cpu")
    assert not model.training and loaded_rig.spec == "builtin" and model.styles == ("spk0", "spk1")
    assert normalizer.coeff_names == tuple(ARKIT_NAMES)
    with pytest.raises(CheckpointError, match="talker"):
        load_talker(m2s_path)


def test_a_continuation_is_judged_on_the_frames_it_was_not_given(corpus, m2s_path):
    """With ``continue_prob`` the estimate keeps the given frames: what the model predicts there changes no
    loss term (the THUNDER loss included), and the boundary velocity is the jump from the last given frame."""
    task = make_task(corpus, m2s_path, continue_prob=1.0)
    torch.manual_seed(0)
    model = task.build_model().train()
    assert model.continues
    batch = batch_of(task)
    seen = {}
    forward = model.forward

    def spoiled(*args, known_mask=None, **kwargs):  # garbage on the given frames only
        out = forward(*args, known_mask=known_mask, **kwargs)
        seen["known"] = known_mask
        return out + 50.0 * known_mask[..., None]

    ref_loss, ref_logs = seeded_loss(task, model, batch)
    model.forward = spoiled
    loss, logs = seeded_loss(task, model, batch)
    assert bool(seen["known"].any(1).all())  # every window continued given frames
    torch.testing.assert_close(loss, ref_loss)
    assert logs.keys() == ref_logs.keys()
    for key in logs:
        torch.testing.assert_close(logs[key], ref_logs[key])


@pytest.fixture(scope="module")
def teachers(corpus, tmp_path_factory):
    """Two tiny talkers of the corpus (seeds 0 and 1, one step each): the first packed with guidance 1.5,
    the second a plain run folder (no recommended guidance)."""
    from thunder3d.checkpoints import pack_checkpoint

    root = tmp_path_factory.mktemp("teachers")
    cfg = {"batch_size": 2, "warmup_steps": 1, "eval_every": 0, "save_every": 1, "progress": False, "ema_decay": 0}
    a = train(make_task(corpus), TrainConfig(steps=1, out=str(root / "a"), seed=0, **cfg)).out
    b = train(make_task(corpus), TrainConfig(steps=1, out=str(root / "b"), seed=1, **cfg)).out
    return pack_checkpoint(a / "last", root / "a_packed", sampling={"guidance": 1.5}), b


def replay_noise(task, batch):
    """The timesteps and noisy input ``TalkerTask.loss`` draws first after ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    t = torch.randint(0, task.schedule.num_train_timesteps, (batch["coeffs"].shape[0],))
    return t, task.schedule.add_noise(batch["coeffs"], torch.randn_like(batch["coeffs"]), t)


def test_guidance_distillation_learns_the_guided_teacher(corpus, teachers):
    """With ``distill`` the targets are the frozen teachers' (mean) guided estimate for the same noisy
    input, timestep and conditions, and the student learns at the teachers' condition dropout."""
    packed, plain_run = teachers
    task = make_task(corpus, distill=str(packed))
    assert task.data.distill_guidance == 1.5  # 0: the scale the teacher's checkpoint recommends
    stored = task.checkpoint_config()["data"]
    assert stored["distill_guidance"] == 1.5
    assert stored["distill_files"] == [sorted(r["sha256"] for r in json.loads((packed / "config.json").read_text())
                                              ["files"].values())]  # a resume against changed weights is refused
    assert not {"distill", "distill_guidance", "distill_files"} & set(make_task(corpus).checkpoint_config()["data"])
    net = task.talker_config.net  # the student's own guidance dropout is off: it learns the guided output
    assert (net.audio_drop_prob, net.cond_drop_prob, net.cond_part_drop_prob) == (0.0, 0.0, 0.0)
    teacher, = task.teachers
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    student = task.build_model()
    student.load_state_dict(teacher.state_dict())  # the student starts as the teacher (--init)
    assert not any(m is teacher for m in student.modules())
    batch = batch_of(task)
    mask = batch["mask"]
    cond = {key: batch[key] for key in ("emotion", "intensity", "style")}
    # at guidance 1 the teacher's estimate is the student's own: nothing to learn
    task.data.distill_guidance = 1.0
    _, logs = seeded_loss(task, student.eval(), batch)
    assert float(logs["loss_coeff"]) < 1e-10 and float(logs["loss_vertex"]) < 1e-8
    # at 3 the target is the guided combination of the teacher's passes for that x_t and t
    task.data.distill_guidance = 3.0
    loss, logs = seeded_loss(task, student, batch)
    t, x_t = replay_noise(task, batch)
    with torch.no_grad():
        features = teacher.encode_audio(batch["audio"], mask.shape[1])
        plain = teacher.predict(features, mask, **cond, x_t=x_t, t=t)
        guided = teacher.predict(features, mask, **cond, x_t=x_t, t=t, audio_scale=3.0)
    expected = (guided - plain).square().mean(-1)[mask].mean()
    assert float(expected) > 1e-4
    torch.testing.assert_close(logs["loss_coeff"], expected, rtol=1e-4, atol=1e-7)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    # two teachers: the mean of their guided estimates (the first one's scale, 1.5)
    pair = make_task(corpus, distill=f"{packed},{plain_run}")
    assert len(pair.teachers) == 2 and pair.data.distill_guidance == 1.5
    _, logs = seeded_loss(pair, student, batch)
    with torch.no_grad():
        b = pair.teachers[1]
        mean = (teacher.predict(features, mask, **cond, x_t=x_t, t=t, audio_scale=1.5)
                + b.predict(b.encode_audio(batch["audio"], mask.shape[1]), mask, **cond, x_t=x_t, t=t,
                            audio_scale=1.5)) / 2
    expected = (plain - mean).square().mean(-1)[mask].mean()
    assert float(expected) > 1e-6
    torch.testing.assert_close(logs["loss_coeff"], expected, rtol=1e-4, atol=1e-8)
    # training drops conditions (-1 = absent) at the teachers' rates, the same labels for teacher and student
    torch.manual_seed(0)
    n = 4000
    labels = {"emotion": torch.zeros(n, dtype=torch.long), "intensity": torch.ones(n, dtype=torch.long),
              "style": torch.zeros(n, dtype=torch.long)}
    dropped = task.distill_conditions(labels)
    rate = float((dropped["emotion"] < 0).float().mean())
    p_all, p_part = teacher.cfg.cond_drop_prob, teacher.cfg.cond_part_drop_prob
    assert abs(rate - (1 - (1 - p_all) * (1 - p_part))) < 0.03
    assert bool(((dropped["emotion"] < 0) != (dropped["style"] < 0)).any())  # each also on its own
    seen = {}
    estimate, forward = task.teacher_estimate, student.forward

    def teacher_sees(batch, cond, x_t, t):
        seen["teacher"] = {k: v.clone() for k, v in cond.items()}
        return estimate(batch, cond, x_t, t)

    def student_sees(*args, **kwargs):
        seen["student"] = {k: kwargs[k].clone() for k in ("emotion", "intensity", "style")}
        return forward(*args, **kwargs)

    task.teacher_estimate, student.forward = teacher_sees, student_sees
    for seed in range(20):
        seeded_loss(task, student.train(), batch, seed=seed)
        assert all(torch.equal(seen["teacher"][k], seen["student"][k]) for k in seen["student"])
        if (seen["student"]["style"] < 0).any():
            break
    else:
        pytest.fail("no condition was dropped in 20 training batches")


def test_bad_distillation_teachers_are_refused(corpus, teachers, tmp_path):
    packed, plain_run = teachers
    with pytest.raises(TrainError, match="recommends no guidance scale"):
        make_task(corpus, distill=str(plain_run))
    make_task(corpus, distill=str(plain_run), distill_guidance=2.0)  # given: fine
    with pytest.raises(TrainError, match="nothing to distil"):
        make_task(corpus, distill=str(packed), distill_guidance=1.0)
    with pytest.raises(TrainError, match="distill_guidance must be"):
        make_task(corpus, distill=str(packed), distill_guidance=-1.0)
    with pytest.raises(TrainError, match="needs a teacher"):
        make_task(corpus, distill_guidance=2.0)
    with pytest.raises(TrainError, match="plain diffusion denoiser"):
        make_task(corpus, distill=str(packed), deterministic=True)
    with pytest.raises(TrainError, match="distill: "):
        make_task(corpus, distill=str(tmp_path / "missing"))
    other = make_corpus(tmp_path / "other", seed=5)
    with pytest.raises(TrainError, match="another rig or normalisation"):
        make_task(other, distill=str(packed))
    # a distilled model never learned to predict without audio: its guidance is untrained
    cfg = {"batch_size": 2, "warmup_steps": 1, "eval_every": 0, "save_every": 1, "progress": False}
    student = train(make_task(corpus, distill=str(packed)), TrainConfig(steps=1, out=str(tmp_path / "s"), **cfg)).out
    with pytest.raises(TrainError, match="never learned to predict without audio"):
        make_task(corpus, distill=str(student), distill_guidance=2.0)
