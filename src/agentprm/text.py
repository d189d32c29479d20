"""Text from outside (model replies, API payloads) made safe to store and pass on."""

from __future__ import annotations


def replace_surrogates(text: str) -> str:
    """`text` with every lone UTF-16 surrogate replaced by U+FFFD (and split pairs joined).

    JSON may carry a lone surrogate (`"\\ud800"`), and `json.loads` hands it over as is; such a
    string cannot be encoded as UTF-8, so the first file write or tokenizer that meets it crashes.
    Round-tripping through UTF-16 with `surrogatepass` keeps valid pairs and replaces the rest.
    """
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
