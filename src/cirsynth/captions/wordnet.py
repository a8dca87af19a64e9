"""WordNet 3.0 from the Debian package ``wordnet-base`` (``/usr/share/wordnet``), read with nltk.

The Debian files lack two things nltk's reader opens: ``lexnames`` (the 45 lexicographer file names,
fixed by WordNet 3.0's ``lexnames(5WN)``; we generate it in memory) and ``index.sense`` (only needed for
sense-key lookups and the multilingual mapping, which we switch off). nltk only reads folders listed in
``nltk.data.path``, so the WordNet folder is added there explicitly.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
WORDNET_ENV = "CIRSYNTH_WORDNET_DIR"  # override the folder; set it to "" to run as if WordNet were absent

# WordNet 3.0 lexicographer files, in file-number order (lexnames(5WN)).
LEXNAMES: tuple[str, ...] = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()


class WordNetUnavailable(RuntimeError):
    """WordNet files are not installed (Debian: ``apt-get install wordnet-base``, or ``make debian``)."""


def wordnet_dir() -> Path | None:
    """The WordNet folder to use, or None if it is absent (``$CIRSYNTH_WORDNET_DIR`` overrides the default)."""
    d = os.environ.get(WORDNET_ENV, DEFAULT_WORDNET_DIR)
    if not d or not (Path(d) / "data.noun").is_file():
        return None
    return Path(d)


@lru_cache(maxsize=4)
def _load(path: str) -> Any:
    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _DebianWordNet(WordNetCorpusReader):
        def open(self, file: str):  # type: ignore[override]
            if file == "lexnames":
                return io.StringIO("".join(f"{i:02d}\t{name}\t0\n" for i, name in enumerate(LEXNAMES)))
            return super().open(file)

        def map_wn(self, version: str = "wordnet") -> None:  # no index.sense, no multilingual mapping
            return None

    if path not in nltk.data.path:
        nltk.data.path.append(path)  # nltk reads only from its data path folders
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions")
        return _DebianWordNet(path, None)


def load_wordnet(required: bool = True) -> Any:
    """nltk's WordNet reader over the Debian files (cached: loading takes about a second).

    Args:
        required: raise ``WordNetUnavailable`` when absent; otherwise return None.

    Returns:
        An ``nltk.corpus.reader.wordnet.WordNetCorpusReader``, or None.
    """
    d = wordnet_dir()
    if d is None:
        if required:
            raise WordNetUnavailable(
                f"WordNet not found at {os.environ.get(WORDNET_ENV, DEFAULT_WORDNET_DIR)!r}: install the Debian "
                f"package wordnet-base (make debian) or set ${WORDNET_ENV} to a WordNet 3.0 dict folder"
            )
        return None
    return _load(str(d))
