#!/usr/bin/env python3
"""What the SIP gateway's Opus encoder complexity costs in voice quality, scored with PESQ (ITU-T P.862).

    bench/gateway/opus_quality.py                  # builds convene-opus-roundtrip, writes bench/results/
    bench/gateway/opus_quality.py --no-build --complexities 9,5,3

Speech: sentences spoken by espeak-ng (Debian `espeak-ng`) in several voices, resampled with sox to a G.722
room's 16 kHz and a G.711 room's 8 kHz. Each recording goes through the gateway's own Opus encoder
(`Encoder::opus_with_complexity`: SILK-only at these rates, 32 kbit/s, in-band FEC) and decoder at that rate
(`convene-opus-roundtrip`), and PESQ compares the result with the original: wide-band PESQ at 16 kHz,
narrow-band at 8 kHz (MOS-LQO, 1-4.5; differences under ~0.1 are not audible). Needs the PyPI packages
`pesq` and `numpy` (`pip install pesq numpy`). Writes bench/results/<UTC date>-opus-quality.{md,json}.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Harvard sentences (IEEE 1969 recommended practice for speech quality measurements), two per voice.
SENTENCES = [
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well. These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls. The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage.",
]
VOICES = ["en-us", "en-us+f3", "en-gb+m3", "en-us+f4"]


def log(msg):
    print(f"opus-quality: {msg}", file=sys.stderr, flush=True)


def speech(folder, rate):
    """(name, raw S16LE path) per voice, at `rate`."""
    out = []
    for i, (voice, text) in enumerate(zip(VOICES, SENTENCES)):
        wav = folder / f"speech{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True)
        raw = folder / f"speech{i}-{rate}.raw"
        # Mono, the rate, 16-bit, peaks at -3 dBFS (PESQ aligns levels itself; this keeps clear of clipping).
        subprocess.run(["sox", str(wav), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer",
                        "-t", "raw", str(raw), "norm", "-3"], check=True)
        out.append((voice, raw))
    return out


def read_raw(path):
    import numpy as np
    return np.fromfile(path, dtype="<i2").astype(np.float32)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--complexities", default="10,9,8,7,5,3,1,0", help="comma-separated, 0-10")
    p.add_argument("--no-build", action="store_true", help="use the convene-opus-roundtrip already built")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results directory")
    a = p.parse_args()
    try:
        from pesq import pesq
    except ImportError:
        raise SystemExit("needs the PyPI packages pesq and numpy: pip install pesq numpy")

    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not a.no_build:
        log("building convene-opus-roundtrip (release)")
        subprocess.run(["cargo", "build", "--release", "-p", "convene-gateway-bench", "--bin",
                        "convene-opus-roundtrip"], cwd=ROOT, check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=str(target)))
    roundtrip = target / "release" / "convene-opus-roundtrip"
    complexities = [int(c) for c in a.complexities.split(",") if c.strip()]

    rows = []
    with tempfile.TemporaryDirectory(prefix="opus-quality-") as tmp:
        folder = Path(tmp)
        for rate, mode in ((16000, "wb"), (8000, "nb")):
            recordings = speech(folder, rate)
            for c in complexities:
                scores = []
                for voice, raw in recordings:
                    out = folder / f"out-{rate}-{c}-{raw.stem}.raw"
                    subprocess.run([str(roundtrip), "--rate", str(rate), "--complexity", str(c),
                                    "--input", str(raw), "--output", str(out)], check=True)
                    scores.append(float(pesq(rate, read_raw(raw), read_raw(out), mode)))
                row = {"rate": rate, "pesq_mode": mode, "complexity": c,
                       "pesq_mean": sum(scores) / len(scores), "pesq_min": min(scores),
                       "pesq_by_voice": dict(zip(VOICES, scores))}
                rows.append(row)
                log(f"{rate} Hz, complexity {c}: PESQ-{mode.upper()} mean {row['pesq_mean']:.3f},"
                    f" min {row['pesq_min']:.3f}")

    started = datetime.datetime.now(datetime.timezone.utc)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = started.strftime("%Y-%m-%d") + "-opus-quality"
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        f"# The SIP gateway's Opus encoder: quality by complexity, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"{len(VOICES)} espeak-ng voices x 2 Harvard sentences each, through `Encoder::opus_with_complexity`"
        " (SILK-only, 32 kbit/s, in-band FEC) and back at the room's rate, scored against the original with PESQ"
        " (P.862; wide-band at 16 kHz, narrow-band at 8 kHz). MOS-LQO 1-4.5.",
        "",
        "| complexity | 16 kHz (G.722 room) PESQ-WB mean / min | 8 kHz (G.711 room) PESQ-NB mean / min |",
        "|---|---|---|",
    ]
    for c in complexities:
        cells = []
        for rate in (16000, 8000):
            r = next(r for r in rows if r["rate"] == rate and r["complexity"] == c)
            cells.append(f"{r['pesq_mean']:.3f} / {r['pesq_min']:.3f}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", "```json", json.dumps(rows, indent=2), "```", ""]
    (out / f"{stem}.md").write_text("\n".join(lines))
    log(f"wrote {out / (stem + '.md')}")


if __name__ == "__main__":
    main()
