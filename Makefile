# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean firmware firmware-rp2040

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# the PIO assembler and emulator of the firmware tests; --no-deps: the assembler's
	# declared dependencies (Adafruit Blinka and its board drivers) are not used
	$(BIN)/python -m pip install --quiet --no-deps \
	    'rp2040-pio-emulator==0.88.0' 'adafruit-circuitpython-pioasm==1.3.8'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/acrnema-bridge demo

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench hwtests sigrok
	$(BIN)/ruff format --check bridge tests bench hwtests sigrok
	$(BIN)/mypy

firmware: $(STAMP)
	$(MAKE) -C firmware PYTHON=$(abspath $(BIN))/python test lib cross

# optional, not part of `make test`: the Pico build, with the Pico SDK (firmware/README.md)
firmware-rp2040: $(STAMP)
	$(MAKE) -C firmware PYTHON=$(abspath $(BIN))/python rp2040

test: lint firmware
	$(BIN)/python -m pytest
	BRIDGE_HW_EMULATED=1 $(BIN)/python -m pytest hwtests  # the bench suite, emulated box

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	$(MAKE) -C firmware clean
