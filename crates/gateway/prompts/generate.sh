#!/bin/sh
# Regenerates the IVR's spoken prompts in this folder from their text (crates/gateway/src/audio/prompt.rs
# embeds the results). The generated files are committed: building, testing and running Convene need
# neither espeak-ng nor sox, only regenerating does (Debian/Ubuntu: apt-get install espeak-ng sox).
#
# Format: headerless PCM, 16 kHz, mono, signed 16-bit little-endian (`*.raw`). Headerless because the
# gateway then has nothing to parse at run time (no header that could be wrong), and prompt.rs states
# the format in one place; 16 kHz because it is wideband speech, G.722's own rate, and a whole ratio
# to Opus's 48 kHz and G.711's 8 kHz. Play one with `play -t raw -r 16000 -e signed -b 16 -c 1 F.raw`.
#
# Each prompt: espeak-ng's US English voice at a calm rate, then sox trims the leading and trailing
# silence, keeps 100 ms of it at the end, and normalises the peak to -6 dBFS (room for G.711's
# companding and for a device's own gain). `-D` turns sox's random dither off, so the same espeak-ng
# and sox versions give the same bytes and an unchanged prompt shows no diff.
#
# Usage: crates/gateway/prompts/generate.sh   (from anywhere; writes next to this script)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
command -v espeak-ng >/dev/null || { echo "generate.sh: espeak-ng is missing (apt-get install espeak-ng)" >&2; exit 1; }
command -v sox >/dev/null || { echo "generate.sh: sox is missing (apt-get install sox)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LC_ALL=C

# prompt NAME TEXT: writes $here/NAME.raw
prompt() {
    espeak-ng -v en-us -s 150 -w "$tmp/$1.wav" "$2"
    sox -D "$tmp/$1.wav" -t raw -r 16000 -c 1 -b 16 -e signed-integer -L "$here/$1.raw" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse pad 0 0.1 norm -6
    echo "$1.raw: $(($(wc -c <"$here/$1.raw") / 32)) ms"
}

# Keep these texts and the Prompt enum in crates/gateway/src/audio/prompt.rs in step.
prompt enter_meeting_id "Welcome to Convene. Please enter your meeting ID, followed by the pound key."
prompt try_again "That meeting ID was not found. Please try again."
prompt goodbye_not_found "Sorry, that meeting ID was not found. Goodbye."
prompt joining "Joining your meeting."
