"""Translators: the pure mappings between foreign messages and native events.

One module per anchor (:mod:`~waymark.translate.okdata`, :mod:`~waymark.translate.gsm`,
:mod:`~waymark.translate.openlineage`). They hold no state and do no I/O, so the API's
front doors and the collector share them.
"""
