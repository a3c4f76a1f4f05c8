"""Issue acceptance on generated clips: lips close at every p/b/m and open at open vowels.

Clips come from the real pipeline (espeak speech, augmentation, speaker styles, emotions) and are
measured on the built-in rig: the inner-lip aperture at the centre frame of every P/B/M must be
< 10% of the clip's 95th-percentile aperture, and every open vowel must reach > 50% of it.
"""

import numpy as np
import pytest
import torch

from thunder3d.audio.phones import BILABIAL, OPEN_VOWELS
from thunder3d.constants import FPS
from thunder3d.data.clip import corpus_clips, load_clip
from thunder3d.data.synth import synthesize_corpus
from thunder3d.rigs import load_rig


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("lips")
    synthesize_corpus(out, hours=0.02, seed=11, workers=1, progress=False, max_clips=16)
    return out


@pytest.fixture(scope="module")
def apertures(corpus):
    rig = load_rig("builtin")
    result = []
    for cid in corpus_clips(corpus):
        clip = load_clip(corpus, cid, audio=False)
        with torch.no_grad():
            aperture = rig.lip_aperture(rig(torch.from_numpy(clip.coeffs))).numpy()  # [T]
        result.append((clip, aperture))
    return result


def test_bilabials_close(apertures):
    worst, count = 0.0, 0
    for clip, aperture in apertures:
        p95 = np.percentile(aperture, 95)
        for ph in clip.phones:
            if ph.label in BILABIAL:
                f = min(int((ph.start + ph.end) / 2 * FPS), len(aperture) - 1)
                worst = max(worst, aperture[f] / p95)
                count += 1
    assert count >= 10, "too few bilabials to judge"
    assert worst < 0.10, f"a bilabial centre is open to {worst:.0%} of the clip's p95 aperture"


def test_open_vowels_open(apertures):
    worst, count = np.inf, 0
    for clip, aperture in apertures:
        p95 = np.percentile(aperture, 95)
        for ph in clip.phones:
            if ph.label in OPEN_VOWELS:
                lo = int(ph.start * FPS)
                hi = max(lo + 1, int(np.ceil(ph.end * FPS)))
                worst = min(worst, aperture[lo:hi].max() / p95)
                count += 1
    assert count >= 20
    assert worst > 0.5, f"an open vowel only reaches {worst:.0%} of the clip's p95 aperture"
