"""Smoke tests of the benchmark scripts (benchmarks/speed.py, animate.py, ablation.py) at tiny sizes:
each runs end to end through its ``main()`` and writes the tables and JSON it promises."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest
from helpers import needs_gl

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY_TALKER = ("--dim 32 --layers 1 --heads 2 --window 2 --batch-size 2 --eval-windows 2 --eval-steps 2 "
               "--audio-dim 16 --warmup 1")
TINY_M2S = "--dim 32 --layers 1 --heads 2 --window 2 --batch-size 2 --eval-every 2 --warmup 1"
NUMBER = r"[-+]?\d+\.\d+"


@pytest.fixture
def bench(one_thread, monkeypatch):
    """Import a benchmark script as a module (they import their siblings by name)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    before = set(sys.modules)

    def load(name: str):
        return importlib.import_module(name)

    yield load
    for name in set(sys.modules) - before:  # common, train, m2s, speed, ...: not other tests' business
        if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(BENCHMARKS)):
            del sys.modules[name]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from thunder3d.data.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("bench_corpus") / "corpus"
    synthesize_corpus(root, hours=0.02, seed=2, workers=1, progress=False, max_clips=8)
    return root


@pytest.mark.slow
@needs_gl
def test_speed_writes_every_section(bench, tmp_path, capsys):
    speed = bench("speed")
    md, js = tmp_path / "speed.md", tmp_path / "speed.json"
    assert speed.main(["--threads", "1", "--dim", "32", "--layers", "1", "--audio-dim", "16", "--m2s-dim", "32",
                       "--m2s-layers", "1", "--lengths", "1", "5", "--steps", "1", "2", "--repeats", "1",
                       "--batch", "2", "--clips", "6", "--m2s-batch", "2", "--m2s-frames", "10",
                       "--memory-seconds", "2", "--memory-steps", "1", "--memory-probes", "inference",
                       "--render-sizes", "32", "--render-frames", "4", "--json", str(js),
                       "--markdown", str(md)]) == 0
    result = json.loads(js.read_text())
    assert {r["steps"] for r in result["inference"] if r["model"] == "diffusion"} == {1, 2}
    assert all(r["rtf"] > 0 for r in result["inference"])
    assert len(result["training"]) == 4 and len(result["m2s"]) == 3
    assert 50 < result["memory"]["inference"]["peak_rss_mb"] < 4000
    assert result["render"][0]["fps"] > 0 and len(result["machine"]["loadavg_end"]) == 3
    text = md.read_text()
    for heading in ("Inference: real-time factor", "Training step", "M2S cost", "Peak memory", "Render"):
        assert f"## {heading}" in text
    assert re.search(rf"\| 2 \| {NUMBER} \| {NUMBER} \|", text)  # the steps x lengths grid
    assert "load average" in text


@pytest.mark.slow
@needs_gl
def test_animate_reports_targets(bench, tmp_path, capsys):
    animate = bench("animate")
    js = tmp_path / "animate.json"
    # targets no run can miss (animate, memory) and one no run can meet (render in 0 s): the verdicts
    # are known in advance, and each must agree with the measurement it reports
    assert animate.main(["--threads", "1", "--dim", "32", "--layers", "1", "--seconds", "2", "--steps", "2",
                         "--size", "32", "--long-minutes", "0.1", "--repeats", "1", "--json", str(js),
                         "--target-animate", "1000", "--target-cli", "1000", "--target-render", "0",
                         "--target-memory", "1000"]) == 0
    out = capsys.readouterr().out
    assert "model: " in out and re.search(r"animate 2 s.*\bpass\b", out) and re.search(r"render 2 s.*\bFAIL\b", out)
    result = json.loads(js.read_text())
    assert [r["result"] for r in result["rows"]] == ["pass", "pass", "FAIL", "pass"]
    assert [r["target"] for r in result["rows"]] == ["<= 1000 s", "<= 1000 s", "<= 0 s", "< 1000 GB"]
    measured = [float(r["measured"].split()[0]) for r in result["rows"]]
    # the rows show the JSON's figures to 2 decimals
    assert measured == pytest.approx([result["animate_median_s"], result["cli_median_s"], result["render_s"],
                                      result["peak_rss_gb"]], abs=0.006)
    assert 0 < result["animate_median_s"] < 1000 and result["render_s"] > 0 and 0 < result["peak_rss_gb"] < 1000
    assert result["cli_median_s"] > result["animate_median_s"] and len(result["cli_s"]) == 1
    assert result["long"]["frames"] == 150  # 0.1 min at 25 fps
    assert result["video"]["streams"][0]["width"] == 32


