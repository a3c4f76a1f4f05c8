"""Recognised phones as model input: frame labels of any length, the hybrid encoder, the corpus
cache, training with them (and fine-tuning a mel model into a hybrid one), sampling."""

import json

import numpy as np
import pytest
import torch

from thunder3d.audio.align import recognize_frame_labels, recognize_phones, recognize_words
from thunder3d.models.encoders import (
    HybridEncoder,
    MelEncoder,
    build_audio_encoder,
    phone_posteriors,
    recognized_labels,
)
from thunder3d.audio.phones import NUM_PHONES, PHONES, SIL, phone_index, to_frame_labels
from thunder3d.audio.tts import synthesize
from thunder3d.cli import main
from thunder3d.constants import SAMPLES_PER_FRAME
from thunder3d.data.clip import DataError
from thunder3d.data.dataset import PAD_PHONE, ClipDataset, collate
from thunder3d.data.recognized import read_recognized, recognize_corpus, recognized_dir, recognized_path
from thunder3d.errors import AudioError
from thunder3d.inference import generate
from thunder3d.checkpoints import load_checkpoint
from thunder3d.train.loop import TrainConfig, TrainError, train
from thunder3d.checkpoints import load_talker
from thunder3d.train.talker import TalkerData, TalkerTask

from test_talker import TINY, make_corpus  # noqa: E402  (the tiny talker corpus, shared)

pytestmark = pytest.mark.usefixtures("one_thread")

HYBRID = {"kind": "hybrid", "out_dim": 16, "hidden": 16, "layers": 1}


@pytest.fixture(scope="module")
def speech():
    """Two sentences of real TTS speech (about 4 s) and its frame count."""
    utt = synthesize("Bob picked a map for the tall ship. My mother baked a pie by the bay.", "en-us")
    return utt.wav, len(utt.wav) // SAMPLES_PER_FRAME


@pytest.fixture(scope="module")
def heard_corpus(tmp_path_factory):
    """The tiny talker corpus with its phones recognised (cached in ``recognized/``)."""
    root = make_corpus(tmp_path_factory.mktemp("hybrid_corpus"))
    recognize_corpus(root)
    return root


# --------------------------------------------------------------------------- frame labels
def test_frame_labels_of_any_length(speech):
    wav, T = speech
    labels = recognize_frame_labels(wav, T)
    assert labels.dtype == np.int64 and labels.shape == (T,)
    assert np.array_equal(labels, to_frame_labels(recognize_phones(wav), T))  # one piece: exact
    assert (labels != phone_index(SIL)).mean() > 0.5
    # in 1 s chunks with context: bounded pieces that still hear the same speech, mostly
    chunked = recognize_frame_labels(wav, T, chunk_seconds=1.0, context_seconds=0.5)
    assert chunked.shape == (T,) and (chunked == labels).mean() > 0.5
    for start in range(0, T - 25, 25):  # every chunk was decoded
        assert (chunked[start:start + 25] != phone_index(SIL)).any()
    padded = recognize_frame_labels(wav, T + 10)  # frames past the audio are silence
    assert np.array_equal(padded[:T], labels) and (padded[T + 1:] == phone_index(SIL)).all()
    assert recognize_frame_labels(wav, 0).shape == (0,)
    with pytest.raises(AudioError, match="num_frames"):
        recognize_frame_labels(wav, -1)
    with pytest.raises(AudioError, match="chunk_seconds"):
        recognize_frame_labels(wav, T, chunk_seconds=0)


def test_word_recognition_gives_the_phones_of_its_words(speech):
    wav, T = speech
    result = recognize_words(wav)
    words = [w.text for w in result.words]
    assert len(words) >= 8 and not result.added_words  # about the 15 words of the two sentences
    assert result.phones[0].start == 0.0 and abs(result.phones[-1].end - len(wav) / 16000) < 1e-6
    assert all(a.end == b.start for a, b in zip(result.phones, result.phones[1:]))  # no gaps
    assert all(w.start < w.end for w in result.words)
    labels = recognize_frame_labels(wav, T, method="words")
    assert np.array_equal(labels, to_frame_labels(result.phones, T))  # one piece: exact
    assert np.isin(labels, [phone_index(p) for p in ("B", "P", "M")]).any()
    assert (labels != phone_index(SIL)).mean() > 0.5
    chunked = recognize_frame_labels(wav, T, method="words", chunk_seconds=2.0, context_seconds=0.5)
    assert chunked.shape == (T,) and (chunked != phone_index(SIL)).mean() > 0.4
    with pytest.raises(AudioError, match="unknown recognition method"):
        recognize_frame_labels(wav, T, method="wordz")
    # silence: nothing recognised, all SIL, no error
    quiet = recognize_words(np.zeros(16000, np.float32))
    assert [p.label for p in quiet.phones] == [SIL] and quiet.words == []


