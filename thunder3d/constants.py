"""Audio/animation timing constants shared by every module (see docs/ARCHITECTURE.md).

Everything is derived by exact division from the sample rate, the animation frame rate and the mel
hop, so the contract "4 mel frames per animation frame" cannot drift.
"""

SAMPLE_RATE = 16_000  # Hz, mono float32 everywhere inside thunder3d
FPS = 25  # animation frames per second
N_MELS = 80  # mel bins
HOP_LENGTH = 160  # samples between mel frames (10 ms)
WIN_LENGTH = 400  # samples per analysis window (25 ms)
N_FFT = 512  # FFT size (window zero-padded to it)
F_MIN = 0.0
F_MAX = SAMPLE_RATE / 2

assert SAMPLE_RATE % FPS == 0
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
assert SAMPLES_PER_FRAME % HOP_LENGTH == 0
MELS_PER_FRAME = SAMPLES_PER_FRAME // HOP_LENGTH  # 4
MEL_FPS = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second
