"""The talker evaluation: scoring systems on corpus clips, the predictors, ``thunder3d eval talker``."""

import json

import numpy as np
import pytest
import torch

from thunder3d.cli import main
from thunder3d.data.clip import corpus_clips, load_clip
from thunder3d.eval.metrics import aperture_indices, aperture_of, lve, m2s_consistency, rig_vertices
from thunder3d.eval.talker import (
    EvalError,
    add_system,
    as_samples,
    evaluate_animations,
    format_markdown,
    ground_truth_predictions,
    read_results,
)
from thunder3d.scoring import LazyPredictions, folder_predictions, rulebased_predictions
from thunder3d.models.m2s import M2S, M2SConfig
from thunder3d.rigs import load_rig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tiny_corpus):
    return tiny_corpus


@pytest.fixture(scope="module")
def clips(corpus):
    return [load_clip(corpus, cid) for cid in corpus_clips(corpus)[:2]]


@pytest.fixture(scope="module")
def rig():
    return load_rig("builtin")


def test_ground_truth_scores_perfectly_on_what_needs_it(rig, clips):
    result = evaluate_animations(rig, clips, ground_truth_predictions(clips, rig))
    mean = result["mean"]
    assert mean["clips"] == 2 and mean["samples"] == 1
    assert mean["lve"] == 0.0 and mean["dtw"] == 0.0 and mean["fdd"] == 0.0
    assert mean["lpcc"] == pytest.approx(1.0) and mean["lccc"] == pytest.approx(1.0)
    assert mean["sdiv_u"] is None and mean["sdiv_l"] is None  # one sample
    assert mean["closure_segments"] > 0 and mean["closure"] >= 0.9  # the corpus closes for /p b m/
    assert mean["open_vowel_segments"] > 0 and mean["open_vowel"] >= 0.9
    assert abs(mean["lag_ms"]) <= 80 and mean["sync_corr"] > 0.2
    assert result["lower_region"] == "lower_face" and result["m2s_input"] is None
    json.dumps(result, allow_nan=False)  # no NaN anywhere


def test_scores_of_hand_made_predictions(rig, clips):
    clip = clips[0]
    gt = ground_truth_predictions([clip], rig)[clip.id][0]  # [T, C]
    jaw = rig.coeff_index("jawOpen")
    wider = gt.copy()
    wider[:, jaw] = np.clip(wider[:, jaw] + 0.2, 0, 1)
    still = np.zeros_like(gt)
    preds = np.stack([wider, still])  # N = 2 different samples
    score = evaluate_animations(rig, [clip], {clip.id: preds})["clips"][0]
    lips = rig.region("lips")
    g, p = torch.from_numpy(gt), torch.from_numpy(preds)
    expected = np.mean([lve(rig_vertices(rig, p[n], lips), rig_vertices(rig, g, lips), None, 10.0)
                        for n in range(2)])
    assert score["lve"] == pytest.approx(expected, rel=1e-5)
    assert score["sdiv_u"] > 0 and score["sdiv_l"] > score["sdiv_u"]  # the jaw moves the lower face
    # the still sample closes for every bilabial, the wide one never: half of the segments
    assert score["closure_hits"] * 2 == score["closure_segments"]
    alone = evaluate_animations(rig, [clip], {clip.id: still})["clips"][0]
    assert alone["closure"] == 1.0 and alone["open_vowel"] == 0.0 and alone["lag_ms"] is None
    assert alone["lpcc"] is None  # a constant aperture has no correlation


def test_vertex_predictions_score_like_their_coefficients(rig, clips):
    clip = clips[1]
    coeffs = ground_truth_predictions([clip], rig)[clip.id] * 0.7  # [1, T, C]
    by_coeffs = evaluate_animations(rig, [clip], {clip.id: coeffs})["clips"][0]
    verts = rig(torch.from_numpy(coeffs)).numpy()  # [1, T, V, 3]
    by_verts = evaluate_animations(rig, [clip], {clip.id: verts[0]})["clips"][0]  # [T, V, 3]: one sample
    for key in ("lve", "lpcc", "lccc", "dtw", "fdd", "closure", "open_vowel", "lag_ms"):
        assert by_verts[key] == pytest.approx(by_coeffs[key], rel=1e-4, abs=1e-5), key


