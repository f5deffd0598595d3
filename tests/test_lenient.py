"""pydicom's validation is quieted for the bridge's own work only, never across threads.

pydicom keeps its validation modes in one process-wide object (``pydicom.config.settings``).
The bridge reads and writes values in ACR-NEMA forms on purpose (``bridge.lenient``), while
other threads (the forwarder, pynetdicom, an API user's own code) use pydicom as pydicom's
defaults say. Flipping the process-wide modes around each conversion, as ``lenient()`` did,
turned validation off in those other threads too, at random moments, and two overlapping
flips could leave it off for good. These tests run a conversion loop in one thread and
strict pydicom work in another.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Iterator

import pytest
from pydicom import config
from pydicom.dataelem import DataElement

import bridge
from bridge.lenient import configure, lenient
from bridge.testing.phantom import PhantomSpec, phantom_file

BAD_DS = "1.2345678901234567890"  # 21 characters: too long for a DS, pydicom warns by default
BAD_DS_SAYS = "The value length (21) exceeds the maximum length of 16 allowed for VR DS"
CONVERSIONS = 40
JOIN_S = 120  # generous: only catches a hang


def _strict_element() -> DataElement:
    """Strict pydicom work: an element with an invalid DS value, made as pydicom's default
    (reading mode WARN, which a new element takes) says: a UserWarning, and the element
    keeps WARN as its validation mode."""
    return DataElement(0x00180050, "DS", BAD_DS)


@pytest.fixture
def pydicom_defaults() -> Iterator[None]:
    """The test starts from pydicom's defaults (another test may have changed them)."""
    settings = config.settings
    saved = settings._reading_validation_mode, settings._writing_validation_mode
    settings._reading_validation_mode = settings._writing_validation_mode = None
    assert settings.reading_validation_mode == settings.writing_validation_mode == config.WARN
    yield
    settings._reading_validation_mode, settings._writing_validation_mode = saved


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Threads take turns far more often than the default 5 ms, so that the strict thread
    runs at many points of each conversion (the race shows in every run, not one in ten)."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(saved)


@pytest.mark.usefixtures("pydicom_defaults", "busy_switching")
def test_a_conversion_in_one_thread_leaves_pydicom_strict_in_another() -> None:
    data = phantom_file(PhantomSpec(rows=128, columns=128))
    done = threading.Event()
    failures: list[BaseException] = []
    converted = 0

    def convert_loop() -> None:
        nonlocal converted
        try:
            for _ in range(CONVERSIONS):
                assert bridge.convert(data).datasets
                converted += 1
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            done.set()

    modes: dict[int, int] = {}
    made = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worker = threading.Thread(target=convert_loop, name="converter")
        worker.start()
        try:
            while not done.is_set():
                element = _strict_element()
                modes[element.validation_mode] = modes.get(element.validation_mode, 0) + 1
                made += 1
        finally:
            worker.join(JOIN_S)
    assert not worker.is_alive()
    assert failures == []
    assert converted == CONVERSIONS
    names = {config.WARN: "WARN", config.IGNORE: "IGNORE", config.RAISE: "RAISE"}
    assert {names[m]: n for m, n in modes.items()} == {"WARN": made}, (
        "elements of the strict thread were made with the converter's lenient mode"
    )
    warned = [w for w in caught if BAD_DS_SAYS in str(w.message)]
    assert len(warned) == made, f"{made - len(warned)} of {made} invalid values went unwarned"
    # and nothing is left changed behind the threads
    assert config.settings.reading_validation_mode == config.WARN
    assert config.settings.writing_validation_mode == config.WARN


@pytest.mark.usefixtures("pydicom_defaults")
def test_overlapping_lenient_blocks_leave_the_defaults_as_they_were() -> None:
    """Two threads whose lenient blocks overlap (A in, B in, A out, B out): each stays
    lenient for its whole block, and afterwards pydicom's defaults hold again."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, list[int]] = {"a": [], "b": []}

    def a() -> None:
        with lenient():
            a_in.set()
            b_in.wait(JOIN_S)
            seen["a"].append(config.settings.writing_validation_mode)
        a_out.set()

    def b() -> None:
        a_in.wait(JOIN_S)
        with lenient():
            b_in.set()
            a_out.wait(JOIN_S)
            seen["b"].append(config.settings.writing_validation_mode)

    threads = [threading.Thread(target=f) for f in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_S)
    assert seen == {"a": [config.IGNORE], "b": [config.IGNORE]}
    assert config.settings.reading_validation_mode == config.WARN
    assert config.settings.writing_validation_mode == config.WARN


@pytest.mark.usefixtures("pydicom_defaults")
def test_lenient_quiets_its_own_block_and_nests() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with lenient():
            with lenient():
                assert _strict_element().validation_mode == config.IGNORE
            assert config.settings.reading_validation_mode == config.IGNORE
        assert config.settings.reading_validation_mode == config.WARN
    assert [str(w.message) for w in caught if BAD_DS_SAYS in str(w.message)] == []


@pytest.mark.usefixtures("pydicom_defaults")
def test_settings_a_user_makes_still_apply_outside_lenient_blocks() -> None:
    configure()
    configure()  # idempotent
    config.settings.reading_validation_mode = config.RAISE
    with pytest.raises(ValueError, match="exceeds the maximum length"):
        _strict_element()
    with lenient():
        assert _strict_element().validation_mode == config.IGNORE
    assert config.settings.reading_validation_mode == config.RAISE
