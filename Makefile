# bev_mtl_ros — the two commands:
#   make demo     set up (if needed), then replay the bundled recordings (synthetic sample, then
#                 ten real A2D2 frames) through the node
#   make test     set up (if needed), then run the whole test suite
# Set-up only: `make setup` (GPU inference: `make setup GPU=1`, i.e. onnxruntime-gpu).
# The environment lives in .venv/ (see scripts/setup_env.sh); re-running is cheap.
# GPU check: `make gpu-check [DEVICE=cuda|cpu]` (no set-up needed; see bench/README.md).

SHELL := /bin/bash
VENV ?= .venv
GPU ?= 0
PYTEST_ARGS ?= -q -rs
DEMO_ARGS ?=

.PHONY: setup test demo gpu-check clean-venv help

help:
	@sed -n '1,7p' Makefile

setup:
	@BEV_MTL_GPU=$(GPU) BEV_MTL_VENV=$(abspath $(VENV)) scripts/setup_env.sh

# pytest exits with 5 when it collects no test: that fails the target like any other failure.
test: setup
	@set -o pipefail; \
	ROS_AUTOMATIC_DISCOVERY_RANGE=$${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST} \
	  $(VENV)/bin/python -m pytest test $(PYTEST_ARGS) --durations=10; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; fi; \
	exit $$rc

demo: setup
	$(VENV)/bin/bev-mtl-ros demo $(DEMO_ARGS)

# Runs on a bare CUDA machine too (python3 with torch, numpy, OpenCV, onnx, onnxruntime; no ROS,
# no venv): the venv's python when there is one, else python3. Exit 1 on a parity failure.
DEVICE ?= cuda
GPU_CHECK_PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3)
GPU_CHECK_OUT ?= out/gpu_check/gpu_check_$(DEVICE).json
GPU_CHECK_ARGS ?=
gpu-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_CHECK_PYTHON) scripts/gpu_check.py \
	  --device $(DEVICE) --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

clean-venv:
	rm -rf $(VENV) msgs/*/build