@pytest.mark.slow
def test_ablation_end_to_end_and_resumes(bench, corpus, tmp_path, capsys):
    ablation = bench("ablation")
    work, md = tmp_path / "work", tmp_path / "ablation.md"
    args = ["--corpus", str(corpus), "--work", str(work), "--seeds", "0", "--steps", "2",
            "--systems", "diffusion", "diffusion+mouth2s", "--m2s-steps", "2", "--m2s-args", TINY_M2S,
            "--talker-args", TINY_TALKER, "--samples", "2", "--eval-steps", "2", "--real", "none",
            "--in-process", "--markdown", str(md), "--note", "tiny sizes"]
    # a budget of 1 step of the 2-step schedule, then the rest: the run continues, is re-evaluated
    assert ablation.main([*args, "--stop-at", "1"]) == 0
    assert json.loads((work / "diffusion_s0" / "last" / "config.json").read_text())["step"] == 1
    assert ablation.main(args) == 0
    out = capsys.readouterr().out
    assert "--resume" in out and "m2s_mouth2s is at step 2 (>= 2): nothing to train" in out
    for run in ("diffusion_s0", "diffusion_mouth2s_s0"):
        assert json.loads((work / run / "last" / "config.json").read_text())["step"] == 2
    text = md.read_text()
    for name in ("diffusion", "diffusion+mouth2s"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "0" and all(re.fullmatch(NUMBER, c) for c in cells[2:5]), row  # LVE, L-PCC, L-CCC
        assert cells[-1] == "1"  # one test clip
    assert "**Claim check (computed, seeds 0):**" in text and "- **Note:** tiny sizes" in text
    assert "thunder3d train talker" in text and "--lambda-m2s 0.1" in text
    result = json.loads(md.with_suffix(".json").read_text())
    assert result["synthetic"]["diffusion+mouth2s"]["0"]["lve"] > 0 and result["real"] is None
    keys = json.loads((work / "eval" / "synth_test" / "diffusion_s0.key.json").read_text())
    assert keys["step"] == 2
    # a third call finds everything done: nothing is run again
    assert ablation.main(args) == 0
    assert "0 of them ran in this call" in md.read_text()


def test_ablation_pair_seeds_dry_run(bench, corpus, tmp_path, capsys):
    """--pair-seeds trains the claim pair on more seeds than the other systems."""
    ablation = bench("ablation")
    args = ["--corpus", str(corpus), "--work", str(tmp_path / "work"), "--seeds", "0", "--pair-seeds", "0", "1",
            "--steps", "2", "--systems", "diffusion", "diffusion+mouth2s", "regressor", "--m2s-steps", "2",
            "--real", "none", "--dry-run", "--markdown", str(tmp_path / "ablation.md")]
    assert ablation.main(args) == 0
    trained = re.findall(r"train talker .*--out \S+/(\w+)", capsys.readouterr().out)
    assert sorted(trained) == ["diffusion_mouth2s_s0", "diffusion_mouth2s_s1", "diffusion_s0", "diffusion_s1",
                               "regressor_s0"]


@pytest.mark.slow
def test_voices_table_is_cached_and_names_each_set(bench, tiny_corpus, tiny_talker, tmp_path, capsys):
    voices = bench("voices")
    args = ["--corpus", str(tiny_corpus), "--model", f"tiny={tiny_talker}", "--sets", "espeak", "ked",
            "--samples", "1", "--steps", "2", "--work", str(tmp_path / "work"), "--json", str(tmp_path / "v.json"),
            "--markdown", str(tmp_path / "v.md"), "--split", "all"]
    assert voices.main(args) == 0
    out = capsys.readouterr()
    assert "ked: skipped" in out.err  # the tiny corpus has no festival voice
    row = [line for line in (tmp_path / "v.md").read_text().splitlines() if line.startswith("| tiny |")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert re.fullmatch(NUMBER, cells[1]) and cells[-1] == "6/–"  # espeak closure, 6 clips; no ked clips
    saved = json.loads((tmp_path / "v.json").read_text())["results"]["tiny"]
    assert saved["espeak"]["mean"]["clips"] == 6 and saved["ked"] is None
    cache = tmp_path / "work" / "tiny" / "espeak.json"
    stamp = cache.stat().st_mtime_ns
    assert voices.main(args) == 0 and cache.stat().st_mtime_ns == stamp  # reused, not recomputed


def test_probe_scores_each_feature_kind(bench, tiny_corpus, tmp_path, capsys):
    probe = bench("probe")
    out = tmp_path / "probe.json"
    assert probe.main(["--train", str(tiny_corpus), "--test", str(tiny_corpus), "--split", "train", "--clips", "3",
                       "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    for kind in ("whisper", "logmel"):
        assert 0.2 <= results[kind]["balanced_recall"] <= 1.0 and results[kind]["train_frames"] > 100
        assert set(results[kind]["recall"]) <= set(probe.CLASSES)
    assert "whisper  balanced recall" in capsys.readouterr().out


@pytest.mark.slow
def test_stream_quality_compares_streamed_with_offline(bench, tiny_corpus, tiny_talker, tmp_path, capsys):
    quality = bench("stream_quality")
    js = tmp_path / "q.json"
    assert quality.main(["--model", str(tiny_talker), "--corpus", str(tiny_corpus), "--split", "all", "--clips", "2",
                         "--samples", "1", "--configs", "lookahead_ms=80,block=2,steps=2", "--json", str(js),
                         "--stream-model", f"again={tiny_talker}"]) == 0
    rows = json.loads(js.read_text())["rows"]
    assert [r["system"] for r in rows] == ["offline (steps 10, guidance 1)", "stream lookahead_ms=80,block=2,steps=2",
                                           "stream [again] lookahead_ms=80,block=2,steps=2"]
    assert all(0 <= r["closure"] <= 1 and r["lve"] > 0 for r in rows)
    assert rows[0]["cpu_s_per_s"] is None and rows[1]["cpu_s_per_s"] > 0
    assert rows[2]["closure"] == rows[1]["closure"] and rows[2]["lve"] == rows[1]["lve"]  # same model, same seeds
    assert "offline (steps 10" in capsys.readouterr().out


@pytest.mark.slow
def test_thunder_effect_sweeps_confirms_and_resumes(bench, corpus, tmp_path, capsys):
    study = bench("thunder_effect")
    work, md, js = tmp_path / "work", tmp_path / "effect.md", tmp_path / "effect.json"
    md.write_text("# kept intro\n\n" + study.MARKER + "\nold tables\n")
    args = ["--corpus", str(corpus), "--work", str(work), "--steps", "4", "--sweep-stop", "2", "--settings", "base",
            "l0.3", "l3", "best_ramp", "--seeds", "0", "1", "--samples", "2", "--clips", "1", "--jobs", "2",
            "--talker-args", TINY_TALKER + " --audio mel --eval-every 2 --save-every 2",
            "--listener-args", TINY_M2S + " --steps 2 --stop-at 2", "--listener-split", "all",
            "--markdown", str(md), "--json", str(js)]
    assert study.main(args) == 0
    result = json.loads((work / "study.json").read_text())
    assert set(result["sweep"]) == {"base", "l0.3", "l3", "best_ramp"} and result["best_lambda"] in (0.3, 3.0)
    assert result["sweep"]["best_ramp"]["lambda"] == result["best_lambda"]
    assert "--m2s-ramp 500" in " ".join(result["commands"])
    final = result["final"]
    pairs = json.loads(js.read_text())
    assert [p["seed"] for p in pairs["pairs"]] == [0, 1] and final in pairs["setting"]
    assert all(p["with"]["lve_mm"] > 0 and p["without"]["sdiv_u_mm"] >= 0 for p in pairs["pairs"])
    for seed in (0, 1):
        assert json.loads((work / f"{final}_s{seed}" / "last" / "config.json").read_text())["step"] == 4
    text = md.read_text()
    assert text.startswith("# kept intro") and "old tables" not in text and "## Sweep" in text
    assert "## Confirmation" in text and "mouth2s" in result["listeners"]
    capsys.readouterr()
    assert study.main(args) == 0  # a second call finds everything done
    assert "start:" not in capsys.readouterr().out


def test_audit_check_ranks_true_above_late_and_still(bench, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "audit.json"
    assert bench("audit_check").main(["--corpus", str(tiny_corpus), "--split", "all", "--clips", "2",
                                      "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["clips"] == 2 and result["late_ms"] == 240.0
    assert result["mean"]["true"]["score"] > result["mean"]["late"]["score"] > 0
    assert result["mean"]["true"]["score"] > result["mean"]["still"]["score"]
    assert "true scores above late" in capsys.readouterr().out


def test_thunder_effect_chooses_the_confirmed_setting_with_the_largest_lve_gain(bench):
    study = bench("thunder_effect")

    def figs(lve, lpcc=0.8, sdiv=0.05):
        return {"lve": lve, "lpcc": lpcc, "sdiv_u": sdiv, "closure": 0.5}

    result = {"finals": ["video_best", "video_clean"], "best_lambda": 0.3, "steps": 10, "corpus": "c",
              "confirm": {"video_base": {0: figs(4.0), 1: figs(4.2)}, "video_best": {0: figs(3.9), 1: figs(4.1)},
                          "video_clean": {0: figs(3.6), 1: figs(3.9, 0.85)}}}
    result["final"] = study.chosen(result)
    assert result["final"] == "video_clean"
    out = study.pairs_json(result)
    assert out["setting"].startswith("video_clean") and [p["seed"] for p in out["pairs"]] == [0, 1]
    assert out["pairs"][1]["with"]["lpcc"] == 0.85 and out["pairs"][1]["without"]["lve_mm"] == 4.2
    assert [o["setting"].split(":")[0] for o in out["others"]] == ["video_best"]
    text = study.report({**result, "sweep": {}, "listeners": {}, "commands": [], "sweep_stop": 5})
    assert text.count("## Confirmation") == 2 and "**mean change**" in text


@pytest.mark.slow
def test_encoders_trains_each_system_tables_the_seeds_and_resumes(bench, corpus, tmp_path, capsys):
    import shutil

    encoders = bench("encoders")
    data = tmp_path / "corpus"
    shutil.copytree(corpus, data)  # the script adds the Whisper features to the corpus it is given
    work, md, js = tmp_path / "work", tmp_path / "enc.md", tmp_path / "enc.json"
    md.write_text("# kept intro\n\n" + encoders.MARKER + "\nold table\n")
    args = ["--corpus", str(data), "--work", str(work), "--systems", "mel", "whisper", "whisper+thunder",
            "--steps", "2", "--seeds", "0", "1", "--split", "all", "--samples", "2", "--eval-steps", "2",
            "--talker-args", TINY_TALKER + " --eval-every 2 --save-every 2",
            "--listener-args", TINY_M2S + " --steps 2 --stop-at 2", "--markdown", str(md), "--json", str(js)]
    assert encoders.main(args) == 0
    result = json.loads(js.read_text())
    assert set(result["runs"]) == {"mel s0", "whisper s0", "whisper s1", "whisper+thunder s0",
                                   "whisper+thunder s1", "**whisper**, mean of 2 seeds",
                                   "**whisper+thunder**, mean of 2 seeds"}
    runs = result["runs"]
    for seed in (0, 1):
        config = json.loads((work / f"whisper_thunder_s{seed}" / "last" / "config.json").read_text())
        assert config["step"] == 2
    assert "--lambda-m2s 0.3" in " ".join(result["commands"]) and "data features" in " ".join(result["commands"])
    pair = [runs[f"whisper s{seed}"]["espeak"]["mean"]["lve"] for seed in (0, 1)]
    assert result["means"]["whisper"]["espeak"]["mean"]["lve"] == pytest.approx(sum(pair) / 2)
    assert runs["mel s0"]["espeak"]["mean"]["clips"] > 0 and runs["mel s0"]["ked"] is None  # no festival voice
    text = md.read_text()
    assert text.startswith("# kept intro") and "old table" not in text and "| whisper+thunder s1 |" in text
    capsys.readouterr()
    assert encoders.main(args) == 0  # everything done: nothing started again
    assert "start:" not in capsys.readouterr().out