def test_phone_posteriors_are_smoothed_one_hots():
    labels = torch.tensor([[PAD_PHONE, 5, 5, 7]])
    post = phone_posteriors(labels, torch.tensor([0.2, 0.6, 0.2]))
    assert post.shape == (1, 4, NUM_PHONES) and torch.allclose(post.sum(-1), torch.ones(1, 4))
    assert post[0].argmax(-1).tolist() == [0, 5, 5, 7]  # padding (negative) reads as SIL
    assert abs(float(post[0, 3, 5]) - 0.2) < 1e-6 and abs(float(post[0, 3, 7]) - 0.8) < 1e-6


# --------------------------------------------------------------------------- the hybrid encoder
def test_hybrid_starts_as_its_mel_branch_and_then_hears_the_phones(speech):
    wav, T = speech
    torch.manual_seed(0)
    mel = MelEncoder(16, hidden=16, layers=1).eval()
    hybrid = build_audio_encoder(HYBRID).eval()
    assert isinstance(hybrid, HybridEncoder) and hybrid.uses_phones and not mel.uses_phones
    assert build_audio_encoder(hybrid.config()).config() == hybrid.config()
    assert hybrid.config()["kind"] == "hybrid" and hybrid.config()["phone_scale"] == 100.0
    result = hybrid.load_state_dict(mel.state_dict(), strict=False)  # a mel model's weights fit
    assert sorted(result.missing_keys) == ["phone_proj.bias", "phone_proj.weight"]
    assert not result.unexpected_keys and hybrid.init_optional == ("phone_proj",)
    x = torch.from_numpy(wav)[None]
    labels = recognized_labels(x, T)
    assert labels.shape == (1, T) and np.array_equal(labels[0].numpy(), recognize_frame_labels(wav, T))
    with torch.no_grad():
        assert torch.equal(hybrid(x, phones=labels), mel(x))  # the phone branch starts at zero
        torch.nn.init.normal_(hybrid.phone_proj.weight)
        heard = hybrid(x, phones=labels)
        assert torch.equal(hybrid(x), heard)  # without phones it recognises the same ones itself
        other = hybrid(x, phones=torch.full_like(labels, phone_index("M")))
    assert not torch.allclose(heard, other) and not torch.allclose(heard, mel(x))


def test_phone_labels_are_checked(speech):
    wav, T = speech
    x = torch.from_numpy(wav)[None]
    hybrid = build_audio_encoder(HYBRID)
    with pytest.raises(AudioError, match=r"integer \[B, T\]"):
        hybrid(x, phones=torch.zeros(1, T + 3, dtype=torch.long))
    with pytest.raises(AudioError, match=r"integer \[B, T\]"):
        hybrid(x, phones=torch.zeros(1, T))
    with pytest.raises(AudioError, match="does not read phone labels"):
        MelEncoder(16)(x, phones=torch.zeros(1, T, dtype=torch.long))
    for bad in ({"mel_dropout": 1.0}, {"phone_scale": 0.0}, {"smoothing": 0.3}):
        with pytest.raises(AudioError):
            build_audio_encoder({**HYBRID, **bad})


