"""``thunder3d rig info`` and ``thunder3d rig show`` through the real command entry point."""

import json

import pytest

from helpers import needs_gl
from PIL import Image

from thunder3d.cli import main
from thunder3d.rigs import load_rig


def test_rig_info_prints_sizes_and_regions(capsys):
    assert main(["rig", "info", "builtin"]) == 0
    out = capsys.readouterr().out
    rig = load_rig("builtin")
    assert f"vertices     {rig.num_vertices}" in out and f"coefficients {rig.num_coeffs}:" in out
    for region in ("lips", "mouth", "face", "upper_face", "eyes"):
        assert f"  {region:<12} {rig.region(region).numel()} vertices" in out


def test_rig_info_json(capsys):
    assert main(["rig", "info", "builtin", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    rig = load_rig("builtin")
    assert info["name"] == "builtin" and info["vertices"] == rig.num_vertices
    assert info["coeff_names"] == list(rig.coeff_names) and info["triangles"] == rig.faces.shape[0]
    assert {"lips", "mouth", "face", "upper_face", "eyes"} <= set(info["regions"])


@needs_gl
def test_rig_show_writes_two_view_png(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["rig", "show", "builtin", "--coeff", "jawOpen=1", "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size == (2 * 512, 512)


def test_rig_show_bad_coeff_lists_valid_names(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["rig", "show", "builtin", "--coeff", "foo=1", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'foo'" in err and "jawOpen" in err and "Traceback" not in err
    assert not out.exists()


def test_rig_show_bad_view_lists_valid_views(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["rig", "show", "builtin", "--view", "front,top", "-o", str(out)]) == 2
    assert "three_quarter" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("command", [["info"], ["show", "-o", "never.png"]])
def test_unknown_rig_spec_is_a_clear_error(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["rig", command[0], "nosuchrig", *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("thunder3d: error:") and "nosuchrig" in err and "builtin" in err
    assert "Traceback" not in err and not (tmp_path / "never.png").exists()