def test_m2s_consistency_joins_the_scores(rig, clips):
    torch.manual_seed(0)
    m2s = M2S(M2SConfig.for_rig(rig, "mouth2s", dim=16, layers=1, heads=2, ff_mult=2, conv_kernel=3)).eval()
    gt = ground_truth_predictions(clips[:1], rig)
    result = evaluate_animations(rig, clips[:1], gt, m2s=m2s)
    expected = m2s_consistency(m2s, rig, gt[clips[0].id][0], clips[0].audio)
    assert result["clips"][0]["m2s_mel_l1"] == pytest.approx(expected)
    assert result["mean"]["m2s_mel_l1"] == pytest.approx(expected) and result["m2s_input"] == "mouth2s"


def test_bad_predictions_are_named(rig, clips):
    clip = clips[0]
    T, C = clip.num_frames, rig.num_coeffs
    assert as_samples(np.zeros((T + 1, C)), rig, T, "x")[1].shape == (1, T + 1, C)  # one frame apart: fine
    with pytest.raises(EvalError, match=f"clip '{clip.id}'.*{T + 2} frames"):
        evaluate_animations(rig, [clip], {clip.id: np.zeros((T + 2, C))})
    with pytest.raises(EvalError, match=r"\[N, T, 52\] coefficients"):
        evaluate_animations(rig, [clip], {clip.id: np.zeros((T, 7))})
    with pytest.raises(EvalError, match="finite"):
        evaluate_animations(rig, [clip], {clip.id: np.full((T, C), np.nan)})
    with pytest.raises(EvalError, match="no predictions for 1 of 2"):
        evaluate_animations(rig, clips, {clip.id: np.zeros((T, C))})


def test_markdown_table():
    def result(lve, sdiv, closure, lag, clips=3):
        return {"mean": {"lve": lve, "lpcc": 0.5, "lccc": 0.25, "dtw": 1.0, "sdiv_u": sdiv, "sdiv_l": sdiv,
                         "fdd": 0.125, "closure": closure, "open_vowel": 1.0, "lag_ms": lag, "clips": clips}}

    table = format_markdown({"GT": result(0.0, None, 1.0, 0.0), "model": result(1.23456, 0.5, 0.75, -40.0)})
    assert table.splitlines() == [
        "| system | LVE mm ↓ | L-PCC ↑ | L-CCC ↑ | DTW mm ↓ | S-DIV-U mm | S-DIV-L mm | FDD mm ↓ | closure ↑ "
        "| open-vowel ↑ | lag ms | clips |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| GT | 0.000 | 0.500 | 0.250 | 1.000 | – | – | 0.125 | 1.000 | 1.000 | +0 | 3 |",
        "| model | 1.235 | 0.500 | 0.250 | 1.000 | 0.500 | 0.500 | 0.125 | 0.750 | 1.000 | -40 | 3 |",
    ]


def test_results_files_accumulate_systems_on_the_same_clips(tmp_path):
    a = {"clips": [{"id": "x"}, {"id": "y"}], "mean": {}}
    b = {"clips": [{"id": "x"}], "mean": {}}
    systems = add_system(add_system({}, "one", a), "two", a)
    assert list(systems) == ["one", "two"]
    assert add_system({"one": b}, "one", a) == {"one": a}  # a system replaces itself
    with pytest.raises(EvalError, match="other clips"):
        add_system(systems, "three", b)
    path = tmp_path / "results.json"
    assert read_results(path) == {}
    path.write_text(json.dumps({"systems": systems}))
    assert read_results(path) == systems
    path.write_text("[1, 2]")
    with pytest.raises(EvalError, match="not a results file"):
        read_results(path)


def test_lazy_predictions_are_made_once_per_clip(rig, clips):
    made = []
    lazy = LazyPredictions(clips, lambda clip: made.append(clip.id) or clip.coeffs[None])
    assert clips[0].id in lazy and "other" not in lazy and len(lazy) == 2 and made == []
    evaluate_animations(rig, clips, lazy)
    assert made == [c.id for c in clips]