def test_mel_dropout_acts_in_training_only():
    torch.manual_seed(0)
    hybrid = build_audio_encoder({**HYBRID, "mel_dropout": 0.5})
    torch.nn.init.normal_(hybrid.phone_proj.weight)
    x = 0.1 * torch.randn(16, 40 * SAMPLES_PER_FRAME)
    labels = torch.randint(0, len(PHONES), (16, 40))
    with torch.no_grad():
        phones_only = hybrid.phone_proj(100.0 * phone_posteriors(labels, hybrid.phone_kernel))
        hybrid.train()
        out = hybrid(x, phones=labels)
        dropped = [b for b in range(16) if torch.allclose(out[b], phones_only[b])]
        assert 0 < len(dropped) < 16  # some items hear only the phones
        hybrid.eval()
        full = hybrid(x, phones=labels)
    assert not any(torch.allclose(full[b], phones_only[b]) for b in range(16))
    kept = [b for b in range(16) if b not in dropped]
    assert torch.allclose(out[kept], full[kept])


def test_mel_gain_and_recognizer_options(speech):
    wav, T = speech
    torch.manual_seed(0)
    hybrid = build_audio_encoder({**HYBRID, "mel_dropout": 0.5})
    assert "mel_gain" not in hybrid.config() and "recognizer" not in hybrid.config()  # only when set
    weak = build_audio_encoder({**HYBRID, "mel_dropout": 0.5, "mel_gain": 0.25, "recognizer": "words"})
    assert weak.config()["mel_gain"] == 0.25 and weak.recognizer == "words" and hybrid.recognizer == "phones"
    assert build_audio_encoder(weak.config()).config() == weak.config()
    weak.load_state_dict(hybrid.state_dict())
    x = torch.from_numpy(wav)[None]
    labels = torch.from_numpy(recognize_frame_labels(wav, T))[None]
    with torch.no_grad():
        torch.nn.init.normal_(hybrid.phone_proj.weight, std=0.01)
        weak.phone_proj.weight.copy_(hybrid.phone_proj.weight)
        hybrid.eval(), weak.eval()
        phones_only = hybrid.phone_proj(100.0 * phone_posteriors(labels, hybrid.phone_kernel))
        full, scaled = hybrid(x, phones=labels), weak(x, phones=labels)
        assert torch.allclose(scaled - phones_only, 0.25 * (full - phones_only), atol=1e-4)
        weak.train()  # training is untouched by the gain (the dropout decides)
        torch.manual_seed(1)
        a = weak(x.repeat(8, 1), phones=labels.repeat(8, 1))
        hybrid.train()
        torch.manual_seed(1)
        b = hybrid(x.repeat(8, 1), phones=labels.repeat(8, 1))
        assert torch.allclose(a, b)
        weak.eval()  # without phones the encoder recognises words itself
        assert torch.equal(weak(x), weak(x, phones=recognized_labels(x, T, "words")))
    for bad in ({"mel_gain": 1.5}, {"mel_gain": -0.1}, {"recognizer": "letters"}):
        with pytest.raises(AudioError):
            build_audio_encoder({**HYBRID, **bad})
    assert build_audio_encoder({"kind": "phonetic", "recognizer": "words"}).recognizer == "words"


# --------------------------------------------------------------------------- the corpus cache
def test_recognised_phones_are_cached_and_windowed(heard_corpus, tmp_path):
    ids = [p.stem for p in sorted((heard_corpus / "recognized").glob("*.json"))]
    assert len(ids) == 8 and recognize_corpus(heard_corpus).skipped == 8  # resumable: nothing redone
    data = ClipDataset(heard_corpus, "train", 2.0, recognized=True)
    item = data[0]
    clip, start, frames = data.window(0)
    expected = read_recognized(heard_corpus, data.ids[clip], data.num_frames(clip))[start:start + frames]
    assert item["heard"].dtype == torch.long and np.array_equal(item["heard"].numpy(), expected)
    assert "heard" not in ClipDataset(heard_corpus, "train", 2.0)[0]
    short = dict(item, heard=item["heard"][:10], coeffs=item["coeffs"][:10], phones=item["phones"][:10],
                 mask=item["mask"][:10], audio=item["audio"][:10 * SAMPLES_PER_FRAME])
    batch = collate([item, short])
    assert batch["heard"].shape == (2, frames) and (batch["heard"][1, 10:] == PAD_PHONE).all()
    # a corpus without the cache: a clear error naming the command
    bare = make_corpus(tmp_path / "bare", n_train=2, n_val=1)
    with pytest.raises(DataError, match="thunder3d data recognize"):
        ClipDataset(bare, "train", 2.0, recognized=True)
    recognized_path(heard_corpus, ids[0]).with_name("broken.json").write_text("{")
    with pytest.raises(DataError, match="unreadable recognised phones"):
        read_recognized(heard_corpus, "broken", 10)


