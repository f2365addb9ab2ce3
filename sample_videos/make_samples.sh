#!/bin/sh
# Remakes the bundled synthetic samples exactly (deterministic: same command, same frames).
set -e
cd "$(dirname "$0")/.."
RM=.venv/bin/rat-monitor
$RM synth --minutes 5 --size 960x540 --crf 27 --seed 101 --subject 101 --schedule onset --out sample_videos/albino_onset.mp4
$RM synth --minutes 2 --size 960x540 --crf 27 --seed 102 --subject 102 --schedule control --out sample_videos/albino_control.mp4
$RM synth --minutes 1 --size 960x540 --crf 27 --seed 103 --subject 103 --coat hooded --low-light --fast --schedule 0:1 --out sample_videos/hooded_hard.mp4
$RM synth --contact-sheet docs/contact_sheet_albino.png --subject 101
$RM synth --contact-sheet docs/contact_sheet_hooded.png --subject 103 --coat hooded
$RM synth --lab-frames docs/lab_frames.png --seed 0
