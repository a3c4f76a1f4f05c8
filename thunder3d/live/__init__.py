"""Real-time output: Live Link Face UDP packets for Unreal Engine (:mod:`thunder3d.live.livelink`)."""