def test_data_recognize_command(tmp_path, capsys):
    corpus = make_corpus(tmp_path / "c", n_train=2, n_val=1)
    assert main(["data", "recognize", str(corpus), "--split", "train", "--no-progress"]) == 0
    assert "recognised 2 clips (0 already cached)" in capsys.readouterr().out
    assert main(["data", "recognize", str(corpus), "--no-progress"]) == 0
    assert "recognised 1 clips (2 already cached)" in capsys.readouterr().out
    phones = json.loads(recognized_path(corpus, "c0").read_text())
    assert phones and {"start", "end", "label"} <= set(phones[0])


def test_word_recognition_cache_lives_beside_the_phone_one(tmp_path, capsys):
    corpus = make_corpus(tmp_path / "c", n_train=2, n_val=1)
    assert recognized_dir(corpus) == corpus / "recognized"
    assert recognized_dir(corpus, "words") == corpus / "recognized-words"
    with pytest.raises(DataError, match="unknown recognizer"):
        recognized_dir(corpus, "letters")
    with pytest.raises(DataError, match="data recognize .* --recognizer words"):
        ClipDataset(corpus, "train", 2.0, recognized=True, recognizer="words")
    assert main(["data", "recognize", str(corpus), "--recognizer", "words", "--no-progress"]) == 0
    assert "recognised 3 clips (0 already cached)" in capsys.readouterr().out
    assert not (corpus / "recognized").exists()
    data = ClipDataset(corpus, "train", 2.0, recognized=True, recognizer="words")
    clip, start, frames = data.window(0)
    expected = read_recognized(corpus, data.ids[clip], data.num_frames(clip), "words")[start:start + frames]
    assert np.array_equal(data[0]["heard"].numpy(), expected)
    with pytest.raises(DataError, match="thunder3d data recognize"):
        ClipDataset(corpus, "train", 2.0, recognized=True)  # the phone-loop cache is another one


# --------------------------------------------------------------------------- training and sampling
def hybrid_task(corpus, **kw):
    data = TalkerData(corpus=str(corpus), window_seconds=2.0, audio=dict(HYBRID, mel_dropout=0.3),
                      eval_steps=2, **kw)
    return TalkerTask(data, model=TINY, diffusion={"num_train_timesteps": 100})


@pytest.fixture(scope="module")
def hybrid_runs(heard_corpus, tmp_path_factory):
    """A tiny mel talker trained 2 steps and a hybrid one fine-tuned from it: ``(mel, hybrid, task)``."""
    out = tmp_path_factory.mktemp("hybrid_runs")
    common = {"batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "eval_every": 2, "save_every": 2,
              "best_metric": "val_lve", "progress": False, "ema_decay": 0.9}
    mel_task = TalkerTask(TalkerData(corpus=str(heard_corpus), window_seconds=2.0,
                                     audio={"kind": "mel", "out_dim": 16, "hidden": 16, "layers": 1},
                                     eval_steps=2), model=TINY, diffusion={"num_train_timesteps": 100})
    base = train(mel_task, TrainConfig(out=str(out / "mel"), steps=2, **common))
    # fine-tune into a hybrid model: the mel weights carry over, the phone branch starts at zero
    task = hybrid_task(heard_corpus, clean_phone_prob=0.5)
    result = train(task, TrainConfig(out=str(out / "hyb"), steps=2, init=str(base.last), **common))
    return base, result, task


