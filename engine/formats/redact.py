"""Messages about user files name no server path.

Libraries put the path they were given in their errors (pyarrow: "Could not open Parquet input
source '/work/.../upload-1a2b'", transformers: "Unrecognized model in /tmp/..."); those paths are
the sandbox's work folder, which is none of the user's business. Engine errors that quote a
library's message pass it through ``path_free`` first.
"""

from __future__ import annotations

import re

# A POSIX path (absolute, or from ., .. or ~): a slash not glued to a word (so "1/2" and "and/or"
# stay) nor a URL's "://", then anything up to a quote, a space or a separator (a sentence's full
# stop or colon stays).
_PATH = re.compile(r"(?<![\w./~-])(?!(?<=:)//)(?:~|\.{0,2})?/[^\s'\"`,;()<>\[\]{}]*?(?=[.:]?(?:[\s'\"`,;()<>\[\]{}]|$))")


def path_free(message: object, name: str = "the uploaded file") -> str:
    """``message`` with every path in it replaced by ``name``."""
    return _PATH.sub(name, str(message))