def test_folder_predictions(tmp_path, rig, clips):
    names = list(rig.coeff_names)
    for clip in clips:  # columns stored in reverse order, named: matched by name
        np.savez(tmp_path / f"{clip.id}.npz", coeffs=clip.coeffs[None, :, ::-1], coeff_names=np.array(names[::-1]))
    preds = folder_predictions(tmp_path, clips, rig)
    assert len(preds.arrays) == 2 and preds.arrays[clips[0].id].shape == (1, clips[0].num_frames, 52)
    assert evaluate_animations(rig, clips, preds.arrays)["mean"]["lve"] == 0.0
    verts = rig(torch.from_numpy(clips[0].coeffs)).numpy()
    np.savez(tmp_path / f"{clips[0].id}.npz", vertices=verts)
    assert preds.arrays[clips[0].id].shape == (1, clips[0].num_frames, rig.num_vertices, 3)  # read lazily
    np.savez(tmp_path / f"{clips[0].id}.npz", motion=verts)
    with pytest.raises(EvalError, match="neither 'coeffs' nor 'vertices'"):
        preds.arrays[clips[0].id]
    (tmp_path / f"{clips[1].id}.npz").unlink()
    with pytest.raises(EvalError, match=f"no <clip_id>.npz for 1 of 2 clips: {clips[1].id}"):
        folder_predictions(tmp_path, clips, rig)


def test_rule_based_baseline_articulates_recognised_phones(rig, clips):
    preds = rulebased_predictions(clips[:1], rig)
    x = preds.arrays[clips[0].id]
    assert x.shape == (1, clips[0].num_frames, 52) and x.min() >= 0 and x.max() <= 1
    ap = aperture_of(rig_vertices(rig, torch.from_numpy(x[0]), aperture_indices(rig)))
    assert float(ap.max()) * rig.mm_per_unit > 5  # it opens the mouth for speech
    score = evaluate_animations(rig, clips[:1], preds.arrays)["mean"]
    assert 0 < score["lve"] < 30 and score["lpcc"] > 0.2


@pytest.mark.slow
def test_eval_talker_cli(tmp_path, corpus, tiny_talker, capsys):
    run = tiny_talker
    out, table = tmp_path / "results.json", tmp_path / "table.md"
    def base(clips=2):
        return ["eval", "talker", "--corpus", str(corpus), "--split", "train", "--clips", str(clips),
                "-o", str(out), "--no-progress"]

    assert main(base() + ["--model", str(run), "--samples", "2", "--steps", "2", "--name", "tiny"]) == 0
    assert main(base() + ["--ground-truth", "--markdown", str(table)]) == 0
    systems = json.loads(out.read_text())["systems"]
    assert list(systems) == ["tiny", "ground truth"]
    tiny = systems["tiny"]
    assert tiny["steps"] == 2 and tiny["audio_scale"] == 1.0 and [c["samples"] for c in tiny["clips"]] == [2, 2]
    assert tiny["mean"]["lve"] > 0 and tiny["mean"]["sdiv_u"] > 0
    assert systems["ground truth"]["mean"]["lve"] == 0.0
    lines = table.read_text().splitlines()
    assert lines[2].startswith("| tiny |") and lines[3].startswith("| ground truth | 0.000 | 1.000 |")
    # audio guidance changes the samples (and is recorded)
    assert main(base() + ["--model", str(run), "--samples", "2", "--steps", "2", "--name", "guided",
                          "--guidance", "3"]) == 0
    guided = json.loads(out.read_text())["systems"]["guided"]
    assert guided["audio_scale"] == 3.0 and guided["mean"]["lve"] != tiny["mean"]["lve"]
    capsys.readouterr()
    assert main(base() + ["--predictions", str(tmp_path / "nowhere")]) == 2
    assert "predictions folder not found" in capsys.readouterr().err
    assert main(base(clips=1) + ["--ground-truth", "--name", "other"]) == 2
    assert "other clips" in capsys.readouterr().err


def test_eval_talker_voice_filter(tmp_path, corpus, capsys):
    from thunder3d.data.clip import read_manifest

    entries = read_manifest(corpus)
    voice = entries[0]["voice"]
    same = sorted(e["id"] for e in entries if e["voice"].startswith(voice))
    out = tmp_path / "gt.json"
    assert main(["eval", "talker", "--ground-truth", "--corpus", str(corpus), "--split", "all",
                 "--voice", voice, "-o", str(out), "--no-progress"]) == 0
    clips = json.loads(out.read_text())["systems"]["ground truth"]["clips"]
    assert sorted(c["id"] for c in clips) == same
    assert main(["eval", "talker", "--ground-truth", "--corpus", str(corpus), "--split", "all",
                 "--voice", "festival:nobody", "--no-progress"]) == 2
    assert "voice starting with 'festival:nobody'" in capsys.readouterr().err