def test_train_a_hybrid_talker_from_a_mel_one_and_sample_it(hybrid_runs):
    base, result, task = hybrid_runs
    assert result.step == 2 and np.isfinite(result.metrics["val_lve"])
    config = load_checkpoint(result.last).config
    assert config["model"]["audio"]["kind"] == "hybrid" and config["data"]["clean_phone_prob"] == 0.5
    assert "clean_phone_prob" not in load_checkpoint(base.last).config["data"]  # stored only when set
    model, _, normalizer, _ = load_talker(result.out)
    assert model.uses_phones
    init_weights = load_checkpoint(base.last).weights(True)
    assert model.audio_encoder.phone_proj.weight.abs().sum() > 0  # the phone branch learned
    assert set(init_weights) < set(model.state_dict())
    # sampling recognises the whole input once and is reproducible
    clip_audio = collate([task.train_dataset()[0]])["audio"][0].numpy()
    a = generate(model, clip_audio, samples=2, seed=3, steps=2, window=2.0, overlap=0.5)
    b = generate(model, clip_audio, samples=2, seed=3, steps=2, window=2.0, overlap=0.5)
    assert a.shape == (2, len(clip_audio) // SAMPLES_PER_FRAME, 52) and np.array_equal(a, b)
    assert np.isfinite(a).all()


def test_the_recognizer_and_mel_gain_of_a_hybrid_model_can_be_chosen(hybrid_runs):
    from thunder3d.errors import CheckpointError
    from thunder3d.inference import Animator

    base, result, _ = hybrid_runs
    hybrid = Animator.from_pretrained(result.out)
    assert hybrid.model.uses_phones and hybrid.model.audio_encoder.recognizer == "phones"
    words = Animator.from_pretrained(result.out, recognizer="words")
    assert words.model.audio_encoder.recognizer == "words"
    with pytest.raises(CheckpointError, match="unknown recognizer 'letters'"):
        Animator.from_pretrained(result.out, recognizer="letters")
    with pytest.raises(CheckpointError, match="reads no phones"):
        Animator.from_pretrained(base.out, recognizer="words")  # a mel model
    weak = Animator.from_pretrained(result.out, mel_gain=0.25)
    assert weak.model.audio_encoder.mel_gain == 0.25 and weak.model.audio_encoder.config()["mel_gain"] == 0.25
    assert hybrid.model.audio_encoder.mel_gain == 1.0 and "mel_gain" not in hybrid.model.audio_encoder.config()
    with pytest.raises(CheckpointError, match=r"mel_gain must be in \[0, 1\]"):
        Animator.from_pretrained(result.out, mel_gain=2.0)
    with pytest.raises(CheckpointError, match="no hybrid audio encoder"):
        Animator.from_pretrained(base.out, mel_gain=0.5)


def test_loading_a_phone_reading_model_starts_its_recognition_workers(hybrid_runs, monkeypatch):
    from thunder3d.audio.align import WORKERS_ENV, recognizer_pool
    from thunder3d.inference import Animator

    monkeypatch.setenv(WORKERS_ENV, "1")
    pool = recognizer_pool("phones")
    pool.close()
    Animator.from_pretrained(hybrid_runs[1].out, recognizer="phones")
    try:
        assert len(pool.pids) == 1  # loading pocketsphinx while the caller reads its audio
    finally:
        pool.close()


def test_clean_phones_need_a_phone_reading_encoder(heard_corpus):
    with pytest.raises(TrainError, match="clean_phone_prob must be in"):
        TalkerData(corpus=str(heard_corpus), clean_phone_prob=1.5)
    with pytest.raises(TrainError, match="reads phones"):
        TalkerTask(TalkerData(corpus=str(heard_corpus), window_seconds=2.0, clean_phone_prob=0.5,
                              audio={"kind": "mel", "out_dim": 16}), model=TINY)


def test_clean_phones_replace_the_heard_ones_in_training(heard_corpus):
    task = hybrid_task(heard_corpus, clean_phone_prob=1.0)
    model = task.build_model()
    seen = []
    encode = model.audio_encoder.forward

    def spy(wav, num_frames=None, phones=None, pretrained=None):
        seen.append(phones.clone())
        return encode(wav, num_frames, phones, pretrained)

    model.audio_encoder.forward = spy
    batch = collate([task.train_dataset()[i] for i in range(2)])
    model.train()
    task.loss(model, batch, 0)
    assert torch.equal(seen[-1], batch["phones"])  # every item got its true phones
    model.eval()
    task.loss(model, batch, 0)
    assert torch.equal(seen[-1], batch["heard"])  # evaluation: what the recogniser heard
