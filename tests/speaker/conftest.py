"""One lab per test module (root): the controller assigns, three speakers announce, the client observes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab.conftest import LabFactory, lab_factory

__all__ = ["lab_factory", "speaker_lab"]
from tests.speaker.helpers import SpeakerLab, build


@pytest.fixture(scope="module")
def speaker_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeakerLab]:
    directory = tmp_path_factory.mktemp("speaker-lab")
    factory = LabFactory(directory)
    try:
        yield from build(factory, directory)
    finally:
        factory.teardown()
